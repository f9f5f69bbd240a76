"""The checkers of 10_continuous_flows: references agree with independent computations; every exercise's
plausible wrong answers fail on the case that names the mistake, and an answer written differently from
the reference passes; hints come in stages and never show the answer; the solutions notebook says whose
function its later cells ran."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from nodecourse import odeint
from nodecourse.exercises import ex10
from nodecourse.exercises import checking
from nodecourse.models.flows import CNF, CNFField

from helpers import assert_checker_rejects as _fails
from helpers import failing_answer, hint_stages, answer_calls

DT = torch.float64


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_hints_come_in_stages_and_never_show_the_answer (and test_checker_contract.py)."""
    checking.reset_hints(already_failed=10)
    yield
    checking.reset_hints(already_failed=0)


def _field(dim, seed=0, hidden=16):
    torch.manual_seed(seed)
    return CNFField(dim, hidden).to(DT)


def _jacobian_traces(field, z, t=0.3):
    jac = [torch.autograd.functional.jacobian(lambda p: field(t, p[None])[0], zi) for zi in z]
    return torch.stack([torch.trace(j) for j in jac])


# --- the references against independent computations ---------------------------------------------

def test_standard_normal_log_prob_matches_torch_distributions():
    z = torch.randn(6, 4, dtype=DT)
    base = torch.distributions.MultivariateNormal(torch.zeros(4, dtype=DT), torch.eye(4, dtype=DT))
    torch.testing.assert_close(ex10.standard_normal_log_prob(z), base.log_prob(z))


def test_exact_trace_matches_the_autograd_jacobian_and_is_differentiable():
    field = _field(3, seed=1)
    z = torch.randn(5, 3, dtype=DT, requires_grad=True)
    tr = ex10.exact_trace(field(0.3, z), z)
    torch.testing.assert_close(tr, _jacobian_traces(field, z.detach()))
    assert tr.requires_grad  # create_graph: training can backpropagate through it


def test_hutchinson_reference_sums_to_the_trace_over_basis_probes_and_is_unbiased():
    field = _field(3, seed=2)
    z = torch.randn(4, 3, dtype=DT, requires_grad=True)
    f = field(0.3, z)
    basis_sum = sum(ex10.hutchinson_trace(f, z, torch.eye(3, dtype=DT)[i].expand(4, 3)) for i in range(3))
    torch.testing.assert_close(basis_sum, _jacobian_traces(field, z.detach()))
    n = 20000
    zz = z[:1].detach().expand(n, 3).clone().requires_grad_(True)
    eps = torch.randint(0, 2, (n, 3), generator=torch.Generator().manual_seed(0)).to(DT) * 2 - 1
    est = ex10.hutchinson_trace(field(0.3, zz), zz, eps).detach()
    assert abs(est.mean().item() - basis_sum[0].item()) < 4 * est.std().item() / math.sqrt(n)


def test_cnf_dynamics_reference_on_a_linear_field_and_without_grad():
    A = torch.tensor([[0.5, 2.0], [-1.0, -1.5]], dtype=DT)
    z = torch.randn(3, 2, dtype=DT)
    with torch.no_grad():
        f, dlogp = ex10.cnf_dynamics(lambda t, x: x @ A.T, torch.tensor(0.0), (z, torch.zeros(3, dtype=DT)))
    torch.testing.assert_close(f, z @ A.T)
    torch.testing.assert_close(dlogp, torch.full((3,), 1.0, dtype=DT))  # -tr A = 1


def test_cnf_log_prob_reference_matches_the_package_and_a_closed_form():
    field = _field(2, seed=3)
    model = CNF(2, 16, method="rk4", options={"step_size": 0.125}).to(DT)
    model.field.load_state_dict(field.state_dict())
    x = torch.randn(5, 2, dtype=DT)
    torch.testing.assert_close(ex10.cnf_log_prob(field, x), model.log_prob(x))
    # linear field: log p(x) = log N(expm(t1 A) x) + t1 tr A
    A = torch.tensor([[-0.3, -1.0], [1.2, -0.5]], dtype=DT)
    lp = ex10.cnf_log_prob(lambda t, z: z @ A.T, x, t1=0.7, n_steps=20)
    z1 = x @ torch.linalg.matrix_exp(0.7 * A).T
    torch.testing.assert_close(lp, ex10.standard_normal_log_prob(z1) + 0.7 * torch.trace(A), rtol=0, atol=1e-7)


# --- the checkers: staged hints that never show the answer, honest labels in the notebook ----------

