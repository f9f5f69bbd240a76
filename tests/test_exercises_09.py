"""The checkers of 09_time_series: references agree with independent computations, a correct answer
passes, plausible wrong answers fail with a useful message, an unattempted exercise hands back the
reference, and bad input gets a clear error."""
from __future__ import annotations


import pytest
import torch
from torch import nn

from nodecourse import odeint
from nodecourse.exercises import ex09
from nodecourse.exercises import checking
from nodecourse.models import MLP, ODEFunc


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_checker_contract.py."""
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


# --------------------------------------------------------------------------------------------------
# correct answers pass, the unattempted hand back the reference
# --------------------------------------------------------------------------------------------------

CHECKS = [
    (ex09.check_pad_batch, ex09.pad_batch),
    (ex09.check_masked_mse, ex09.masked_mse),
    (ex09.check_union_times, ex09.union_times),
    (ex09.check_predict_at_times, ex09.predict_at_times),
]


# --------------------------------------------------------------------------------------------------
# plausible wrong answers fail with a useful message
# --------------------------------------------------------------------------------------------------


def _fails_with(check, fn, capsys, *needles):
    reference = dict(CHECKS)[check]
    assert check(fn) is reference
    out = capsys.readouterr().out
    assert "FAILED" in out
    for needle in needles:
        assert needle in out, out


def test_pad_batch_right_aligned_fails(capsys):
    def right_aligned(times, values):
        t, v, m = ex09.pad_batch([x.flip(0) for x in times], [x.flip(0) for x in values])
        return t.flip(1), v.flip(1), m.flip(1)

    _fails_with(ex09.check_pad_batch, right_aligned, capsys, "left-aligned")


def test_pad_batch_float_mask_fails(capsys):
    def float_mask(times, values):
        t, v, m = ex09.pad_batch(times, values)
        return t, v, m.float()

    _fails_with(ex09.check_pad_batch, float_mask, capsys, "bool")


def test_pad_batch_nan_padding_fails(capsys):
    def nan_padding(times, values):
        t, v, m = ex09.pad_batch(times, values)
        return t, v.masked_fill(~m.unsqueeze(-1), float("nan")), m

    _fails_with(ex09.check_pad_batch, nan_padding, capsys, "zeros in the padding")


def test_masked_mse_over_everything_fails(capsys):
    _fails_with(ex09.check_masked_mse, lambda p, t, m: ((p - t) ** 2).mean(), capsys, "padding holding 7.0")


def test_masked_mse_multiplying_by_the_mask_fails_on_nan(capsys):
    def multiply(p, t, m):
        return (((p - t) ** 2) * m.unsqueeze(-1)).sum() / (m.sum() * p.shape[-1])

    _fails_with(ex09.check_masked_mse, multiply, capsys, "0 * NaN")


def test_masked_mse_forgetting_the_channels_fails(capsys):
    def per_entry(p, t, m):
        d = torch.where(m.unsqueeze(-1), p - t, torch.zeros_like(p))
        return (d**2).sum() / m.sum()

    _fails_with(ex09.check_masked_mse, per_entry, capsys, "all D channels")


def test_masked_mse_returning_a_float_fails(capsys):
    _fails_with(ex09.check_masked_mse, lambda p, t, m: ex09.masked_mse(p, t, m).item(), capsys, "as a tensor")


def test_union_times_without_t0_fails(capsys):
    def no_t0(times, mask, t0=0.0):
        grid, inverse = torch.unique(times[mask], sorted=True, return_inverse=True)
        index = torch.zeros(times.shape, dtype=torch.long)
        index[mask] = inverse
        return grid, index

    _fails_with(ex09.check_union_times, no_t0, capsys, "lacks t0")


def test_union_times_with_the_padding_fails(capsys):
    def with_padding(times, mask, t0=0.0):
        return ex09.union_times(times, torch.ones_like(mask), t0)

    _fails_with(ex09.check_union_times, with_padding, capsys, "padded entries")


def test_union_times_not_unique_fails(capsys):
    def not_unique(times, mask, t0=0.0):
        grid = torch.sort(torch.cat([torch.full((1,), t0, dtype=times.dtype), times[mask]])).values
        return grid, torch.zeros(times.shape, dtype=torch.long)

    _fails_with(ex09.check_union_times, not_unique, capsys, "strictly increasing")


def test_predict_one_solve_per_series_fails_on_cost(capsys):
    def per_series(dynamics, decoder, z0, query, mask, rtol=1e-6, atol=1e-8):
        out = decoder(z0).unsqueeze(1).repeat(1, query.shape[1], 1)
        for b in range(z0.shape[0]):
            grid, index = ex09.union_times(query[b : b + 1], mask[b : b + 1])
            path = odeint(dynamics, z0[b], grid, rtol=rtol, atol=atol)
            out[b] = decoder(path[index[0]])
        return out

    _fails_with(ex09.check_predict_at_times, per_series, capsys, "solve ONCE")


def test_predict_wrong_gather_fails(capsys):
    def wrong_axis(dynamics, decoder, z0, query, mask, rtol=1e-6, atol=1e-8):
        grid, index = ex09.union_times(query, mask)
        path = odeint(dynamics, z0, grid, rtol=rtol, atol=atol)  # [U, B, L], gathered as if [B, U, L]
        return decoder(path[: z0.shape[0]].gather(1, index.clamp(max=z0.shape[0] - 1).unsqueeze(-1)
                                                    .expand(-1, -1, z0.shape[1])))

    _fails_with(ex09.check_predict_at_times, wrong_axis, capsys, "union grid")


def test_predict_learner_exception_is_reported(capsys):
    def broken(dynamics, decoder, z0, query, mask, rtol=1e-6, atol=1e-8):
        return odeint(dynamics, z0, query)  # 2-D times

    _fails_with(ex09.check_predict_at_times, broken, capsys, "raised ValueError")


# --- exercise 5 (find the bug) and exercise 6 (predict) -------------------------------------------


def test_the_shipped_last_observed_bug_fails_on_padded_series(capsys):
    assert ex09.check_last_observed(ex09.buggy_last_observed) is ex09.last_observed
    out = capsys.readouterr().out
    assert "ok    series of equal length" in out and "wrong series of lengths 4, 2 and 1" in out
    assert "position n - 1" in out


def test_last_observed_with_gather_passes(capsys):
    def other(values, mask):
        idx = (mask.sum(1) - 1).view(-1, 1, 1).expand(-1, 1, values.shape[-1])
        return values.gather(1, idx).squeeze(1)

    assert ex09.check_last_observed(other) is other
    assert "passed 3/3" in capsys.readouterr().out


def test_last_observed_off_by_one_fails(capsys):
    def off_by_one(values, mask):
        n = mask.long().sum(dim=1).clamp(max=values.shape[1] - 1)
        return values[torch.arange(values.shape[0]), n]

    assert ex09.check_last_observed(off_by_one) is ex09.last_observed
    assert "FAILED" in capsys.readouterr().out


def test_union_size_prediction(capsys):
    assert ex09.check_union_size_prediction(None, verbose=False) == 41
    ex09.check_union_size_prediction(5)  # the times of one series
    out = capsys.readouterr().out
    assert "FAILED" in out and "8 x 5 = 40" in out
    ex09.check_union_size_prediction(41)
    assert "passed" in capsys.readouterr().out
