"""The checkers of 10_continuous_flows: references agree with independent computations, a correct answer
passes and is kept, plausible wrong answers fail with a useful message, an unattempted exercise hands
back the reference."""
from __future__ import annotations

import math

import pytest
import torch

from nodecourse import odeint
from nodecourse.exercises import ex10
from nodecourse.exercises import checking
from nodecourse.models.flows import CNF, CNFField

from helpers import assert_checker_rejects as _fails

DT = torch.float64


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_checker_contract.py."""
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


# --- correct answers pass and are kept; unattempted ones hand back the reference -------------------

CHECKERS = [
    (ex10.check_standard_normal_log_prob, ex10.standard_normal_log_prob),
    (ex10.check_exact_trace, ex10.exact_trace),
    (ex10.check_hutchinson_trace, ex10.hutchinson_trace),
    (ex10.check_cnf_dynamics, ex10.cnf_dynamics),
    (ex10.check_cnf_log_prob, ex10.cnf_log_prob),
]


@pytest.mark.parametrize("checker", [c for c, _ in CHECKERS], ids=[c.__name__ for c, _ in CHECKERS])
def test_checkers_reject_a_non_function(checker):
    with pytest.raises(TypeError, match="expects your function itself"):
        checker(3.0)


def test_reference_rejects_a_single_vector():
    with pytest.raises(ValueError, match=r"batch \[B, D\]"):
        ex10.standard_normal_log_prob(torch.zeros(3))


# --- plausible wrong answers fail with a useful message -------------------------------------------


def test_log_prob_without_the_constant_fails(capsys):
    _fails(ex10.check_standard_normal_log_prob, lambda z: -0.5 * (z**2).sum(dim=1), capsys,
           "values differ", "normalising constant")


def test_log_prob_summed_over_the_batch_fails(capsys):
    def wrong(z):
        return -0.5 * (z**2).sum() - 0.5 * z.shape[1] * math.log(2 * math.pi)

    _fails(ex10.check_standard_normal_log_prob, wrong, capsys, "expected shape")


def test_trace_without_create_graph_fails_with_the_graph_message(capsys):
    def wrong(f, z):
        rows = [torch.autograd.grad(f[:, i].sum(), z, retain_graph=True)[0][:, i] for i in range(z.shape[1])]
        return torch.stack(rows, 1).sum(1)

    _fails(ex10.check_exact_trace, wrong, capsys, "carries no graph", "create_graph=True")


def test_trace_from_the_sum_of_all_outputs_fails(capsys):
    def wrong(f, z):  # the sum of every Jacobian entry, not the diagonal
        return torch.autograd.grad(f.sum(), z, create_graph=True)[0].sum(1)

    _fails(ex10.check_exact_trace, wrong, capsys, "values differ")


def test_trace_without_retaining_the_graph_raises_and_is_reported(capsys):
    def wrong(f, z):
        rows = [torch.autograd.grad(f[:, i].sum(), z)[0][:, i] for i in range(z.shape[1])]
        return torch.stack(rows, 1).sum(1)

    _fails(ex10.check_exact_trace, wrong, capsys, "raised RuntimeError")


def test_hutchinson_without_the_second_probe_fails(capsys):
    def wrong(f, z, eps):
        return torch.autograd.grad(f, z, grad_outputs=eps, create_graph=True)[0].sum(1)

    _fails(ex10.check_hutchinson_trace, wrong, capsys, "values differ", "second eps")


def test_hutchinson_summed_over_the_batch_fails(capsys):
    def wrong(f, z, eps):
        return (torch.autograd.grad(f, z, grad_outputs=eps, create_graph=True)[0] * eps).sum()

    _fails(ex10.check_hutchinson_trace, wrong, capsys, "expected shape")


def test_dynamics_with_the_wrong_sign_fails(capsys):
    def wrong(field, t, state):
        f, minus_trace = ex10.cnf_dynamics(field, t, state)
        return f, -minus_trace

    _fails(ex10.check_cnf_dynamics, wrong, capsys, "item 1", "return (f, -trace)")


def test_dynamics_without_enable_grad_fails_under_no_grad(capsys):
    def wrong(field, t, state):
        z = state[0]
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
        f = field(t, z)
        return f, -ex10.exact_trace(f, z)

    out = _fails(ex10.check_cnf_dynamics, wrong, capsys, "torch.no_grad()", "raised RuntimeError")
    assert "ok    linear field" in out  # the cases with autograd on pass


def test_log_prob_with_plus_delta_fails(capsys):
    def wrong(field, x, t1=1.0, n_steps=8):
        t = torch.tensor([0.0, t1], dtype=x.dtype)
        zs, deltas = odeint(lambda s, st: ex10.cnf_dynamics(field, s, st), (x, torch.zeros(len(x), dtype=x.dtype)),
                            t, method="rk4", options={"step_size": t1 / n_steps})
        return ex10.standard_normal_log_prob(zs[-1]) + deltas[-1]

    _fails(ex10.check_cnf_log_prob, wrong, capsys, "values differ")


def test_log_prob_ignoring_t1_in_the_step_fails_only_where_it_matters(capsys):
    def wrong(field, x, t1=1.0, n_steps=8):
        t = torch.tensor([0.0, t1], dtype=x.dtype)
        zs, deltas = odeint(lambda s, st: ex10.cnf_dynamics(field, s, st), (x, torch.zeros(len(x), dtype=x.dtype)),
                            t, method="rk4", options={"step_size": 1.0 / n_steps})
        return ex10.standard_normal_log_prob(zs[-1]) - deltas[-1]

    out = _fails(ex10.check_cnf_log_prob, wrong, capsys, "wrong MLP field, D = 2, float32, [0, 2]")
    assert "ok    linear field z A^T on [0, 1]" in out


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
