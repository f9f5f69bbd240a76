"""The adjoint method against backprop through the solver, finite differences and torchdiffeq,
and its memory against the step count."""
from __future__ import annotations

import pytest
import torch
import torchdiffeq
from torch import nn

from nodecourse import odeint, odeint_adjoint, solve
from nodecourse.benchmarking import saved_tensor_bytes


class Field(nn.Module):
    """A small time-dependent MLP vector field, float64."""

    def __init__(self, width: int = 16, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, 2)).double()

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)


def _loss(ys: torch.Tensor) -> torch.Tensor:
    """A loss that uses every output time, so the adjoint must jump at each one."""
    weights = torch.arange(1, len(ys) + 1, dtype=ys.dtype).reshape(-1, 1, 1)
    return (weights * ys ** 2).sum() + ys[..., 0].sum()


def _gradients(solver, field, y0, t, **kwargs):
    ys = solver(field, y0, t, **kwargs)
    return torch.autograd.grad(_loss(ys), (y0, t, *field.parameters()))


@pytest.fixture
def problem():
    field = Field()
    y0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    t = torch.tensor([0.0, 0.4, 1.1], dtype=torch.float64, requires_grad=True)
    return field, y0, t


def test_adjoint_matches_backprop(problem):
    field, y0, t = problem
    tight = dict(rtol=1e-10, atol=1e-12)
    reference = _gradients(odeint, field, y0, t, **tight)
    for options in (None, {"norm": "seminorm"}):
        adjoint = _gradients(odeint_adjoint, field, y0, t, adjoint_options=options, **tight)
        for r, a in zip(reference, adjoint):
            assert torch.allclose(r, a, rtol=1e-6, atol=1e-7)


def test_adjoint_matches_finite_differences(problem):
    field, y0, t = problem
    tight = dict(rtol=1e-11, atol=1e-12)
    grads = _gradients(odeint_adjoint, field, y0, t, **tight)
    eps = 1e-6

    def loss_at():
        with torch.no_grad():
            return _loss(odeint(field, y0, t, **tight)).item()

    tensors = (y0, t, *field.parameters())
    rng = torch.Generator().manual_seed(0)
    for tensor, grad in zip(tensors, grads):
        flat = tensor.data.view(-1)
        for i in torch.randint(len(flat), (3,), generator=rng).tolist():
            old = flat[i].item()
            flat[i] = old + eps
            up = loss_at()
            flat[i] = old - eps
            down = loss_at()
            flat[i] = old
            fd = (up - down) / (2 * eps)
            assert abs(fd - grad.view(-1)[i].item()) < 1e-5 * max(1.0, abs(fd)), (tensor.shape, i)


def test_adjoint_matches_torchdiffeq(problem):
    field, y0, t = problem
    ours = _gradients(odeint_adjoint, field, y0, t, rtol=1e-9, atol=1e-10)
    theirs = _gradients(torchdiffeq.odeint_adjoint, field, y0, t, rtol=1e-9, atol=1e-10)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_adjoint_backward_in_time_tuple_state_and_fixed_step():
    field = Field(seed=1)
    y0 = torch.randn(3, 2, dtype=torch.float64).requires_grad_(True)
    z0 = torch.randn(3, 2, dtype=torch.float64).requires_grad_(True)
    t = torch.tensor([1.0, 0.0], dtype=torch.float64)  # decreasing

    def pair(t, state):
        y, z = state
        return field(t, y), -z * y

    def grads(solver, **kw):
        ys, zs = solver(pair, (y0, z0), t, **kw)
        return torch.autograd.grad((ys[-1] ** 2).sum() + zs[-1].sum(), (y0, z0, *field.parameters()))

    params = tuple(field.parameters())
    reference = grads(odeint, rtol=1e-10, atol=1e-12)
    adjoint = grads(odeint_adjoint, rtol=1e-10, atol=1e-12, adjoint_params=params)
    for r, a in zip(reference, adjoint):
        assert torch.allclose(r, a, rtol=1e-6, atol=1e-8)
    # fixed-step rk4: the reverse solve is another rk4 solve, accurate to O(h^4)
    rk4 = dict(method="rk4", options={"step_size": 0.01})
    fixed = grads(odeint_adjoint, adjoint_params=params, **rk4)
    for r, a in zip(reference, fixed):
        assert torch.allclose(r, a, rtol=1e-6, atol=1e-8)


