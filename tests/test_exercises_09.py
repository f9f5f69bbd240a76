"""The checkers of 09_time_series: references agree with independent computations and the package; every
exercise's plausible wrong answers fail on the case that names the mistake, and an answer written
differently from the reference passes; hints come in stages and never show the answer; the solutions
notebook says whose function its later cells ran."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from nodecourse import odeint
from nodecourse.exercises import ex09
from nodecourse.exercises import checking
from nodecourse.models import MLP, ODEFunc

from helpers import assert_checker_rejects as _fails
from helpers import failing_answer, hint_stages, answer_calls


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_hints_come_in_stages_and_never_show_the_answer (and test_checker_contract.py)."""
    checking.reset_hints(already_failed=10)
    yield
    checking.reset_hints(already_failed=0)


# --------------------------------------------------------------------------------------------------
# the references against independent computations
# --------------------------------------------------------------------------------------------------


def test_pad_batch_reference_against_pad_sequence():
    times = [torch.tensor([0.1, 0.5, 0.7]), torch.tensor([0.2]), torch.tensor([0.3, 0.4])]
    values = [torch.randn(3, 2), torch.randn(1, 2), torch.randn(2, 2)]
    t, v, m = ex09.pad_batch(times, values)
    torch.testing.assert_close(t, nn.utils.rnn.pad_sequence(times, batch_first=True))
    torch.testing.assert_close(v, nn.utils.rnn.pad_sequence(values, batch_first=True))
    assert m.tolist() == [[True, True, True], [True, False, False], [True, True, False]]


