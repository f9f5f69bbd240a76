"""odeint_adjoint(gradient="checkpoint"): each forward step replayed and backpropagated, so the
backward pass costs about the forward's evaluations however many output times each sample has."""
from __future__ import annotations

import math

import pytest
import torch

from nodecourse import odeint, odeint_adjoint, solve_adjoint

PER_SAMPLE = {"per_sample": True}


class Field(torch.nn.Module):
    """An MLP field that also reads t ([B] per sample); counts its calls."""

    def __init__(self, dtype=torch.float64, width=16):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.Tanh(), torch.nn.Linear(width, 2)).to(dtype)
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        time = torch.sin(t).reshape(-1, 1).expand(y.shape[0], 1)
        return self.net(torch.cat([y, time], dim=1))


def own_times(batch, n_times, span=3.0, seed=0, dtype=torch.float64):
    """Each sample's own sorted times in [0, span], starting at 0."""
    g = torch.Generator().manual_seed(seed)
    times = torch.sort(torch.rand(batch, n_times, generator=g, dtype=torch.float64) * span, dim=1).values
    times[:, 0] = 0.0
    return times.to(dtype)


def gradients(solver, field, y0, t, weights, **kwargs):
    y0 = y0.clone().requires_grad_(True)
    ys = solver(field, y0, t, **kwargs)
    return torch.autograd.grad((ys * weights).sum(), (y0, *field.parameters()))


def close(got, ref, tol):
    return all(torch.allclose(g, r, rtol=0, atol=tol * (1 + r.abs().max())) for g, r in zip(got, ref))


@pytest.mark.parametrize("method", ["dopri5", "rkf45", "bosh3"])
def test_equals_backprop_through_the_same_solve(method):
    """The replay recomputes the forward's steps, so its gradient is backprop's through the whole solve
    (which keeps every operation in memory) to rounding, at the same loose tolerance."""
    field, t = Field(), own_times(8, 12)
    y0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    weights = torch.randn(12, 8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    loose = dict(rtol=1e-4, atol=1e-5, method=method, options=PER_SAMPLE)
    reference = gradients(odeint, field, y0, t, weights, **loose)
    replayed = gradients(odeint_adjoint, field, y0, t, weights, gradient="checkpoint", **loose)
    assert close(replayed, reference, 1e-11)


def test_matches_the_exact_gradient_of_exponential_decay():
    """y' = -k y has y(t) = y0 exp(-k t): dL/dy0 and dL/dk in closed form for L = sum_i w_i y(t_i)."""
    class Decay(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(0.7, dtype=torch.float64))

        def forward(self, t, y):
            return -self.k * y

    decay, t = Decay(), own_times(6, 9, span=4.0, seed=3)
    y0 = torch.linspace(0.5, 2.0, 6, dtype=torch.float64).reshape(6, 1)
    weights = torch.randn(9, 6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    grad_y0, grad_k = gradients(odeint_adjoint, decay, y0, t, weights, rtol=1e-10, atol=1e-12,
                                options=PER_SAMPLE, gradient="checkpoint")
    factor = torch.exp(-0.7 * t.t()).unsqueeze(2)                                 # [T, B, 1]
    assert torch.allclose(grad_y0, (weights * factor).sum(0), rtol=1e-8, atol=0)
    exact_k = (weights * (-t.t().unsqueeze(2)) * y0 * factor).sum()
    assert math.isclose(grad_k.item(), exact_k.item(), rel_tol=1e-8)


def test_agrees_with_the_continuous_adjoint_at_tight_tolerances():
    field, t = Field(), own_times(5, 7, seed=5)
    y0 = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    weights = torch.randn(7, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    tight = dict(rtol=1e-10, atol=1e-12, options=PER_SAMPLE)
    adjoint = gradients(odeint_adjoint, field, y0, t, weights, **tight)
    replayed = gradients(odeint_adjoint, field, y0, t, weights, gradient="checkpoint", **tight)
    assert close(replayed, adjoint, 1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shared_times_decreasing_times_and_tuple_states(dtype):
    """1-D t shared by the batch, time running backwards, and a state of two tensors."""
    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.tensor([[0.0, 1.0], [-1.0, -0.1]], dtype=dtype))
            self.b = torch.nn.Parameter(torch.tensor([0.3], dtype=dtype))

        def forward(self, t, state):
            x, v = state
            return v * self.b * torch.ones_like(x), torch.tanh(x @ self.a)[:, :1]

    pair = Pair()
    x0 = torch.randn(4, 2, dtype=dtype, generator=torch.Generator().manual_seed(8)).requires_grad_(True)
    v0 = torch.randn(4, 1, dtype=dtype, generator=torch.Generator().manual_seed(9)).requires_grad_(True)
    t = torch.linspace(2.0, 0.0, 6, dtype=dtype)
    settings = dict(rtol=1e-5, atol=1e-6, options=PER_SAMPLE)

    def grads(solver, **kwargs):
        xs, vs = solver(pair, (x0, v0), t, **settings, **kwargs)
        loss = xs.pow(2).sum() + (vs * torch.arange(6, dtype=dtype).reshape(6, 1, 1)).sum()
        return torch.autograd.grad(loss, (x0, v0, *pair.parameters()))

    reference = grads(odeint)
    replayed = grads(odeint_adjoint, gradient="checkpoint")
    assert close(replayed, reference, 1e-10 if dtype == torch.float64 else 2e-5)


def test_a_plain_function_with_adjoint_params():
    weight = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=torch.float64, requires_grad=True)
    y0 = torch.ones(3, 2, dtype=torch.float64)
    t = own_times(3, 5, seed=10)
    ys = odeint_adjoint(lambda s, y: y @ weight, y0, t, options=PER_SAMPLE, adjoint_params=(weight,),
                        gradient="checkpoint")
    (got,) = torch.autograd.grad(ys.sum(), weight)
    (reference,) = torch.autograd.grad(odeint(lambda s, y: y @ weight, y0, t, options=PER_SAMPLE).sum(), weight)
    assert torch.allclose(got, reference, rtol=1e-10, atol=1e-12)


def test_backward_costs_at_most_three_forwards_with_many_own_times():
    """64 samples, each with its own 20 irregular times in [0, 10]: the continuous adjoint must stop at
    each (at least 7 x 19 evaluations per sample with Dopri5); the replay costs about the forward."""
    field = Field(dtype=torch.float32, width=32)
    t = own_times(64, 20, span=10.0, seed=11, dtype=torch.float32)
    y0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(12))
    settings = dict(rtol=1e-4, atol=1e-5, options=PER_SAMPLE)
    replay = solve_adjoint(field, y0, t, gradient="checkpoint", **settings)
    field.calls = 0
    replay.ys.pow(2).sum().backward()
    assert replay.backward.n_calls == field.calls                       # batched calls, counted by the field
    forward, backward = replay.stats.nfe, replay.backward.nfe           # per sample
    assert bool((backward <= 3 * forward).all()), (backward / forward).max()
    assert replay.backward.n_calls <= 3 * replay.stats.n_calls
    continuous = solve_adjoint(field, y0, t, **settings)
    continuous.ys.pow(2).sum().backward()
    assert bool((continuous.backward.nfe >= 7 * 19).all())              # the bound the replay avoids
    assert bool((backward < continuous.backward.nfe).all())


def test_each_sample_replays_only_its_own_accepted_steps():
    field, t = Field(), own_times(6, 5, seed=13)
    y0 = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(14)) * 3
    run = solve_adjoint(field, y0, t, rtol=1e-6, atol=1e-7, options=PER_SAMPLE, gradient="checkpoint")
    run.ys.sum().backward()
    assert torch.equal(run.backward.n_steps, run.stats.n_accepted)
    assert torch.equal(run.backward.nfe, 7 * run.stats.n_accepted)      # Dopri5: 7 stages, no FSAL reuse
    assert int(run.backward.n_rejected.sum()) == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(gradient="backprop"), "gradient must be 'adjoint'"),
    (dict(gradient="checkpoint", options=None), "per_sample"),
    (dict(gradient="checkpoint", options={"per_sample": True, "max_step": 0.1}), "max_step"),
    (dict(gradient="checkpoint", method="rk4"), "adaptive"),
    (dict(gradient="checkpoint", adjoint_rtol=1e-3), "adjoint_rtol"),
    (dict(gradient="checkpoint", adjoint_options={"norm": "seminorm"}), "adjoint_options"),
])
def test_bad_settings_say_what_to_change(kwargs, message):
    settings = {"options": PER_SAMPLE, **kwargs}
    with pytest.raises(ValueError, match=message):
        odeint_adjoint(Field(), torch.zeros(2, 2, dtype=torch.float64), own_times(2, 3), **settings)


