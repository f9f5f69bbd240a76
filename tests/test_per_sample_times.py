"""Per-sample solves: each sample's own output times ``t`` of shape ``[B, T]``, outputs served from
dense output at a cost that does not grow with their number, and the batched interpolant."""
from __future__ import annotations

import pytest
import torch
import torchdiffeq

from nodecourse import odeint, solve
from nodecourse.solvers import interpolation, rk_step
from nodecourse.solvers.tableaux import TABLEAUX

B = 6
RATES = torch.linspace(0.3, 2.5, B, dtype=torch.float64)


def decay(t, y):
    """dy/dt = -k_b y + sin(t): each sample its own rate; t is [B] per sample (or 0-d)."""
    return -RATES.unsqueeze(1) * y + torch.sin(t).reshape(-1, 1)


def irregular_times(seed=0, n=7, span=4.0):
    """Each sample its own increasing times, starting at its own time."""
    g = torch.Generator().manual_seed(seed)
    times = torch.sort(torch.rand(B, n, generator=g, dtype=torch.float64) * span, dim=1).values
    return times + torch.arange(n, dtype=torch.float64) * 1e-3  # strictly increasing


Y0 = torch.linspace(-1.0, 1.0, 2 * B, dtype=torch.float64).reshape(B, 2)


def solo_reference(b, times):
    """Sample b alone, solved by torchdiffeq at a tight tolerance (an independent reference)."""
    def field(t, y):
        return -RATES[b] * y + torch.sin(t)
    return torchdiffeq.odeint(field, Y0[b], times, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rkf45"])
def test_each_sample_gets_its_own_times(method):
    times = irregular_times()
    ys = odeint(decay, Y0, times, rtol=1e-9, atol=1e-11, method=method, options={"per_sample": True})
    assert ys.shape == (times.shape[1], B, 2)
    # rkf45 has no midpoint weights: between its steps it interpolates with the third-order cubic Hermite
    tol = 1e-5 if method == "rkf45" else 1e-7
    for b in range(B):
        assert torch.allclose(ys[:, b], solo_reference(b, times[b]), rtol=0, atol=tol), b


def test_decreasing_per_sample_times():
    times = irregular_times(seed=1).flip(1)
    ys = odeint(decay, Y0, times, rtol=1e-9, atol=1e-11, options={"per_sample": True})
    for b in range(B):
        assert torch.allclose(ys[:, b], solo_reference(b, times[b]), rtol=1e-6, atol=1e-7), b


def test_each_sample_steps_as_if_alone():
    """Per-sample statistics: a sample's steps do not depend on the others or on their times."""
    times = irregular_times(seed=2)
    together = solve(decay, Y0, times, rtol=1e-8, atol=1e-8, options={"per_sample": True})
    for b in range(B):
        def alone_field(t, y, b=b):
            return -RATES[b] * y + torch.sin(t).reshape(-1, 1)
        alone = solve(alone_field, Y0[b:b + 1], times[b:b + 1], rtol=1e-8, atol=1e-8, options={"per_sample": True})
        assert int(together.stats.n_steps[b]) == int(alone.stats.n_steps[0])
        assert torch.allclose(together.ys[:, b], alone.ys[:, 0], rtol=1e-12, atol=1e-14)


def test_a_first_step_per_sample_is_each_samples_first_step():
    """first_step as a [B] tensor: sample b starts with step h_b, as if solved alone with first_step=h_b."""
    times = irregular_times(seed=3)
    first = torch.logspace(-4, -1, B, dtype=torch.float64)
    together = solve(decay, Y0, times, rtol=1e-8, atol=1e-8, options={"per_sample": True, "first_step": first})
    steps = []
    for b in range(B):
        def alone_field(t, y, b=b):
            return -RATES[b] * y + torch.sin(t).reshape(-1, 1)
        alone = solve(alone_field, Y0[b:b + 1], times[b:b + 1], rtol=1e-8, atol=1e-8,
                      options={"per_sample": True, "first_step": float(first[b])})
        assert int(together.stats.n_steps[b]) == int(alone.stats.n_steps[0]), b
        assert torch.allclose(together.ys[:, b], alone.ys[:, 0], rtol=1e-12, atol=1e-14)
        steps.append(int(alone.stats.n_steps[0]))
    assert len(set(steps)) > 1  # the first steps matter: the samples took different numbers of steps


@pytest.mark.parametrize("first_step, per_sample, match", [
    (torch.full((B,), 0.1), False, "only with options"),
    (torch.full((B + 1,), 0.1), True, "one per sample"),
    (torch.tensor([0.1, -0.1, 0.1, 0.1, 0.1, 0.1]), True, "positive finite"),
    (torch.full((B, 2), 0.1), True, "shape \\[batch\\]"),
])
def test_bad_per_sample_first_steps_are_explained(first_step, per_sample, match):
    with pytest.raises(ValueError, match=match):
        solve(decay, Y0, irregular_times(), options={"per_sample": per_sample, "first_step": first_step})


def test_rows_that_are_equal_give_the_shared_times_answer():
    t = torch.linspace(0.0, 3.0, 9, dtype=torch.float64)
    shared = solve(decay, Y0, t, rtol=1e-8, atol=1e-8, options={"per_sample": True})
    rows = solve(decay, Y0, t.expand(B, -1), rtol=1e-8, atol=1e-8, options={"per_sample": True})
    assert torch.equal(shared.ys, rows.ys)
    assert torch.equal(shared.stats.n_steps, rows.stats.n_steps)


@pytest.mark.parametrize("per_sample_times", [False, True])
def test_the_number_of_outputs_does_not_change_the_steps(per_sample_times):
    """Outputs come from dense output: 2 or 2,000 output times, the same steps and evaluations."""
    def times(n):
        t = torch.linspace(0.0, 5.0, n, dtype=torch.float64)
        return t.expand(B, -1) * torch.linspace(0.6, 1.0, B, dtype=torch.float64).unsqueeze(1) if per_sample_times \
            else t
    few = solve(decay, Y0, times(2), rtol=1e-6, atol=1e-6, options={"per_sample": True})
    many = solve(decay, Y0, times(2000), rtol=1e-6, atol=1e-6, options={"per_sample": True})
    assert torch.equal(few.stats.nfe, many.stats.nfe)
    assert few.stats.n_calls == many.stats.n_calls
    assert torch.allclose(few.ys[-1], many.ys[-1], rtol=0, atol=1e-14)


def test_gradients_through_per_sample_times_match_finite_differences():
    times = irregular_times(seed=3, n=4).requires_grad_(True)
    y0 = Y0.clone().requires_grad_(True)
    weights = torch.randn(4, B, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(y0_, times_):
        return (odeint(decay, y0_, times_, rtol=1e-11, atol=1e-12, options={"per_sample": True}) * weights).sum()

    loss(y0, times).backward()
    eps = 1e-6
    for (b, j) in [(0, 0), (2, 1), (4, 3)]:
        d = torch.zeros_like(times)
        d[b, j] = eps
        with torch.no_grad():
            numeric = (loss(Y0, times.detach() + d) - loss(Y0, times.detach() - d)) / (2 * eps)
        assert abs(float(times.grad[b, j]) - float(numeric)) < 1e-5, (b, j)
    for b in (1, 5):
        d = torch.zeros_like(Y0)
        d[b, 0] = eps
        with torch.no_grad():
            numeric = (loss(Y0 + d, times.detach()) - loss(Y0 - d, times.detach())) / (2 * eps)
        assert abs(float(y0.grad[b, 0]) - float(numeric)) < 1e-5, b


@pytest.mark.parametrize("t,options,method,match", [
    (irregular_times(), {}, "dopri5", "per_sample"),
    (irregular_times()[:3], {"per_sample": True}, "dopri5", "rows of output times"),
    (irregular_times(), {"per_sample": True, "step_size": 0.1}, "rk4", "adaptive method"),
    (torch.stack([torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])] * 3).double(), {"per_sample": True}, "dopri5",
     "same direction"),
])
def test_bad_per_sample_times_are_explained(t, options, method, match):
    with pytest.raises(ValueError, match=match):
        odeint(decay, Y0, t, method=method, options=options)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rkf45", "adaptive_heun"])
