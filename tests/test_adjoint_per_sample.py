"""odeint_adjoint with each sample's own output times ``t [B, T]``: right gradients, and each
sample's reverse solve stops only at its own times."""
from __future__ import annotations

import pytest
import torch

from nodecourse import odeint, odeint_adjoint, solve_adjoint

B, T = 5, 6


class Field(torch.nn.Module):
    """An MLP field that also reads t ([B] per sample, [1] for one sample alone)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()

    def forward(self, t, y):
        time = torch.sin(t).reshape(-1, 1).expand(y.shape[0], 1)
        return self.net(torch.cat([y, time], dim=1))


def own_times(seed=0):
    g = torch.Generator().manual_seed(seed)
    times = torch.sort(torch.rand(B, T, generator=g, dtype=torch.float64) * 3, dim=1).values
    return times + torch.arange(T, dtype=torch.float64) * 1e-3


Y0 = torch.linspace(-1, 1, 2 * B, dtype=torch.float64).reshape(B, 2)
WEIGHTS = torch.randn(T, B, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
TIGHT = dict(rtol=1e-10, atol=1e-10, options={"per_sample": True})


def gradients(solver, field, times, **kwargs):
    y0 = Y0.clone().requires_grad_(True)
    times = times.clone().requires_grad_(True)
    ys = solver(field, y0, times, **kwargs)
    return torch.autograd.grad((ys * WEIGHTS).sum(), (y0, times, *field.parameters()))


@pytest.mark.parametrize("adjoint_options", [None, {"norm": "seminorm"}])
def test_gradients_match_backprop_through_the_per_sample_solve(adjoint_options):
    field, times = Field(), own_times()
    reference = gradients(odeint, field, times, **TIGHT)
    adjoint = gradients(odeint_adjoint, field, times, adjoint_options=adjoint_options, **TIGHT)
    for name, ref, got in zip(["y0", "t", "weight", "bias", "weight", "bias"], reference, adjoint):
        # t's gradient: the adjoint uses f(t, y) itself, backprop the derivative of the dense output
        tol = 1e-6 if name == "t" else 1e-7
        assert torch.allclose(got, ref, rtol=0, atol=tol * (1 + ref.abs().max())), name


def test_gradients_match_the_union_of_times_adjoint():
    """An independent route: one shared-step adjoint solve on the sorted union of all times, gathered."""
    field, times = Field(), own_times(seed=2)
    own = gradients(odeint_adjoint, field, times, **TIGHT)[2:]
    starts = times[:, :1]
    # a field without t, so that each sample may start at its own time on one shared grid: shift each row to 0
    plain = Field()
    plain.forward = lambda t, y: plain.net(torch.cat([y, torch.zeros_like(y[:, :1])], dim=1))
    shifted = times - starts
    mine = gradients(odeint_adjoint, plain, shifted, **TIGHT)[2:]
    union, index = torch.unique(shifted.reshape(-1), sorted=True, return_inverse=True)
    params = tuple(plain.parameters())
    ys = odeint_adjoint(plain, Y0, union, rtol=1e-10, atol=1e-10, adjoint_params=params)  # [U, B, 2]
    gathered = ys[index.reshape(B, T).t(), torch.arange(B)]                               # [T, B, 2]
    reference = torch.autograd.grad((gathered * WEIGHTS).sum(), params)
    for ref, got in zip(reference, mine):
        assert torch.allclose(got, ref, rtol=0, atol=1e-7 * (1 + ref.abs().max()))
    assert all(g.shape == p.shape for g, p in zip(own, field.parameters()))


def test_each_samples_reverse_solve_depends_only_on_its_own_times():
    """Moving the other samples' times leaves sample 0's backward evaluations unchanged: its reverse
    solve stops at its own times only."""
    field = Field()
    counts = []
    for seed in (3, 4):
        times = own_times(seed)
        times[0] = own_times(0)[0]
        result = solve_adjoint(field, Y0, times, rtol=1e-6, atol=1e-6, options={"per_sample": True})
        (result.ys * WEIGHTS).sum().backward()
        counts.append(result.backward.nfe)
    assert counts[0][0] == counts[1][0]
    assert not torch.equal(counts[0][1:], counts[1][1:])


def test_backward_costs_far_less_than_the_union_trick():
    field = Field()
    times = own_times(5)
    per_sample = solve_adjoint(field, Y0, times, rtol=1e-5, atol=1e-5, options={"per_sample": True},
                               adjoint_options={"norm": "seminorm"})
    (per_sample.ys * WEIGHTS).sum().backward()
    union = torch.unique(times.reshape(-1), sorted=True)  # every sample started at the earliest time
    shared = solve_adjoint(field, Y0, union, rtol=1e-5, atol=1e-5,
                           adjoint_options={"norm": "seminorm"})
    shared.ys.pow(2).sum().backward()
    assert per_sample.backward.n_calls < shared.backward.n_calls / 2


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(), ValueError, "per_sample"),
    (dict(options={"per_sample": True}, method="rk4"), ValueError, "adaptive"),
    (dict(options={"per_sample": True}, adjoint_params=(torch.zeros(2, requires_grad=True),)), ValueError,
     "not parameters of func"),
    (dict(options={"per_sample": True}, adjoint_options={"norm": lambda *a: 0.0}), ValueError, "seminorm"),
])
def test_bad_per_sample_adjoints_are_explained(kwargs, error, match):
    with pytest.raises(error, match=match):
        odeint_adjoint(Field(), Y0, own_times(), **kwargs)


def test_a_plain_function_needs_a_module():
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match="nn.Module"):
        odeint_adjoint(lambda t, y: y * p, Y0, own_times(), options={"per_sample": True}, adjoint_params=(p,))


class PairField(torch.nn.Module):
    """A tuple state (y [B, 2], z [B, 1]) whose field reads t: z feeds y's network, y drives z."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
        self.rate = torch.nn.Parameter(torch.tensor(-0.3, dtype=torch.float64))

    def forward(self, t, state):
        y, z = state
        time = torch.cos(t).reshape(-1, 1).expand(y.shape[0], 1)
        return self.net(torch.cat([y, z, time], dim=1)), self.rate * z * y[:, :1]


