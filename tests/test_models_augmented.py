"""The augmented models: shapes, gradients against finite differences, and the property that defines
each one (zero augmentation that is never used is the plain model; a learned lift of [I; 0] is zero
augmentation; a second-order field's position derivative is its velocity; exact reflections)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from nodecourse.models import MLP, ODEFunc
from nodecourse.models.augmented import (AugmentedNODE, InputLayerAugmentedNODE, PlainNODE, SecondOrderField,
                                         SecondOrderNODE, augment)

DT = torch.float64
RK4 = dict(method="rk4", options={"step_size": 0.25})
TIGHT = dict(method="dopri5", rtol=1e-10, atol=1e-10)


def _models(dim: int, out_dim: int | None, **kwargs):
    """One instance of every model family with the same input width and readout."""
    torch.manual_seed(0)
    return {
        "plain": PlainNODE(dim, 8, out_dim, **kwargs),
        "augmented": AugmentedNODE(dim, 2, 8, out_dim, **kwargs),
        "input_layer": InputLayerAugmentedNODE(dim, 2, 8, out_dim, **kwargs),
        "second_order": SecondOrderNODE(dim, 8, out_dim, **kwargs),
    }


# ----------------------------------------------------------------------------- augment


def test_augment_appends_zeros_on_the_inputs_device_and_dtype():
    x = torch.arange(6, dtype=DT).reshape(3, 2)
    z = augment(x, 3)
    assert z.shape == (3, 5) and z.dtype == DT and z.device == x.device
    assert torch.equal(z[:, :2], x) and torch.equal(z[:, 2:], torch.zeros(3, 3, dtype=DT))
    assert torch.equal(augment(x, 0), x)
    assert augment(torch.ones(4, 5, 1), 2).shape == (4, 5, 3)       # any leading shape
    assert torch.equal(augment(torch.tensor([1.0, 2.0]), 1), torch.tensor([1.0, 2.0, 0.0]))


def test_augment_passes_gradients_to_the_input():
    x = torch.randn(4, 2, dtype=DT, requires_grad=True)
    weights = torch.randn(4, 5, dtype=DT)
    (augment(x, 3) * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights[:, :2])


@pytest.mark.parametrize("args, exc, match", [
    (([1.0, 2.0], 1), TypeError, "needs a tensor"),
    ((torch.tensor(1.0), 1), ValueError, "0-d tensor"),
    ((torch.ones(2, 1), -1), ValueError, "aug_size must be an integer >= 0"),
    ((torch.ones(2, 1), 1.5), ValueError, "aug_size must be an integer >= 0"),
])
def test_augment_rejects_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        augment(*args)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("dim, out_dim", [(1, None), (2, None), (2, 1), (3, 4)])
def test_every_model_maps_batches_to_the_right_shape(dim, out_dim):
    x = torch.randn(7, dim)
    state = {"plain": dim, "augmented": dim + 2, "input_layer": dim + 2, "second_order": 2 * dim}
    for name, model in _models(dim, out_dim).items():
        out = model(x)
        assert out.shape == (7, dim if out_dim is None else out_dim), name
        assert model.state_size == state[name]
        assert model.trajectory(x, steps=11).shape == (11, 7, state[name])
        assert model.nfe_forward == model.block.nfe_forward > 0


def test_time_dependent_dynamics_take_one_more_input():
    model = AugmentedNODE(2, 1, 6, time_dependent=True)
    assert model.dynamics.net[0].in_features == 4 and model.dynamics.time_dependent
    assert SecondOrderNODE(2, 6, time_dependent=True).dynamics.net[0].in_features == 5
    assert model(torch.randn(3, 2)).shape == (3, 2)


def test_hidden_takes_a_list_of_widths():
    model = AugmentedNODE(2, 1, [5, 7])
    widths = [m.out_features for m in model.dynamics.net if isinstance(m, nn.Linear)]
    assert widths == [5, 7, 3]


def test_readout_sees_the_whole_final_state():
    model = AugmentedNODE(2, 3, 8, output_size=2)
    assert model.readout.in_features == 5 and model.readout.out_features == 2
    assert PlainNODE(2, 8).readout is None


def test_fixed_step_nfe_is_stages_times_steps():
    for name, model in _models(2, 1, **RK4).items():
        model(torch.randn(5, 2))
        assert model.nfe_forward == 16, name   # rk4: 4 stages x 4 steps of 0.25 on [0, 1]


# ----------------------------------------------------------------------------- defining properties


def _unused_extra_dimensions(model: AugmentedNODE, plain: PlainNODE) -> None:
    """Give ``model`` dynamics that ignore its extra inputs, never write its extra outputs, and act on
    the first coordinates like ``plain``'s dynamics."""
    d = plain.input_size
    first, last = model.dynamics.net[0], model.dynamics.net[-1]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        first.weight[:, :d] = plain.dynamics.net[0].weight
        first.bias.copy_(plain.dynamics.net[0].bias)
        last.weight[:d] = plain.dynamics.net[-1].weight
        last.bias[:d] = plain.dynamics.net[-1].bias
        if model.readout is not None:
            model.readout.weight[:, :d] = plain.readout.weight
            model.readout.bias.copy_(plain.readout.bias)