def test_masked_mse_reference_by_hand():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [9.0, 9.0]]])
    target = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [float("nan"), 5.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    # squared errors of the real entries: 1, 4, 4, 9, 1, 1 -> 20 / 6
    assert ex09.masked_mse(pred, target, mask).item() == pytest.approx(20 / 6)


def test_union_times_reference_by_hand():
    t = torch.tensor([[0.5, 1.0, 7.0], [1.0, 0.25, 7.0]])
    m = torch.tensor([[True, True, False], [True, True, False]])
    grid, index = ex09.union_times(t, m)
    assert grid.tolist() == [0.0, 0.25, 0.5, 1.0]
    assert index.tolist() == [[2, 3, 0], [3, 1, 0]]


def test_predict_at_times_reference_equals_one_solve_per_series():
    torch.manual_seed(0)
    dynamics, decoder = ODEFunc(MLP([3, 8, 3])).double(), nn.Linear(3, 2).double()
    z0 = torch.randn(2, 3, dtype=torch.float64)
    query = torch.tensor([[0.3, 1.2, 2.0], [2.5, 0.7, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    with torch.no_grad():
        out = ex09.predict_at_times(dynamics, decoder, z0, query, mask, rtol=1e-10, atol=1e-12)
        for b in range(2):
            times = query[b][mask[b]]
            order = torch.argsort(times)
            own = odeint(dynamics, z0[b], torch.cat([torch.zeros(1, dtype=torch.float64), times[order]]),
                         rtol=1e-10, atol=1e-12)[1:]
            expected = torch.empty_like(own)
            expected[order] = own
            torch.testing.assert_close(out[b][mask[b]], decoder(expected), rtol=0, atol=1e-8)



def test_references_agree_with_the_package_and_keep_nan_out_of_the_gradient():
    from nodecourse.models import latent

    gen = torch.Generator().manual_seed(3)
    times = [torch.rand(n, generator=gen, dtype=torch.float64).sort().values + 0.1 for n in (4, 1, 3)]
    values = [torch.randn(n, 2, generator=gen, dtype=torch.float64) for n in (4, 1, 3)]
    for mine, package in zip(ex09.pad_batch(times, values), latent.pad_batch(times, values)):
        assert torch.equal(mine, package) and mine.dtype == package.dtype
    t, v, m = ex09.pad_batch(times, values)
    grid, index = ex09.union_times(t.masked_fill(~m, 50.0), m, 0.05)
    expected_grid, expected_index = latent.union_times(t.masked_fill(~m, 50.0), m, 0.05)
    assert torch.equal(grid, expected_grid) and torch.equal(index, expected_index)
    pred = torch.randn(v.shape, generator=gen, dtype=torch.float64, requires_grad=True)
    target = v.masked_fill(~m.unsqueeze(-1), float("nan"))
    loss = ex09.masked_mse(pred, target, m)
    torch.testing.assert_close(loss, latent.masked_mse(pred, target, m))
    (grad,) = torch.autograd.grad(loss, pred)
    assert bool(torch.isfinite(grad).all()) and bool((grad[~m] == 0).all())


# --------------------------------------------------------------------------------------------------
# the checkers: staged hints that never show the answer, honest labels in the notebook
# --------------------------------------------------------------------------------------------------

CHECKERS = [
    (ex09.check_pad_batch, ex09.pad_batch),
    (ex09.check_masked_mse, ex09.masked_mse),
    (ex09.check_union_times, ex09.union_times),
    (ex09.check_predict_at_times, ex09.predict_at_times),
    (ex09.check_last_observed, ex09.last_observed),
]


@pytest.mark.parametrize("checker, reference", CHECKERS, ids=[c.__name__ for c, _ in CHECKERS])
def test_hints_come_in_stages_and_never_show_the_answer(checker, reference, capsys):
    seen, returned = hint_stages(checker, capsys)
    assert all(result is reference for result in returned)
    n = seen[0][1]
    assert 2 <= n <= 3 and [s for s, _, _ in seen] == [min(k, n) for k in (1, 2, 3, 4)]
    assert len({text for _, _, text in seen}) == n, "each stage says something new"
    code = answer_calls(reference)
    assert code, "the reference has code to compare the hints with"
    for _, _, text in seen:
        assert not [c for c in code if c.replace(" ", "") in text.replace(" ", "")], text


@pytest.mark.parametrize("checker, reference", CHECKERS, ids=[c.__name__ for c, _ in CHECKERS])
def test_show_answer_prints_the_reference_itself(checker, reference, capsys):
    checker(failing_answer)
    number = re.search(r"show_answer\('09\.(\d)'\)", capsys.readouterr().out).group(1)
    text = ex09.show_answer(int(number))
    assert f"def {reference.__name__}(" in text and "def run(" not in text


def test_the_solutions_notebook_says_whose_function_each_later_cell_ran():
    """Prints and plot titles after an exercise name the function's owner with who(), never 'your'/'mine'."""
    source = (Path(__file__).resolve().parents[1] / "solutions" / "09_time_series_exercises.py").read_text()
    code = [ln for ln in source.splitlines() if not ln.lstrip().startswith("#")]
    labelled = [ln for ln in code if re.search(r"print\(|title=|label=", ln)]
    assert not [ln for ln in labelled if re.search(r"\b(your|yours|mine|ours)\b", ln, re.IGNORECASE)]
    assert not [ln for ln in code if re.search(r"\bmine\b", ln)]
    for name in ("pad_batch", "masked_mse", "union_times", "predict_at_times"):
        assert f"who({name})" in source, name


def _fails_on(checker, wrong, capsys, label, *phrases):
    """The checker rejects ``wrong``; the case named ``label`` is among the failed ones, and each phrase shows."""
    out = _fails(checker, wrong, capsys, *phrases)
    assert f"wrong {label}" in out, out
    return out


def _passes(checker, answer, capsys):
    assert checker(answer) is answer
    out = capsys.readouterr().out
    assert "passed" in out and "FAILED" not in out, out


# --- exercise 1: pad a batch ----------------------------------------------------------------------


def test_pad_batch_right_aligned_fails(capsys):
    def right_aligned(times, values):
        t, v, m = ex09.pad_batch([x.flip(0) for x in times], [x.flip(0) for x in values])
        return t.flip(1), v.flip(1), m.flip(1)

    out = _fails_on(ex09.check_pad_batch, right_aligned, capsys, "left-aligned: series i fills the first n_i entries",
                    "(left-aligned)")
    assert "ok    equal lengths: the mask is all True" in out


def test_pad_batch_float_mask_fails(capsys):
    def float_mask(times, values):
        t, v, m = ex09.pad_batch(times, values)
        return t, v, m.float()

    _fails_on(ex09.check_pad_batch, float_mask, capsys, "the mask is bool, True exactly at the real entries",
              "must be a bool tensor")


def test_pad_batch_nan_padding_fails(capsys):
    def nan_padding(times, values):
        t, v, m = ex09.pad_batch(times, values)
        return t, v.masked_fill(~m.unsqueeze(-1), float("nan")), m

    out = _fails_on(ex09.check_pad_batch, nan_padding, capsys, "the padding holds zeros, in times and in values",
                    "values: the padding must hold zeros, found nan")
    assert "ok    one series: nothing to pad" in out


def test_pad_batch_losing_the_dtype_fails(capsys):
    def default_dtype(times, values):
        t, v, m = ex09.pad_batch(times, values)
        return t.float(), v.float(), m

    _fails_on(ex09.check_pad_batch, default_dtype, capsys, "float64 series with 3 channels keep their dtype",
              "expected the input's torch.float64")


def test_pad_batch_with_pad_sequence_passes(capsys):
    def other(times, values):
        lengths = torch.tensor([len(t) for t in times])
        mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
        pad = torch.nn.utils.rnn.pad_sequence
        return pad(list(times), batch_first=True), pad(list(values), batch_first=True), mask

    _passes(ex09.check_pad_batch, other, capsys)


# --- exercise 2: the masked MSE -------------------------------------------------------------------


def test_masked_mse_over_everything_fails(capsys):
    _fails_on(ex09.check_masked_mse, lambda p, t, m: ((p - t) ** 2).mean(), capsys,
              "padding holding 7.0 does not count")


def test_masked_mse_multiplying_by_the_mask_fails_on_nan(capsys):
    def multiply(p, t, m):
        return (((p - t) ** 2) * m.unsqueeze(-1)).sum() / (m.sum() * p.shape[-1])

    out = _fails_on(ex09.check_masked_mse, multiply, capsys, "padding holding NaN does not count", "0 * NaN")
    assert "ok    padding holding 7.0 does not count" in out


def test_masked_mse_forgetting_the_channels_fails(capsys):
    def per_entry(p, t, m):
        d = torch.where(m.unsqueeze(-1), p - t, torch.zeros_like(p))
        return (d**2).sum() / m.sum()

    _fails_on(ex09.check_masked_mse, per_entry, capsys, "divided by the real entries times all D channels",
              "all D channels")


def test_masked_mse_selecting_after_squaring_fails_on_the_gradient(capsys):
    """torch.where on the squared errors gives the right value, but the square's backward turns the padding's
    NaN into NaN gradients: training would stop there."""
    def squares_first(p, t, m):
        return torch.where(m.unsqueeze(-1), (p - t) ** 2, 0.0).sum() / (m.sum() * p.shape[-1])

    out = _fails_on(ex09.check_masked_mse, squares_first, capsys, "a 0-d tensor that backpropagates",
                    "pred's gradient holds NaN")
    assert "ok    padding holding NaN does not count" in out  # the value alone is right


def test_masked_mse_returning_a_float_or_a_vector_fails(capsys):
    _fails_on(ex09.check_masked_mse, lambda p, t, m: ex09.masked_mse(p, t, m).item(), capsys,
              "a 0-d tensor that backpropagates", "as a tensor")
    _fails_on(ex09.check_masked_mse, lambda p, t, m: ex09.masked_mse(p, t, m).reshape(1), capsys,
              "no padding", "expected a 0-d tensor")


def test_masked_mse_by_boolean_indexing_passes(capsys):
    _passes(ex09.check_masked_mse, lambda p, t, m: (p[m] - t[m]).pow(2).mean(), capsys)


# --- exercise 3: the union of the query times -----------------------------------------------------


def test_union_times_without_t0_fails(capsys):
    def no_t0(times, mask, t0=0.0):
        grid, inverse = torch.unique(times[mask], sorted=True, return_inverse=True)
        index = torch.zeros(times.shape, dtype=torch.long)
        index[mask] = inverse
        return grid, index

    out = _fails_on(ex09.check_union_times, no_t0, capsys, "t0 comes first", "lacks t0")
    assert "ok    t0 = 0 already a query time: it appears once" in out


def test_union_times_with_the_padding_fails(capsys):
    def with_padding(times, mask, t0=0.0):
        return ex09.union_times(times, torch.ones_like(mask), t0)

    _fails_on(ex09.check_union_times, with_padding, capsys, "padding holding 99 stays out of the grid",
              "did padded entries get in")


def test_union_times_not_unique_fails(capsys):
    def not_unique(times, mask, t0=0.0):
        grid = torch.sort(torch.cat([torch.full((1,), t0, dtype=times.dtype), times[mask]])).values
        return grid, torch.zeros(times.shape, dtype=torch.long)

    _fails_on(ex09.check_union_times, not_unique, capsys, "sorted, each time once: series that share times",
              "strictly increasing")


def test_union_times_ignoring_the_given_t0_fails(capsys):
    def zero_start(times, mask, t0=0.0):
        return ex09.union_times(times, mask, 0.0)

    _fails_on(ex09.check_union_times, zero_start, capsys, "the given t0 (t0 = 0.5)")


def test_union_times_with_garbage_index_at_the_padding_fails(capsys):
    def searchsorted_everywhere(times, mask, t0=0.0):
        grid, _ = ex09.union_times(times, mask, t0)
        return grid, torch.searchsorted(grid, times)  # padded 99 -> len(grid), outside the grid

    out = _fails_on(ex09.check_union_times, searchsorted_everywhere, capsys,
                    "padded entries get index 0, the position of t0", "index at padded entries must be 0")
    assert "ok    padding holding 99 stays out of the grid" in out


def test_union_times_with_searchsorted_passes(capsys):
    def other(times, mask, t0=0.0):
        grid = torch.cat([times[mask], torch.tensor([t0], dtype=times.dtype)]).unique()
        return grid, torch.searchsorted(grid, times).masked_fill(~mask, 0)

    _passes(ex09.check_union_times, other, capsys)


# --- exercise 4: predict at any times -------------------------------------------------------------


def test_predict_one_solve_per_series_fails_on_cost(capsys):
    def per_series(dynamics, decoder, z0, query, mask, rtol=1e-6, atol=1e-8):
        out = decoder(z0).unsqueeze(1).repeat(1, query.shape[1], 1)
        for b in range(z0.shape[0]):
            grid, index = ex09.union_times(query[b : b + 1], mask[b : b + 1])
            path = odeint(dynamics, z0[b], grid, rtol=rtol, atol=atol)
            out[b] = decoder(path[index[0]])
        return out

    out = _fails_on(ex09.check_predict_at_times, per_series, capsys, "ONE solve for the whole batch", "solve ONCE")
    assert "ok    each series its own times, in any order" in out  # the numbers themselves are right


def test_predict_wrong_gather_fails(capsys):
    def wrong_axis(dynamics, decoder, z0, query, mask, rtol=1e-6, atol=1e-8):
        grid, index = ex09.union_times(query, mask)
        path = odeint(dynamics, z0, grid, rtol=rtol, atol=atol)  # [U, B, L], gathered as if [B, U, L]
        return decoder(path[: z0.shape[0]].gather(1, index.clamp(max=z0.shape[0] - 1).unsqueeze(-1)
                                                    .expand(-1, -1, z0.shape[1])))

    _fails_on(ex09.check_predict_at_times, wrong_axis, capsys, "each series its own times, in any order",
              "union grid")


def test_predict_without_t0_in_the_grid_fails(capsys):
    def starts_at_first_query(dynamics, decoder, z0, query, mask, rtol=1e-6, atol=1e-8):
        grid, inverse = torch.unique(query[mask], sorted=True, return_inverse=True)
        index = torch.zeros(query.shape, dtype=torch.long)
        index[mask] = inverse
        path = odeint(dynamics, z0, grid, rtol=rtol, atol=atol)
        return decoder(path.transpose(0, 1).gather(1, index.unsqueeze(-1).expand(-1, -1, z0.shape[1])))

    out = _fails_on(ex09.check_predict_at_times, starts_at_first_query, capsys, "each series its own times")
    assert "ok    a query at t = 0 gives decoder(z0)" in out  # there the first query IS t = 0


def test_predict_ignoring_the_tolerances_fails(capsys):
    def default_tolerances(dynamics, decoder, z0, query, mask, rtol=1e-6, atol=1e-8):
        return ex09.predict_at_times(dynamics, decoder, z0, query, mask)

    out = _fails_on(ex09.check_predict_at_times, default_tolerances, capsys, "the given rtol and atol are used")
    assert "ok    float64" in out


def test_predict_learner_exception_is_reported(capsys):
    def broken(dynamics, decoder, z0, query, mask, rtol=1e-6, atol=1e-8):
        return odeint(dynamics, z0, query)  # 2-D times

    _fails(ex09.check_predict_at_times, broken, capsys, "raised ValueError")


def test_predict_with_advanced_indexing_passes(capsys):
    def other(dynamics, decoder, z0, query, mask, rtol=1e-6, atol=1e-8):
        grid, index = ex09.union_times(query, mask)
        path = odeint(dynamics, z0, grid, rtol=rtol, atol=atol, method="dopri5")  # [U, B, L]
        rows = torch.arange(z0.shape[0])[:, None].expand_as(index)
        return decoder(path[index, rows])

    _passes(ex09.check_predict_at_times, other, capsys)


# --- exercise 5 (find the bug) and exercise 6 (predict) -------------------------------------------


def test_the_shipped_last_observed_bug_fails_on_padded_series(capsys):
    out = _fails_on(ex09.check_last_observed, ex09.buggy_last_observed, capsys,
                    "padded series (lengths 4, 2, 1): each row's own last real entry", "position n - 1")
    assert "ok    series of equal length" in out


def test_last_observed_with_gather_passes(capsys):
    def other(values, mask):
        idx = (mask.sum(1) - 1).view(-1, 1, 1).expand(-1, 1, values.shape[-1])
        return values.gather(1, idx).squeeze(1)

    _passes(ex09.check_last_observed, other, capsys)


def test_last_observed_off_by_one_fails(capsys):
    def off_by_one(values, mask):
        n = mask.long().sum(dim=1).clamp(max=values.shape[1] - 1)
        return values[torch.arange(values.shape[0]), n]

    _fails_on(ex09.check_last_observed, off_by_one, capsys, "padded series (lengths 4, 2, 1)")


def test_last_observed_from_the_values_instead_of_the_mask_fails(capsys):
    def nonzero_values(values, mask):  # "the padding is zero", which only holds for pad_batch's padding
        n = (values != 0).any(dim=-1).long().sum(dim=1)
        return values[torch.arange(values.shape[0]), n - 1]

    out = _fails_on(ex09.check_last_observed, nonzero_values, capsys,
                    "padding that is not zero (99), a real entry that is: only the mask tells")
    assert "ok    padded series (lengths 4, 2, 1)" in out


def test_union_size_prediction(capsys):
    assert ex09.check_union_size_prediction(None, verbose=False) == 41
    ex09.check_union_size_prediction(5)  # the times of one series
    out = capsys.readouterr().out
    assert "FAILED" in out and "8 x 5 = 40" in out
    ex09.check_union_size_prediction(41)
    assert "passed" in capsys.readouterr().out
