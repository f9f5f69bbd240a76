"""The models' ``adjoint`` setting: False (backprop), True / "adjoint" (reverse solve), "checkpoint" (replay)."""
import pytest
import torch
from torch import nn

from nodecourse.models import CNF, MLP, NeuralODE, ODEBlock, ODEFunc, StackedODE
from nodecourse.models.gradients import check_adjoint

DT = torch.float64


def _func(seed: int = 0) -> ODEFunc:
    torch.manual_seed(seed)
    return ODEFunc(MLP([3, 16, 3])).to(DT)


def _grads(block: ODEBlock, x: torch.Tensor) -> list[torch.Tensor]:
    loss = block(x).pow(2).sum()
    return torch.autograd.grad(loss, [x, *block.func.parameters()])


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_checkpoint_gives_backprops_gradient_at_about_the_forwards_evaluations(dtype, tol):
    func = _func().to(dtype)
    x = torch.randn(8, 3, dtype=dtype, requires_grad=True)
    backprop = ODEBlock(func, t1=2.0, rtol=1e-6, atol=1e-6)
    replay = ODEBlock(func, t1=2.0, rtol=1e-6, atol=1e-6, adjoint="checkpoint")
    reverse = ODEBlock(func, t1=2.0, rtol=1e-6, atol=1e-6, adjoint=True)
    g_backprop, g_replay = _grads(backprop, x), _grads(replay, x)
    for a, b in zip(g_replay, g_backprop):  # the same gradient: of the computed solution
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    _grads(reverse, x)
    assert replay.nfe_forward == backprop.nfe_forward
    # the replay evaluates each recorded step's 7 dopri5 stages once (the first is recomputed, not stored,
    # where the forward reuses the last stage): 7 per step against the forward's 6 per step plus 2
    assert 0 < replay.nfe_backward <= 7 / 6 * replay.nfe_forward
    assert reverse.nfe_backward > replay.nfe_backward


def test_setting_can_change_after_construction_and_is_checked_there_too():
    block = ODEBlock(_func(), t1=1.0, method="rk4", options={"step_size": 0.25})
    x = torch.randn(4, 3, dtype=DT)
    block.adjoint = "checkpoint"
    with pytest.raises(ValueError, match="fixed steps: use adjoint=False"):
        block(x)
    block.method, block.options = "dopri5", None
    block(x).sum().backward()
    assert block.nfe_backward > 0


@pytest.mark.parametrize("given, expected", [(False, False), (True, True), (0, False), (1, True),
                                             ("adjoint", True), ("checkpoint", "checkpoint")])
def test_check_adjoint_normalises(given, expected):
    assert check_adjoint(given, "dopri5") is expected or check_adjoint(given, "dopri5") == expected
    assert type(check_adjoint(given, "dopri5")) is type(expected)


@pytest.mark.parametrize("build, match", [
    (lambda: ODEBlock(_func(), adjoint="checkpointed"), "adjoint must be False"),
    (lambda: ODEBlock(_func(), adjoint=None), "adjoint must be False"),
    (lambda: ODEBlock(_func(), adjoint=2), "adjoint must be False"),
    (lambda: ODEBlock(_func(), method="rk4", options={"step_size": 0.1}, adjoint="checkpoint"),
     "method='rk4' takes fixed steps"),
    (lambda: NeuralODE(3, 4, adjoint="checkpoint"), "method='euler' takes fixed steps"),
    (lambda: ODEBlock(_func(), adjoint="checkpoint", adjoint_options={"norm": "seminorm"}),
     "adjoint_options set the adjoint's reverse solve"),
    (lambda: StackedODE([_func(1), _func(2)], method="midpoint", options={"step_size": 0.1}, adjoint="checkpoint"),
     "method='midpoint' takes fixed steps"),
    (lambda: CNF(2, method="euler", options={"step_size": 0.1}, adjoint="checkpoint"),
     "method='euler' takes fixed steps"),
])
def test_bad_settings_are_refused_when_the_model_is_built(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_checkpoint_trains_a_model():
    """A few optimiser steps with the replayed gradient lower the loss exactly as backprop's do."""
    torch.manual_seed(0)
    x = torch.randn(32, 3, dtype=DT)
    target = torch.roll(x, 1, dims=1)
    losses = {}
    for setting in (False, "checkpoint"):
        torch.manual_seed(1)
        model = nn.Sequential(ODEBlock(_func(), t1=1.0, adjoint=setting)).to(DT)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        history = []
        for _ in range(5):
            opt.zero_grad()
            loss = (model(x) - target).pow(2).mean()
            loss.backward()
            opt.step()
            history.append(loss.item())
        losses[setting] = history
    assert losses["checkpoint"][-1] < losses["checkpoint"][0]
    assert losses["checkpoint"] == pytest.approx(losses[False], rel=1e-9)