# (method, reverse tolerance, allowed gradient error): the second-order adaptive_heun at a looser tolerance,
# which still tells a wrong quadrature weight (tens of percent) from its own error (about 1e-5)
QUADRATURE_METHODS = [("dopri5", 1e-10, 1e-7), ("bosh3", 1e-10, 1e-7), ("rkf45", 1e-10, 1e-7),
                      ("adaptive_heun", 1e-7, 1e-4)]


@pytest.mark.parametrize("adjoint_method,tol,allowed", QUADRATURE_METHODS, ids=[m for m, *_ in QUADRATURE_METHODS])
@pytest.mark.parametrize("backwards", [False, True], ids=["forward", "backward"])
def test_seminorm_quadrature_gives_backprops_gradient(adjoint_method, tol, allowed, backwards):
    """With the seminorm the parameter gradient is the reverse solve's own quadrature over its accepted
    steps (the step passing an interval's end by the dense output's weights): backprop's gradient, for a
    tuple state, time running either way, FSAL methods and methods whose interpolant needs f(t1, y1)."""
    field, times = PairField(), own_times(seed=7)
    if backwards:
        times = -times
    z0 = torch.linspace(0.5, 1.0, B, dtype=torch.float64).reshape(B, 1)
    weights = torch.randn(T, B, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def grads(solver, **kwargs):
        ys = solver(field, (Y0, z0), times, **kwargs)
        loss = (ys[0] * WEIGHTS).sum() + (ys[1] * weights).sum()
        return torch.autograd.grad(loss, tuple(field.parameters()))

    reference = grads(odeint, **TIGHT)
    quadrature = grads(odeint_adjoint, adjoint_method=adjoint_method, adjoint_options={"norm": "seminorm"},
                       adjoint_rtol=tol, adjoint_atol=tol, **TIGHT)
    for ref, got in zip(reference, quadrature):
        assert torch.allclose(got, ref, rtol=0, atol=allowed * (1 + ref.abs().max()))


@pytest.mark.parametrize("adjoint_options", [None, {"norm": "seminorm"}])
def test_backward_statistics_count_every_call_of_the_field(adjoint_options):
    """The reverse solve's statistics include the seminorm quadrature's evaluations: the batched calls
    reported are the calls the field saw during backward()."""
    field, calls = Field(), []
    field.register_forward_pre_hook(lambda module, args: calls.append(args[1].shape[0]))
    result = solve_adjoint(field, Y0, own_times(seed=8), rtol=1e-6, atol=1e-6, options={"per_sample": True},
                           adjoint_options=adjoint_options)
    before = len(calls)
    (result.ys * WEIGHTS).sum().backward()
    backward_calls = calls[before:]  # t does not require grad: no evaluations for its gradient
    assert result.backward.n_calls == len(backward_calls)
    if adjoint_options:  # batched calls (the default norm's are vmapped, one sample each): rows = evaluations
        assert int(result.backward.nfe.sum()) <= sum(backward_calls)