CHECKERS = [
    (ex10.check_standard_normal_log_prob, ex10.standard_normal_log_prob),
    (ex10.check_exact_trace, ex10.exact_trace),
    (ex10.check_hutchinson_trace, ex10.hutchinson_trace),
    (ex10.check_cnf_dynamics, ex10.cnf_dynamics),
    (ex10.check_cnf_log_prob, ex10.cnf_log_prob),
    (ex10.check_diag_gaussian_log_prob, ex10.diag_gaussian_log_prob),
]


def test_reference_rejects_a_single_vector():
    with pytest.raises(ValueError, match=r"batch \[B, D\]"):
        ex10.standard_normal_log_prob(torch.zeros(3))


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
    number = re.search(r"show_answer\('10\.(\d)'\)", capsys.readouterr().out).group(1)
    text = ex10.show_answer(int(number))
    assert f"def {reference.__name__}(" in text and "lambda" not in text.split("\n", 1)[1][:200]


def test_the_solutions_notebook_says_whose_function_each_later_cell_ran():
    """Prints and plot titles after an exercise name the function's owner with who(), never 'your'/'ours'."""
    source = (Path(__file__).resolve().parents[1] / "solutions" / "10_continuous_flows_exercises.py").read_text()
    code = [ln for ln in source.splitlines() if not ln.lstrip().startswith("#")]
    labelled = [ln for ln in code if re.search(r"print\(|title=|label=", ln)]
    assert not [ln for ln in labelled if re.search(r"\b(your|yours|mine|ours)\b", ln, re.IGNORECASE)]
    assert not [ln for ln in code if re.search(r"\bours\b", ln)]
    for name in ("standard_normal_log_prob", "exact_trace", "hutchinson_trace", "cnf_dynamics", "cnf_log_prob"):
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


# --- exercise 1: the base log-density -------------------------------------------------------------


def test_log_prob_without_the_constant_fails(capsys):
    _fails_on(ex10.check_standard_normal_log_prob, lambda z: -0.5 * (z**2).sum(dim=1), capsys,
              "the origin: only the normaliser", "values differ", "once per dimension")


def test_log_prob_with_the_constant_of_one_dimension_fails(capsys):
    def one_constant(z):
        return -0.5 * (z**2).sum(dim=1) - 0.5 * math.log(2 * math.pi)

    out = _fails_on(ex10.check_standard_normal_log_prob, one_constant, capsys,
                    "D = 7: the normaliser counts every dimension")
    assert "ok    D = 1" in out


def test_log_prob_summed_over_the_batch_fails(capsys):
    def wrong(z):
        return -0.5 * (z**2).sum() - 0.5 * z.shape[1] * math.log(2 * math.pi)

    _fails_on(ex10.check_standard_normal_log_prob, wrong, capsys, "one value per sample: [5, 2] -> [5]",
              "expected shape (5,)")


def test_log_prob_in_float64_for_float32_input_fails(capsys):
    def float64(z):
        return ex10.standard_normal_log_prob(z.double())

    _fails_on(ex10.check_standard_normal_log_prob, float64, capsys, "float32 in, float32 out",
              "expected dtype torch.float32")


def test_log_prob_from_torch_distributions_passes(capsys):
    _passes(ex10.check_standard_normal_log_prob,
            lambda z: torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=-1), capsys)


# --- exercise 2: the exact trace ------------------------------------------------------------------


def test_trace_without_create_graph_fails_on_the_differentiable_case(capsys):
    def wrong(f, z):
        rows = [torch.autograd.grad(f[:, i].sum(), z, retain_graph=True)[0][:, i] for i in range(z.shape[1])]
        return torch.stack(rows, 1).sum(1)

    out = _fails_on(ex10.check_exact_trace, wrong, capsys, "differentiable: the trace's gradient reaches",
                    "carries no graph", "create_graph=True")
    assert "ok    MLP field, D = 5" in out  # the values are right


def test_trace_from_the_sum_of_all_outputs_fails(capsys):
    def wrong(f, z):  # the sum of every Jacobian entry, not the diagonal
        return torch.autograd.grad(f.sum(), z, create_graph=True)[0].sum(1)

    _fails_on(ex10.check_exact_trace, wrong, capsys, "a linear field z A^T: the trace is tr A", "values differ")


def test_trace_sample_by_sample_fails_on_the_number_of_passes(capsys):
    def per_sample(f, z):  # B * D backward passes where D serve the whole batch
        return torch.stack([sum(torch.autograd.grad(f[b, i], z, create_graph=True)[0][b, i]
                                for i in range(z.shape[1])) for b in range(z.shape[0])])

    out = _fails_on(ex10.check_exact_trace, per_sample, capsys, "D = 4, batch 8: D backward passes",
                    "32 backward passes through f")
    assert "ok    a linear field" not in out  # every case counts the passes, and each has B > 1


