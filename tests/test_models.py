"""Property tests of the models: each against a hand-written reference computation."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nodecourse.models import MLP, NeuralODE, ODEBlock, ODEFunc, ResNet

DT = torch.float64


def _mlp(sizes, seed=0, activation=nn.Tanh):
    torch.manual_seed(seed)
    return MLP(sizes, activation).to(DT)


# ----------------------------------------------------------------------------- MLP


def test_mlp_layers_and_activations_alternate():
    mlp = MLP([3, 5, 7, 2])
    kinds = [type(m) for m in mlp]
    assert kinds == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 5), (5, 7), (7, 2)]
    assert (mlp.in_features, mlp.out_features) == (3, 2)


def test_mlp_forward_equals_explicit_composition():
    mlp = _mlp([3, 4, 2], activation=nn.ReLU)
    x = torch.randn(6, 3, dtype=DT)
    l1, l2 = mlp[0], mlp[2]
    expected = torch.relu(x @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias
    torch.testing.assert_close(mlp(x), expected)


def test_mlp_accepts_activation_instance_and_copies_it():
    mlp = MLP([2, 3, 3, 1], activation=nn.LeakyReLU(0.2))
    acts = [m for m in mlp if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 2 and acts[0] is not acts[1] and acts[0].negative_slope == 0.2


def test_mlp_single_layer_has_no_activation():
    assert [type(m) for m in MLP([4, 2])] == [nn.Linear]


@pytest.mark.parametrize(
    "sizes, match",
    [([3], "at least an input and an output"), ([3, 0, 2], "positive integer"), ([3, 2.5], "positive integer")],
)
def test_mlp_rejects_bad_sizes(sizes, match):
    with pytest.raises(ValueError, match=match):
        MLP(sizes)


@pytest.mark.parametrize("activation", [torch.tanh, "tanh"])
def test_mlp_rejects_non_module_activation(activation):
    with pytest.raises(TypeError, match="nn.Module class"):
        MLP([2, 3, 1], activation=activation)


# ----------------------------------------------------------------------------- ODEFunc


def test_odefunc_without_time_is_the_net_and_counts_calls():
    net = _mlp([2, 5, 2])
    func = ODEFunc(net)
    y = torch.randn(4, 2, dtype=DT)
    torch.testing.assert_close(func(torch.tensor(0.3), y), net(y))
    func(0.0, y)
    assert func.nfe == 2


def test_odefunc_concatenates_time_scalar_and_per_sample():
    torch.manual_seed(1)
    net = nn.Linear(3, 2).to(DT)  # input [y1, y2, t]
    func = ODEFunc(net, time_dependent=True)
    y = torch.randn(5, 2, dtype=DT)
    w, b = net.weight, net.bias

    expected = y @ w[:, :2].T + 0.7 * w[:, 2] + b
    torch.testing.assert_close(func(torch.tensor(0.7, dtype=DT), y), expected)
    torch.testing.assert_close(func(0.7, y), expected)  # a Python float works too

    t = torch.linspace(0, 1, 5, dtype=DT)  # one time per sample
    expected = y @ w[:, :2].T + t[:, None] * w[:, 2] + b
    torch.testing.assert_close(func(t, y), expected)


def test_odefunc_time_for_unbatched_state():
    net = nn.Linear(3, 2).to(DT)
    func = ODEFunc(net, time_dependent=True)
    y = torch.randn(2, dtype=DT)
    torch.testing.assert_close(func(torch.tensor(2.0), y), net(torch.cat([y, torch.tensor([2.0], dtype=DT)])))


def test_odefunc_rejects_mismatched_time_and_non_module_net():
    func = ODEFunc(nn.Linear(3, 2), time_dependent=True)
    with pytest.raises(ValueError, match="one time per sample"):
        func(torch.zeros(3), torch.zeros(5, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        ODEFunc(lambda y: y)


# ----------------------------------------------------------------------------- ODEBlock


def _euler_loop(func, y, h, steps, t0=0.0):
    states = [y]
    for k in range(steps):
        y = y + h * func(torch.tensor(t0 + k * h, dtype=y.dtype), y)
        states.append(y)
    return torch.stack(states)


def test_odeblock_euler_equals_hand_written_loop():
    func = ODEFunc(_mlp([3, 8, 2]), time_dependent=True)
    block = ODEBlock(func, t1=1.0, method="euler", options={"step_size": 0.1})
    x = torch.randn(4, 2, dtype=DT)
    expected = _euler_loop(func, x, 0.1, 10)
    torch.testing.assert_close(block(x), expected[-1], rtol=1e-12, atol=1e-12)
    t = torch.linspace(0.0, 1.0, 11, dtype=DT)
    torch.testing.assert_close(block.trajectory(x, t), expected, rtol=1e-12, atol=1e-12)


def test_odeblock_trajectory_default_grid_ends_at_forward_output():
    block = ODEBlock(ODEFunc(_mlp([2, 8, 2])), t1=0.5, rtol=1e-9, atol=1e-9)
    x = torch.randn(3, 2, dtype=DT)
    traj = block.trajectory(x, steps=7)
    assert traj.shape == (7, 3, 2)
    torch.testing.assert_close(traj[0], x)
    torch.testing.assert_close(traj[-1], block(x), rtol=1e-7, atol=1e-7)


def test_odeblock_solves_linear_ode_exactly():
    # dy/dt = A y has the solution exp(A t) y0: an independent reference for the adaptive path.
    lin = nn.Linear(2, 2, bias=False).to(DT)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 1.0], [-1.0, -0.1]], dtype=DT))
    block = ODEBlock(ODEFunc(lin), t1=2.0, method="dopri5", rtol=1e-10, atol=1e-10)
    x = torch.randn(5, 2, dtype=DT)
    expected = x @ torch.linalg.matrix_exp(2.0 * lin.weight).T
    torch.testing.assert_close(block(x), expected, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("adjoint", [False, True, "checkpoint"])
def test_odeblock_gradients_match_finite_differences(adjoint):
    torch.manual_seed(3)
    func = ODEFunc(_mlp([3, 4, 2], seed=3), time_dependent=True)
    block = ODEBlock(func, t1=1.0, method="dopri5", rtol=1e-10, atol=1e-10, adjoint=adjoint)
    x = torch.randn(3, 2, dtype=DT, requires_grad=True)
    weights = torch.randn(3, 2, dtype=DT)

    def loss() -> torch.Tensor:
        return (block(x) * weights).sum()

    params = [x, *func.parameters()]
    grads = torch.autograd.grad(loss(), params)
    eps = 1e-6
    with torch.no_grad():
        for p, g in zip(params, grads):
            flat, gflat = p.view(-1), g.reshape(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + eps
                up = loss().item()
                flat[i] = old - eps
                down = loss().item()
                flat[i] = old
                assert abs((up - down) / (2 * eps) - gflat[i].item()) < 1e-6 + 1e-5 * abs(gflat[i].item())


def test_odeblock_nfe_counters_forward_and_backward():
    func = ODEFunc(_mlp([2, 8, 2]))
    x = torch.randn(4, 2, dtype=DT, requires_grad=True)

    euler = ODEBlock(func, t1=1.0, method="euler", options={"step_size": 0.1})
    before = func.nfe
    euler(x).sum().backward()
    assert euler.nfe_forward == 10 == func.nfe - before  # one evaluation per Euler step
    assert euler.nfe_backward == 0  # backprop through the solver replays the graph

    adj = ODEBlock(func, t1=1.0, method="dopri5", adjoint=True)
    out = adj(x)
    assert adj.nfe_forward > 0 and adj.nfe_backward == 0
    before = func.nfe
    out.sum().backward(retain_graph=True)
    assert adj.nfe_backward > 0
    assert adj.nfe_backward == func.nfe - before  # counted independently by the ODEFunc
    first = adj.nfe_backward
    out.sum().backward()  # a second backward is counted afresh, not added
    assert adj.nfe_backward == first
    with torch.no_grad():
        adj(x)
    assert adj.nfe_backward == 0


def test_odeblock_rejects_bad_arguments():
    func = ODEFunc(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="t1 must be a finite positive"):
        ODEBlock(func, t1=0.0)
    with pytest.raises(TypeError, match="nn.Module"):
        ODEBlock(lambda t, y: y)
    with pytest.raises(TypeError, match="options must be a dict"):
        ODEBlock(func, options=0.1)


# ----------------------------------------------------------------------------- ResNet


def test_resnet_equals_explicit_residual_loop():
    mlp = _mlp([2, 25, 2])
    x = torch.randn(6, 2, dtype=DT)
    expected = x
    for _ in range(3):
        expected = expected + mlp(expected)
    net = ResNet(mlp, depth=3)
    torch.testing.assert_close(net(x), expected)
    traj = net.trajectory(x)
    assert traj.shape == (4, 6, 2)
    torch.testing.assert_close(traj[-1], expected)


def test_resnet_regression_shape_of_the_course():
    net = ResNet(MLP([1, 25, 1]), depth=3)
    assert net(torch.linspace(-2, 2, 10).reshape(10, 1)).shape == (10, 1)


@pytest.mark.parametrize("depth, h", [(4, 1.0), (8, 0.25)])
def test_shared_resnet_is_an_euler_solve(depth, h):
    mlp = _mlp([2, 16, 2])
    x = torch.randn(5, 2, dtype=DT)
    resnet = ResNet(mlp, depth=depth, step_size=h)
    block = ODEBlock(ODEFunc(mlp), t1=depth * h, method="euler", options={"step_size": h})
    torch.testing.assert_close(resnet(x), block(x), rtol=1e-12, atol=1e-12)


def test_unshared_resnet_has_one_copy_per_layer():
    mlp = _mlp([2, 6, 2])
    shared, unshared = ResNet(mlp, depth=3), ResNet(mlp, depth=3, shared=False)
    n = sum(p.numel() for p in mlp.parameters())
    assert sum(p.numel() for p in shared.parameters()) == n
    assert sum(p.numel() for p in unshared.parameters()) == 3 * n
    x = torch.randn(4, 2, dtype=DT)
    torch.testing.assert_close(unshared(x), shared(x))  # the copies start from the same weights
    with torch.no_grad():
        unshared.block(1)[2].bias.add_(1.0)  # change the middle layer only
    expected = x + unshared.block(0)(x)
    expected = expected + unshared.block(1)(expected)
    expected = expected + unshared.block(2)(expected)
    torch.testing.assert_close(unshared(x), expected)
    assert not torch.allclose(unshared(x), shared(x))


def test_resnet_rejects_bad_arguments():
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        ResNet(MLP([2, 2]), depth=0)
    with pytest.raises(ValueError, match="step_size must be a finite positive"):
        ResNet(MLP([2, 2]), depth=2, step_size=-0.1)
    with pytest.raises(TypeError, match="nn.Module"):
        ResNet(lambda x: x, depth=2)


# ----------------------------------------------------------------------------- NeuralODE


def test_neural_ode_euler_equals_hand_written_loop():
    torch.manual_seed(0)
    model = NeuralODE(input_size=5, hidden_size=8, num_steps=4, step_size=0.25, output_size=3).to(DT)
    x = torch.randn(7, 5, dtype=DT)
    f = model.dynamics.net
    h = model.input_proj(x)
    states = [h]
    for _ in range(4):
        h = h + 0.25 * f(h)
        states.append(h)
    expected = model.output_proj(h)
    out = model(x)
    assert out.shape == (7, 3) and model.output_size == 3
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.trajectory(x), torch.stack(states), rtol=1e-12, atol=1e-12)
    assert model.block.nfe_forward == 4


def test_neural_ode_default_output_is_hidden_size():
    model = NeuralODE(input_size=3, hidden_size=6)
    assert model.output_size == 6
    assert model(torch.randn(2, 3)).shape == (2, 6)
    assert model.block.nfe_forward == 10  # num_steps Euler steps with the shared dynamics


def test_neural_ode_adaptive_method_integrates_the_same_interval():
    torch.manual_seed(0)
    adaptive = NeuralODE(3, 6, num_steps=10, step_size=0.1, output_size=2, method="dopri5", rtol=1e-10, atol=1e-10)
    fine = NeuralODE(3, 6, num_steps=200, step_size=0.005, output_size=2, method="rk4")
    fine.load_state_dict(adaptive.state_dict())
    adaptive, fine = adaptive.to(DT), fine.to(DT)
    x = torch.randn(4, 3, dtype=DT)
    torch.testing.assert_close(adaptive(x), fine(x), rtol=1e-8, atol=1e-8)


def test_neural_ode_time_dependent_and_adjoint_train_step():
    model = NeuralODE(3, 6, num_steps=3, step_size=0.2, output_size=1, time_dependent=True, adjoint=True)
    model(torch.randn(4, 3)).pow(2).mean().backward()
    assert model.block.nfe_backward > 0
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(input_size=0), ValueError, "input_size must be a positive integer"),
        (dict(input_size=3, hidden_size=-1), ValueError, "hidden_size must be a positive integer"),
        (dict(input_size=3, num_steps=0), ValueError, "num_steps must be a positive integer"),
        (dict(input_size=3, output_size=0), ValueError, "output_size must be a positive integer"),
        (dict(input_size=3, step_size=0.0), ValueError, "step_size must be a finite positive"),
        (dict(input_size=3, step_size="0.1"), TypeError, "step_size must be a number"),
        (dict(input_size=3, method="rk5"), ValueError, "unknown method 'rk5'.*dopri5"),
    ],
)
def test_neural_ode_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        NeuralODE(**kwargs)


def test_neural_ode_rejects_wrong_input_width():
    with pytest.raises(ValueError, match=r"shape \[batch, 4\]"):
        NeuralODE(4, 6)(torch.randn(2, 28, 28))


def test_time_dependent_block_in_per_sample_mode_matches_shared_mode():
    # In per-sample mode the solver passes one time per sample; the result must not change.
    func = ODEFunc(_mlp([3, 8, 2], seed=4), time_dependent=True)
    x = torch.randn(6, 2, dtype=DT)
    shared = ODEBlock(func, t1=1.5, rtol=1e-9, atol=1e-9)
    per_sample = ODEBlock(func, t1=1.5, rtol=1e-9, atol=1e-9, options={"per_sample": True})
    torch.testing.assert_close(per_sample(x), shared(x), rtol=1e-7, atol=1e-7)