@pytest.mark.parametrize("out_dim", [None, 3])
def test_zero_augmentation_that_is_never_used_is_the_plain_model(out_dim):
    torch.manual_seed(1)
    plain = PlainNODE(2, 8, out_dim, **RK4).to(DT)
    model = AugmentedNODE(2, 3, 8, out_dim, **RK4).to(DT)
    _unused_extra_dimensions(model, plain)
    x = torch.randn(6, 2, dtype=DT)
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=1e-14)
    path = model.trajectory(x, steps=9)
    assert torch.equal(path[..., 2:], torch.zeros_like(path[..., 2:]))   # the extra dims stay exactly 0
    torch.testing.assert_close(path[..., :2], plain.trajectory(x, steps=9), rtol=0, atol=1e-14)


def test_zero_augmentation_never_used_is_the_plain_model_with_an_adaptive_solver_too():
    # The adaptive solver's error norm averages over all coordinates, so the step sizes differ;
    # both solves are accurate, so they agree to the tolerance.
    torch.manual_seed(2)
    plain = PlainNODE(2, 8, **TIGHT).to(DT)
    model = AugmentedNODE(2, 2, 8, **TIGHT).to(DT)
    _unused_extra_dimensions(model, plain)
    x = torch.randn(5, 2, dtype=DT)
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=1e-8)


def test_aug_dim_zero_is_the_plain_model():
    torch.manual_seed(3)
    plain, zero = PlainNODE(3, [6, 6], 2), AugmentedNODE(3, 0, [6, 6], 2)
    zero.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3)
    torch.testing.assert_close(zero(x), plain(x))


def test_an_input_layer_of_identity_and_zeros_is_zero_augmentation():
    torch.manual_seed(4)
    zero = AugmentedNODE(2, 2, 8, output_size=1, **RK4).to(DT)
    learned = InputLayerAugmentedNODE(2, 2, 8, output_size=1, **RK4).to(DT)
    learned.load_state_dict({**zero.state_dict(), "input_layer.weight": torch.eye(4, 2, dtype=DT),
                             "input_layer.bias": torch.zeros(4, dtype=DT)})
    x = torch.randn(6, 2, dtype=DT)
    torch.testing.assert_close(learned(x), zero(x), rtol=0, atol=1e-14)
    # and a different input layer gives a different model: the lift is learned
    with torch.no_grad():
        learned.input_layer.weight[2:] = 1.0
    assert not torch.allclose(learned(x), zero(x))


def test_second_order_position_derivative_is_the_velocity():
    torch.manual_seed(5)
    model = SecondOrderNODE(3, 10).to(DT)
    z = torch.randn(8, 6, dtype=DT)
    dz = model.dynamics(torch.tensor(0.3, dtype=DT), z)
    assert torch.equal(dz[:, :3], z[:, 3:])
    torch.testing.assert_close(dz[:, 3:], model.dynamics.net(z))
    assert model.dynamics.nfe == 1
    x = torch.randn(8, 3, dtype=DT)
    assert torch.equal(model.trajectory(x, steps=5)[0], torch.cat([x, torch.zeros_like(x)], dim=1))  # v(0) = 0


def test_second_order_field_with_linear_acceleration_is_the_harmonic_oscillator():
    # x'' = -w^2 x, v(0) = 0  =>  x(t) = x0 cos(w t), v(t) = -w x0 sin(w t)
    w = 1.7
    net = nn.Linear(2, 1, bias=False).to(DT)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[-w**2, 0.0]], dtype=DT))
    field = SecondOrderField(net, input_size=1)
    model = SecondOrderNODE(1, 4, **TIGHT).to(DT)
    model.block.func = field
    x = torch.linspace(-2, 2, 7, dtype=DT).unsqueeze(1)
    t = torch.linspace(0, 1, 5, dtype=DT)
    path = model.trajectory(x, steps=5)
    torch.testing.assert_close(path[..., :1], x * torch.cos(w * t)[:, None, None], rtol=0, atol=1e-8)
    torch.testing.assert_close(path[..., 1:], -w * x * torch.sin(w * t)[:, None, None], rtol=0, atol=1e-8)