def test_trace_without_retaining_the_graph_raises_and_is_reported(capsys):
    def wrong(f, z):
        rows = [torch.autograd.grad(f[:, i].sum(), z)[0][:, i] for i in range(z.shape[1])]
        return torch.stack(rows, 1).sum(1)

    _fails(ex10.check_exact_trace, wrong, capsys, "raised RuntimeError")


def test_trace_with_one_hot_grad_outputs_passes(capsys):
    def one_hot(f, z):
        total = torch.zeros(z.shape[0], dtype=z.dtype)
        for i in range(z.shape[1]):
            e = torch.zeros_like(f)
            e[:, i] = 1
            total = total + (torch.autograd.grad(f, z, e, create_graph=True)[0] * e).sum(1)
        return total

    _passes(ex10.check_exact_trace, one_hot, capsys)


# --- exercise 3: Hutchinson's estimator -----------------------------------------------------------


def test_hutchinson_without_the_second_probe_fails(capsys):
    def wrong(f, z, eps):
        return torch.autograd.grad(f, z, grad_outputs=eps, create_graph=True)[0].sum(1)

    _fails_on(ex10.check_hutchinson_trace, wrong, capsys, "the probe e_i picks the diagonal entry", "values differ")


def test_hutchinson_summed_over_the_batch_fails(capsys):
    def wrong(f, z, eps):
        return (torch.autograd.grad(f, z, grad_outputs=eps, create_graph=True)[0] * eps).sum()

    _fails_on(ex10.check_hutchinson_trace, wrong, capsys, "a Gaussian probe, D = 4", "expected shape (5,)")


def test_hutchinson_from_the_full_jacobian_fails_on_the_number_of_passes(capsys):
    def full_jacobian(f, z, eps):  # right numbers, D passes
        rows = [torch.autograd.grad(f[:, i].sum(), z, create_graph=True)[0] for i in range(z.shape[1])]
        jac = torch.stack(rows, dim=1)  # [B, D, D]
        return torch.einsum("bi,bij,bj->b", eps, jac, eps)

    _fails_on(ex10.check_hutchinson_trace, full_jacobian, capsys, "ONE vector-Jacobian product",
              "5 backward passes through f")


def test_hutchinson_without_create_graph_fails(capsys):
    def wrong(f, z, eps):
        return (torch.autograd.grad(f, z, grad_outputs=eps)[0] * eps).sum(1)

    _fails_on(ex10.check_hutchinson_trace, wrong, capsys, "differentiable: the estimate's gradient", "carries no graph")


def test_hutchinson_with_einsum_passes(capsys):
    def other(f, z, eps):
        (row,) = torch.autograd.grad(f, z, eps, create_graph=True)
        return torch.einsum("bd,bd->b", row, eps)

    _passes(ex10.check_hutchinson_trace, other, capsys)


# --- exercise 4: the augmented dynamics -----------------------------------------------------------


def test_dynamics_with_the_wrong_sign_fails(capsys):
    def wrong(field, t, state):
        f, minus_trace = ex10.cnf_dynamics(field, t, state)
        return f, -minus_trace

    _fails_on(ex10.check_cnf_dynamics, wrong, capsys, "minus the trace: a linear field", "d delta/dt: values differ",
              "MINUS the trace")


def test_dynamics_without_enable_grad_fails_under_no_grad(capsys):
    def wrong(field, t, state):
        z = state[0]
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
        f = field(t, z)
        return f, -ex10.exact_trace(f, z)

    out = _fails_on(ex10.check_cnf_dynamics, wrong, capsys, "called inside torch.no_grad()", "raised RuntimeError")
    assert "ok    minus the trace: a linear field" in out  # the cases with autograd on pass


def test_dynamics_that_always_detach_z_fail_on_the_gradient_through_z(capsys):
    def always_detach(field, t, state):
        with torch.enable_grad():
            z = state[0].detach().requires_grad_(True)
            f = field(t, z)
            return f, -ex10.exact_trace(f, z)

    out = _fails_on(ex10.check_cnf_dynamics, always_detach, capsys, "a z that requires grad is used as it is",
                    "f has no graph back to the z it was given")
    assert "ok    called inside torch.no_grad()" in out