def test_seminorm_saves_backward_evaluations():
    torch.manual_seed(0)
    field = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 2)).double()
    counts = {}

    class Counted(nn.Module):
        def __init__(self):
            super().__init__()
            self.field, self.n = field, 0

        def forward(self, t, y):
            self.n += 1
            return self.field(y)

    y0 = torch.randn(32, 2, dtype=torch.float64)
    for name, options in (("full", None), ("seminorm", {"norm": "seminorm"})):
        f = Counted()
        ys = odeint_adjoint(f, y0, torch.tensor([0.0, 2.0]), rtol=1e-6, atol=1e-6, adjoint_options=options)
        before = f.n
        ys[-1].pow(2).sum().backward()
        counts[name] = f.n - before
    assert counts["seminorm"] < counts["full"]


def test_adjoint_memory_does_not_grow_with_steps():
    field = Field(width=32)
    y0 = torch.randn(16, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    memory = {}
    for n_steps in (10, 1000):
        opts = dict(method="rk4", options={"step_size": 1.0 / n_steps})
        memory["adjoint", n_steps] = saved_tensor_bytes(lambda: odeint_adjoint(field, y0, t, **opts))
        memory["backprop", n_steps] = saved_tensor_bytes(lambda: odeint(field, y0, t, **opts))
    assert memory["adjoint", 1000] == memory["adjoint", 10]
    assert memory["adjoint", 10] <= 2 * 2 * y0.numel() * 8 + 64  # just t and the two output states
    assert memory["backprop", 1000] > 50 * memory["backprop", 10]  # linear growth


def test_adjoint_errors():
    y0 = torch.ones(2, 2)
    t = torch.tensor([0.0, 1.0])
    with pytest.raises(TypeError, match="nn.Module"):
        odeint_adjoint(lambda t, y: -y, y0, t)
    with pytest.raises(ValueError, match="per_sample"):
        odeint_adjoint(Field().float(), y0, t, adjoint_options={"per_sample": True})
    with pytest.raises(ValueError, match="Unknown method"):
        odeint_adjoint(Field().float(), y0, t, adjoint_method="rk5")
    # a plain function with explicit (empty) parameters is fine
    ys = odeint_adjoint(lambda t, y: -y, y0.requires_grad_(True), t, adjoint_params=())
    (grad,) = torch.autograd.grad(ys[-1].sum(), y0)
    assert torch.allclose(grad, torch.full_like(grad, torch.exp(torch.tensor(-1.0)).item()), rtol=1e-5)


def test_adjoint_forward_equals_odeint(problem):
    field, y0, t = problem
    with torch.no_grad():
        assert torch.equal(odeint_adjoint(field, y0, t), odeint(field, y0, t))
    assert solve(field, y0, t).ys.shape == (3, 4, 2)


def test_tuple_field_with_a_constant_part_and_a_scalar_state():
    # the second part of the field is a constant zero and the third state is 0-d: both must work
    w = torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)
    c0 = torch.tensor([2.0, 3.0], dtype=torch.float64)
    s0 = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)

    def field(t, state):
        y, c, s = state
        return torch.tanh(y @ w) * s, torch.zeros_like(c), -s

    def grads(solver, **kw):
        ys, cs, ss = solver(field, (y0, c0, s0), torch.tensor([0.0, 1.0], dtype=torch.float64),
                            rtol=1e-10, atol=1e-12, **kw)
        return torch.autograd.grad(ys[-1].sum() + ss[-1], (w, y0, s0))

    reference = grads(odeint)
    adjoint = grads(odeint_adjoint, adjoint_params=(w,))
    for r, a in zip(reference, adjoint):
        assert torch.allclose(r, a, rtol=1e-6, atol=1e-8)