def test_the_batched_interpolant_is_the_fitted_one(method):
    """interpolation.dense_weights writes interpolation.fit's polynomial in the stages: same values."""
    tableau = TABLEAUX[method]
    y0 = Y0
    t0 = torch.zeros(B, dtype=torch.float64)
    dt = torch.linspace(0.1, 0.4, B, dtype=torch.float64)
    f0 = decay(t0, y0)
    y1, _, stages = rk_step.rk_step(decay, tableau, t0, y0, f0, dt)
    f1 = stages[-1] if tableau.fsal else decay(t0 + dt, y1)
    y_mid = rk_step.midpoint(tableau, y0, stages, dt)
    poly = interpolation.fit(y0, y1, f0, f1, dt.unsqueeze(1), y_mid)
    weights = torch.tensor(interpolation.dense_weights(tableau), dtype=torch.float64)   # [S', 4]
    ks = torch.stack(stages if tableau.fsal else [*stages, f1], dim=1)                  # [B, S', N]
    for x in (0.0, 0.3, 0.5, 0.9, 1.0):
        powers = torch.tensor([x, x ** 2, x ** 3, x ** 4], dtype=torch.float64)
        batched = y0 + dt.unsqueeze(1) * torch.einsum("s,bsn->bn", weights @ powers, ks)
        fitted = interpolation.evaluate(poly, torch.full((1, B, 1), x, dtype=torch.float64))[0]
        assert torch.allclose(batched, fitted, rtol=1e-13, atol=1e-14), x