def test_dynamics_adding_delta_fails(capsys):
    def adds_delta(field, t, state):
        f, d_delta = ex10.cnf_dynamics(field, t, state)
        return f, d_delta + state[1]

    _fails_on(ex10.check_cnf_dynamics, adds_delta, capsys, "the current delta does not enter its derivative")


def test_dynamics_with_hutchinson_style_vjps_pass(capsys):
    """The trace from D vector-Jacobian products with basis probes, autograd switched on by a decorator."""
    @torch.enable_grad()
    def other(field, t, state):
        z = state[0] if state[0].requires_grad else state[0].detach().requires_grad_()
        f = field(t, z)
        eye = torch.eye(z.shape[1], dtype=z.dtype)
        trace = sum(ex10.hutchinson_trace(f, z, eye[i].expand_as(z)) for i in range(z.shape[1]))
        return f, -trace

    _passes(ex10.check_cnf_dynamics, other, capsys)


# --- exercise 5: the log-likelihood ---------------------------------------------------------------


def _log_prob(step, sign=-1.0, base_at_x=False):
    def log_prob(field, x, t1=1.0, n_steps=8):
        t = torch.tensor([0.0, t1], dtype=x.dtype)
        zs, deltas = odeint(lambda s, st: ex10.cnf_dynamics(field, s, st), (x, torch.zeros(len(x), dtype=x.dtype)),
                            t, method="rk4", options={"step_size": step(t1, n_steps)})
        return ex10.standard_normal_log_prob(x if base_at_x else zs[-1]) + sign * deltas[-1]
    return log_prob


def test_log_prob_with_plus_delta_fails(capsys):
    _fails_on(ex10.check_cnf_log_prob, _log_prob(lambda t1, n: t1 / n, sign=1.0), capsys,
              "log N(z(t1)) MINUS delta(t1): a linear field", "values differ")


def test_log_prob_with_the_base_density_at_x_fails(capsys):
    _fails_on(ex10.check_cnf_log_prob, _log_prob(lambda t1, n: t1 / n, base_at_x=True), capsys,
              "the base density at z(t1), not at x")


def test_log_prob_ignoring_t1_in_the_step_fails_only_where_it_matters(capsys):
    out = _fails_on(ex10.check_cnf_log_prob, _log_prob(lambda t1, n: 1.0 / n), capsys,
                    "step t1 / n_steps: [0, 0.5] in 4 steps")
    assert "ok    log N(z(t1)) MINUS delta(t1): a linear field, [0, 1]" in out


def test_log_prob_with_an_output_grid_passes(capsys):
    def grid(field, x, t1=1.0, n_steps=8):
        times = torch.linspace(0.0, t1, n_steps + 1, dtype=x.dtype)
        zs, deltas = odeint(lambda s, st: ex10.cnf_dynamics(field, s, st), (x, x.new_zeros(x.shape[0])), times,
                            method="rk4", options={"step_size": t1 / n_steps})
        return ex10.standard_normal_log_prob(zs[-1]) - deltas[-1]

    _passes(ex10.check_cnf_log_prob, grid, capsys)


# --- exercise 6 (find the bug) and exercise 7 (predict) -------------------------------------------


def test_the_shipped_gaussian_bug_fails_where_std_is_not_one(capsys):
    assert ex10.check_diag_gaussian_log_prob(ex10.buggy_diag_gaussian_log_prob) is ex10.diag_gaussian_log_prob
    out = capsys.readouterr().out
    assert "ok    standard normal" in out and "wrong std 0.5 and 3: the normaliser" in out
    assert "log std once" in out


def test_gaussian_log_prob_from_torch_distributions_passes(capsys):
    def other(z, mean, std):
        return torch.distributions.Normal(mean, std).log_prob(z).sum(-1)

    assert ex10.check_diag_gaussian_log_prob(other) is other
    assert "passed 4/4" in capsys.readouterr().out


def test_gaussian_log_prob_without_the_sum_fails(capsys):
    def per_dim(z, mean, std):
        return torch.distributions.Normal(mean, std).log_prob(z)

    assert ex10.check_diag_gaussian_log_prob(per_dim) is ex10.diag_gaussian_log_prob
    assert "expected shape (5,), got (5, 2)" in capsys.readouterr().out


def test_origin_log_density_prediction(capsys):
    assert ex10.check_origin_log_density_prediction(None, verbose=False) == pytest.approx(-math.log(2 * math.pi), abs=1e-4)
    ex10.check_origin_log_density_prediction(0.0)
    out = capsys.readouterr().out
    assert "FAILED" in out and "normaliser" in out
    ex10.check_origin_log_density_prediction(-1.84)
    assert "passed" in capsys.readouterr().out