def test_solve_adjoint_reports_forward_and_backward_statistics():
    """The forward stats are those of the same solve; the backward nfe is what a counting field saw."""
    from nodecourse import solve, solve_adjoint

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2).double()
            self.calls = 0

        def forward(self, t, y):
            self.calls += 1
            return torch.tanh(self.lin(y))

    field = Counting()
    y0 = torch.tensor([[1.0, -0.5], [0.3, 0.2]], dtype=torch.float64)
    t = torch.linspace(0, 1.5, 5, dtype=torch.float64)
    result = solve_adjoint(field, y0, t, rtol=1e-7, atol=1e-9)
    assert result.backward is None
    plain = solve(field, y0, t, rtol=1e-7, atol=1e-9)
    assert result.stats.total() == plain.stats.total()
    assert torch.equal(result.ys, plain.ys)
    field.calls = 0
    result.ys[1:].pow(2).sum().backward()
    assert result.backward.nfe == field.calls > 0
    assert result.backward.n_accepted + result.backward.n_rejected == result.backward.n_steps


def test_adjoint_refuses_per_sample_times_with_advice():
    field = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="per_sample"):
        odeint_adjoint(lambda t, y: field(y), torch.zeros(3, 2), torch.rand(3, 4).cumsum(1),
                       adjoint_params=tuple(field.parameters()))


@pytest.mark.parametrize("seminorm", [False, True])
def test_the_reverse_norm_sits_on_grad_fn_as_in_torchdiffeq(seminorm):
    """ys.grad_fn.adjoint_options["norm"] is the reverse solve's norm in torchdiffeq's layout
    (t, y, a, *param_grads); replacing it there changes the norm the backward pass uses."""
    weight = torch.tensor([0.3, -0.2], requires_grad=True)
    y0 = torch.tensor([1.0, 2.0])
    options = {"norm": "seminorm"} if seminorm else None
    ys = odeint_adjoint(lambda t, y: -y * weight, y0, torch.tensor([0.0, 1.0]), adjoint_params=(weight,),
                        adjoint_options=options)
    default = ys.grad_fn.adjoint_options["norm"]
    parts = (torch.tensor(0.0), torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.0]), torch.tensor([10.0, 10.0]))
    rms_y = (12.5) ** 0.5
    assert float(default(parts)) == pytest.approx(rms_y if seminorm else 10.0)
    seen = []

    def spy(parts):
        seen.append(tuple(p.shape for p in parts))
        return default(parts)

    ys.grad_fn.adjoint_options["norm"] = spy
    ys.sum().backward()
    assert seen and seen[0] == ((), (2,), (2,), (2,))


def test_tuple_state_norm_layouts_follow_torchdiffeq():
    """A tuple state's outputs are views of one flat solve output; the default norm on that output's
    grad_fn takes y and a flattened, while a user's own adjoint norm gets the parts one by one."""
    weight = torch.tensor(0.5, requires_grad=True)
    y0 = (torch.tensor(1.0), torch.tensor([[0.5, 0.5], [0.1, 0.1]]))
    t = torch.tensor([0.0, 1.0])

    def field(t, state):
        return tuple(-weight * s for s in state)

    xs = odeint_adjoint(field, y0, t, adjoint_params=(weight,))
    node = xs[0].grad_fn.next_functions[0][0].next_functions[0][0]
    default = node.adjoint_options["norm"]
    flat_shapes = []

    def spy(parts):
        flat_shapes.append(tuple(p.shape for p in parts))
        return default(parts)

    node.adjoint_options["norm"] = spy
    xs[0].sum().backward()
    assert flat_shapes[0] == ((), (5,), (5,), ())

    part_shapes = []

    def own_norm(parts):
        part_shapes.append(tuple(p.shape for p in parts))
        return max(p.abs().max() for p in parts)

    xs = odeint_adjoint(field, y0, t, adjoint_params=(weight,), adjoint_options={"norm": own_norm})
    (xs[0].sum() + xs[1].sum()).backward()
    assert part_shapes[0] == ((), (), (2, 2), (), (2, 2), ())