def test_the_reflection_is_exact_for_augmented_and_second_order_models_with_linear_fields():
    """What a plain 1-D model cannot do: x -> -x, by a half turn in the (x, a) plane or by x'' = -pi^2 x."""
    x = torch.linspace(-1, 1, 9, dtype=DT).unsqueeze(1)
    anode = AugmentedNODE(1, 1, 2, activation=nn.Identity, **TIGHT).to(DT)
    second = SecondOrderNODE(1, 1, activation=nn.Identity, **TIGHT).to(DT)
    with torch.no_grad():
        for p in (*anode.parameters(), *second.parameters()):
            p.zero_()
        anode.dynamics.net[0].weight.copy_(torch.eye(2, dtype=DT))
        anode.dynamics.net[2].weight.copy_(math.pi * torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=DT))
        second.dynamics.net[0].weight[0, 0] = 1.0
        second.dynamics.net[2].weight[0, 0] = -math.pi**2
        torch.testing.assert_close(anode(x), -x, rtol=0, atol=1e-8)
        torch.testing.assert_close(second(x), -x, rtol=0, atol=1e-8)


def test_a_plain_one_dimensional_model_preserves_order():
    torch.manual_seed(6)
    model = PlainNODE(1, 16).to(DT)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)                       # a strong, wiggly field
        out = model(torch.linspace(-3, 3, 200, dtype=DT).unsqueeze(1)).squeeze(1)
    assert (out[1:] > out[:-1]).all()


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ["plain", "augmented", "input_layer", "second_order"])
@pytest.mark.parametrize("out_dim", [None, 2])
def test_gradients_match_finite_differences(name, out_dim):
    model = _models(2, out_dim, method="rk4", options={"step_size": 0.5})[name].to(DT)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in model.named_parameters()]
    x = torch.randn(3, 2, dtype=DT, requires_grad=True)

    def f(x, *ps):
        return functional_call(model, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("setting", [True, "checkpoint"])
def test_adjoint_gradients_equal_backprop(setting):
    torch.manual_seed(7)
    backprop = InputLayerAugmentedNODE(2, 1, 6, output_size=1, **TIGHT).to(DT)
    adjoint = InputLayerAugmentedNODE(2, 1, 6, output_size=1, adjoint=setting, **TIGHT).to(DT)
    adjoint.load_state_dict(backprop.state_dict())
    x = torch.randn(5, 2, dtype=DT)
    grads = []
    for model in (backprop, adjoint):
        loss = model(x).pow(2).sum()
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    for g_bp, g_adj in zip(*grads):
        torch.testing.assert_close(g_adj, g_bp, rtol=1e-6, atol=1e-8)
    assert adjoint.nfe_backward > 0 and backprop.nfe_backward == 0   # the reverse solve (or the replay) is counted


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("build, exc, match", [
    (lambda: AugmentedNODE(0, 1), ValueError, "input_size must be a positive integer"),
    (lambda: AugmentedNODE(2, -1), ValueError, "aug_size must be an integer >= 0"),
    (lambda: InputLayerAugmentedNODE(2, 1.0), ValueError, "aug_size must be an integer >= 0"),
    (lambda: AugmentedNODE(2, 1, 0), ValueError, "every hidden width must be a positive integer"),
    (lambda: AugmentedNODE(2, 1, []), ValueError, "hidden must be a positive integer or a non-empty list"),
    (lambda: AugmentedNODE(2, 1, "32"), ValueError, "hidden must be a positive integer or a non-empty list"),
    (lambda: SecondOrderNODE(2, 8, output_size=0), ValueError, "output_size must be a positive integer"),
    (lambda: PlainNODE(2, 8, aug_size=1), TypeError, "PlainNODE has no augmentation"),
    (lambda: SecondOrderField(lambda z: z, 1), TypeError, "needs an nn.Module"),
    (lambda: SecondOrderField(nn.Linear(2, 1), 0), ValueError, "input_size must be a positive integer"),
    (lambda: AugmentedNODE(2, 1, t1=-1.0), ValueError, "t1 must be a finite positive"),
])
def test_constructors_reject_bad_arguments(build, exc, match):
    with pytest.raises(exc, match=match):
        build()


@pytest.mark.parametrize("x, exc, match", [
    (torch.randn(4, 3), ValueError, r"expects inputs of shape \[batch, 2\], got \(4, 3\)"),
    (torch.randn(4), ValueError, r"expects inputs of shape \[batch, 2\]"),
    ([[1.0, 2.0]], TypeError, "needs a tensor"),
])
def test_models_reject_inputs_of_the_wrong_shape(x, exc, match):
    for model in _models(2, None).values():
        with pytest.raises(exc, match=match):
            model(x)


def test_second_order_field_rejects_a_state_of_the_wrong_width():
    field = SecondOrderField(MLP([4, 3, 2]), input_size=2)
    with pytest.raises(ValueError, match=r"\[x, v\] of width 4, got shape \(3, 3\)"):
        field(0.0, torch.randn(3, 3))


def test_trajectory_needs_two_steps():
    with pytest.raises(ValueError, match="steps must be an integer >= 2"):
        PlainNODE(1, 4).trajectory(torch.zeros(2, 1), steps=1)


def test_odefunc_is_the_dynamics_of_the_first_order_models():
    for name, model in _models(2, None).items():
        assert isinstance(model.dynamics, SecondOrderField if name == "second_order" else ODEFunc)