@pytest.mark.parametrize("method", ["dopri5", "rkf45"])
def test_a_batch_that_shares_its_steps(method):
    """Without per_sample the whole state is one sample: an image-like [2, 3, 4] state, decreasing times."""
    conv = torch.nn.Conv2d(2, 2, 3, padding=1).double()
    field = lambda t, y: torch.tanh(conv(y.unsqueeze(0))).squeeze(0) * torch.cos(t)  # noqa: E731
    y0 = torch.randn(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(15)).requires_grad_(True)
    t = torch.tensor([1.0, 0.4, -0.3, -1.0], dtype=torch.float64)
    weights = torch.randn(4, 2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(16))
    params = tuple(conv.parameters())
    run = solve_adjoint(field, y0, t, rtol=1e-6, atol=1e-7, method=method, adjoint_params=params, gradient="checkpoint")
    got = torch.autograd.grad((run.ys * weights).sum(), (y0, *params))
    tight = odeint(field, y0, t, rtol=1e-11, atol=1e-12, method=method)
    reference = torch.autograd.grad((tight * weights).sum(), (y0, *params))
    assert close(got, reference, 1e-4)                      # both near the true gradient
    assert isinstance(run.stats.nfe, int) and isinstance(run.backward.nfe, int)
    assert run.backward.n_steps == run.stats.n_accepted
    assert (run.ys - odeint(field, y0, t, rtol=1e-6, atol=1e-7, method=method)).abs().max() < 1e-5


def test_time_gradients_events_and_a_callable_norm_need_the_adjoint():
    t = own_times(2, 3).requires_grad_(True)
    with pytest.raises(ValueError, match="t.detach"):
        odeint_adjoint(Field(), torch.zeros(2, 2, dtype=torch.float64), t, options=PER_SAMPLE, gradient="checkpoint")
    with pytest.raises(ValueError, match="callable norm"):
        odeint_adjoint(Field(), torch.zeros(2, 2, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64),
                       options={"norm": lambda e: e.abs().max()}, gradient="checkpoint")
    with pytest.raises(ValueError, match="event_fn"):
        odeint_adjoint(Field(), torch.zeros(2, 2, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64),
                       options=PER_SAMPLE, gradient="checkpoint", event_fn=lambda t, y: y[..., 0])
