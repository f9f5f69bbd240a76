"""The textbook solve (nodecourse/solvers/textbook.py) against the package's fast path.

``nodecourse.solve`` in its default shared-step mode must take exactly the textbook's steps (the same
trial steps accepted and rejected, at the same times, with the same step sizes), count the same
evaluations and return the same outputs; and both must agree with the exact solution.
"""
from __future__ import annotations

import math

import pytest
import torch

from nodecourse import SolverError, solve
from nodecourse.solvers import ADAPTIVE_METHODS, TABLEAUX
from nodecourse.solvers.textbook import textbook_solve

F64 = {"dtype": torch.float64}

METHODS = [m for m in ("dopri5", "bosh3", "rkf45", "fehlberg2", "adaptive_heun", "dopri8") if m in TABLEAUX]
# adaptive_heun, a low-order pair, takes many small steps: a looser tolerance keeps its solves short. (fehlberg2,
# as low, keeps the tight one: its error estimate is reliable only there, see tableaux.py.)
RTOL = {"adaptive_heun": 1e-5}
# Output times inside a step come from the interpolant. For rkf45 (a cubic Hermite, third order, on a
# fourth-order method) and dopri8 (a quartic through a fifth-order midpoint, on an eighth-order method)
# the interpolant is less accurate than the steps, so the error there exceeds what the tolerance allows
# the steps by the factor below.
INTERPOLATION_SLACK = {"rkf45": 20.0, "dopri8": 1000.0}

RATES = torch.linspace(-1.0, 1.0, 12, **F64).reshape(4, 3)


def decay(t, y):
    return -0.7 * y


def oscillator(t, y):
    return torch.stack([y[1], -4.0 * y[0]])


def batch_field(t, y):
    return torch.cos(t) * RATES * y  # every entry of the [4, 3] batch at its own rate, one shared step


def decay_exact(t, t0, y0):
    return y0 * torch.exp(-0.7 * (t - t0))


def oscillator_exact(t, t0, y0):
    tau = (t - t0).unsqueeze(1)
    x0, v0 = y0
    return torch.cat([x0 * torch.cos(2 * tau) + v0 / 2 * torch.sin(2 * tau),
                      -2 * x0 * torch.sin(2 * tau) + v0 * torch.cos(2 * tau)], dim=1)


def batch_exact(t, t0, y0):
    return y0 * torch.exp(RATES * (torch.sin(t) - math.sin(t0)).reshape(-1, 1, 1))


PROBLEMS = {  # name: (field, y0, end time, exact solution (t, t0, y0) -> [len(t), *y0.shape])
    "scalar decay": (decay, torch.tensor(2.0, **F64), 4.0, decay_exact),
    "2-D oscillator": (oscillator, torch.tensor([1.0, 0.5], **F64), 3.0, oscillator_exact),
    "batch [4, 3]": (batch_field, torch.linspace(0.5, 2.0, 12, **F64).reshape(4, 3), 5.0, batch_exact),
}


class Recorded:
    """A vector field that counts its calls and records the steps the package accepts and rejects."""

    def __init__(self, f):
        self.f, self.calls, self.accepted, self.rejected = f, 0, [], []

    def __call__(self, t, y):
        self.calls += 1
        return self.f(t, y)

    def callback_accept_step(self, t0, y0, dt):
        self.accepted.append((float(t0), float(dt)))

    def callback_reject_step(self, t0, y0, dt):
        self.rejected.append((float(t0), float(dt)))


def test_the_methods_asked_for_are_there():
    assert {"dopri5", "bosh3", "rkf45", "fehlberg2", "adaptive_heun"} <= set(METHODS) <= set(ADAPTIVE_METHODS)


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("method", METHODS)
def test_fast_path_takes_the_textbook_steps(method, problem, backward):
    func, y0, t_end, exact = PROBLEMS[problem]
    t = torch.linspace(0.0, t_end, 9, **F64)
    if backward:
        t = t.flip(0)
    rtol = RTOL.get(method, 1e-7)
    atol = rtol / 100
    fast, textbook = Recorded(func), Recorded(func)
    solution = solve(fast, y0, t, rtol=rtol, atol=atol, method=method)
    ys, log = textbook_solve(textbook, y0, t, rtol=rtol, atol=atol, method=method)

    # The same decisions: every trial step at the same time with the same size, accepted or rejected alike
    # (the package reports |dt|, the textbook the signed step).
    assert [(r.t, abs(r.dt)) for r in log if r.accepted] == fast.accepted
    assert [(r.t, abs(r.dt)) for r in log if not r.accepted] == fast.rejected
    assert all(r.dt < 0 for r in log) if backward else all(r.dt > 0 for r in log)
    stats = solution.stats
    assert (stats.n_steps, stats.n_accepted, stats.n_rejected) == (
        len(log), sum(r.accepted for r in log), sum(not r.accepted for r in log))
    assert stats.nfe == fast.calls == textbook.calls

    # The same outputs.
    assert ys.shape == solution.ys.shape == (len(t), *y0.shape)
    assert (ys - solution.ys).abs().max() <= 1e-12 * solution.ys.abs().max()

    # Both right: the local errors, each at most atol + rtol |y| in the RMS norm, add up over the accepted steps.
    truth = exact(t, float(t[0]), y0)
    allowed = stats.n_accepted * (atol + rtol * float(truth.abs().max())) * INTERPOLATION_SLACK.get(method, 1.0)
    for name, result in (("textbook", ys), ("package", solution.ys)):
        error = float((result - truth).abs().max())
        assert error <= allowed, f"{name}: error {error:.2e} above the {allowed:.2e} the tolerance allows"


def test_max_num_steps_error_is_clear_and_comes_where_the_package_stops():
    func, y0, t_end, _ = PROBLEMS["2-D oscillator"]
    t = torch.tensor([0.0, t_end], **F64)
    _, log = textbook_solve(func, y0, t, method="bosh3")
    n = len(log)
    textbook_solve(func, y0, t, method="bosh3", max_num_steps=n)  # exactly enough
    solve(func, y0, t, method="bosh3", options={"max_num_steps": n})
    with pytest.raises(SolverError) as info:
        textbook_solve(func, y0, t, method="bosh3", max_num_steps=n - 1)
    message = str(info.value)
    assert f"max_num_steps={n - 1:,}" in message and f"not to t={t_end:g}" in message
    assert "got only to t=" in message and "raise max_num_steps" in message and "loosen rtol/atol" in message
    with pytest.raises(SolverError, match="max_num_steps"):
        solve(func, y0, t, method="bosh3", options={"max_num_steps": n - 1})


def test_fixed_step_methods_are_refused_with_the_adaptive_ones_named():
    func, y0, t_end, _ = PROBLEMS["scalar decay"]
    with pytest.raises(ValueError, match="adaptive method.*dopri5.*'rk4'"):
        textbook_solve(func, y0, torch.tensor([0.0, t_end], **F64), method="rk4")