def test_many_outputs_per_step_match_each_sample_solved_alone():
    """Hundreds of own output times: most steps pass many of them, served late in stacked batches."""
    times = irregular_times(seed=4, n=400)
    ys = odeint(decay, Y0, times, rtol=1e-10, atol=1e-12, options={"per_sample": True})
    for b in range(B):
        assert torch.allclose(ys[:, b], solo_reference(b, times[b]), rtol=0, atol=1e-8), b


def _grouped_by(monkeypatch, budget, most_kept):
    """Run the solver with outputs evaluated in groups of at most ``most_kept`` iterations (or
    ``budget`` stage values); returns the outputs and the sizes of the groups."""
    from nodecourse.solvers import per_sample
    groups = []
    flush, init = per_sample.Outputs.flush, per_sample.Outputs.__init__

    def recording_flush(self):
        if self.kept:
            groups.append((len(self.kept), sum(len(trial.stages) * trial.y.numel() for trial, _ in self.kept)))
        flush(self)

    def small_init(self, y0, times, tableau):
        init(self, y0, times, tableau, budget=budget, most_kept=most_kept)

    monkeypatch.setattr(per_sample.Outputs, "flush", recording_flush)
    monkeypatch.setattr(per_sample.Outputs, "__init__", small_init)
    times = irregular_times(seed=5, n=120)
    ys = odeint(decay, Y0, times, rtol=1e-7, atol=1e-9, options={"per_sample": True})
    monkeypatch.undo()
    return ys, groups


def test_outputs_do_not_depend_on_how_the_steps_are_grouped(monkeypatch):
    one_by_one, singles = _grouped_by(monkeypatch, budget=1, most_kept=64)
    in_groups, groups = _grouped_by(monkeypatch, budget=2 ** 20, most_kept=8)
    assert max(n for n, _ in singles) == 1 and max(n for n, _ in groups) == 8
    assert len(groups) < len(singles)
    assert torch.allclose(one_by_one, in_groups, rtol=0, atol=1e-14)


def test_kept_steps_stay_within_the_budget(monkeypatch):
    """The steps kept for late evaluation hold at most ``budget`` stage values (one step may exceed it alone)."""
    budget = 7 * B * 2 * 3   # three dopri5 iterations' stages
    _, groups = _grouped_by(monkeypatch, budget=budget, most_kept=64)
    assert max(held for _, held in groups) <= budget
    assert max(n for n, _ in groups) == 3


def test_a_plain_record_keeps_no_stages_and_a_stage_record_keeps_every_trials():
    """The checkpoint replay's record holds one state per iteration; only a StageRecord also holds the
    trial's stage derivatives (what the seminorm adjoint's quadrature needs), S of them, each [B, N]."""
    from nodecourse.solvers.api import solve_recording_steps
    from nodecourse.solvers.per_sample import StageRecord

    y0 = torch.linspace(0.5, 1.5, 8, dtype=torch.float64).reshape(4, 2)
    t = torch.linspace(0.0, 2.0, 3, dtype=torch.float64)
    plain, staged = [], StageRecord()
    for record in (plain, staged):
        solve_recording_steps(lambda t, y: -y, y0, t, 1e-6, 1e-6, "dopri5", {"per_sample": True}, record)
    assert len(plain) == len(staged) > 0
    assert all(step.stages is None for step in plain)
    for step, twin in zip(staged, plain):
        assert len(step.stages) == 7 and all(k.shape == (4, 2) for k in step.stages)
        assert torch.equal(step.stages[0], -step.y)  # the first stage is the field at the step's start
        assert torch.equal(step.y, twin.y)
