"""The solvers on accelerators: every path gives on CUDA (and MPS) what it gives on the CPU.

Each test runs once per accelerator present and is skipped where there is none (a plain CPU machine).
"""
from __future__ import annotations

import pytest
import torch

import nodecourse

ACCELERATORS = [d for d, present in (("cuda", torch.cuda.is_available()),
                                     ("mps", getattr(torch.backends, "mps", None) is not None
                                      and torch.backends.mps.is_available())) if present]
pytestmark = pytest.mark.parametrize("device", ACCELERATORS or [pytest.param("none", marks=pytest.mark.skip(
    reason="no CUDA or MPS device here"))])


def dtype_for(device: str) -> torch.dtype:
    return torch.float32 if device == "mps" else torch.float64  # MPS has no float64


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)


def both(device: str):
    """The same field and batch on the CPU and on ``device``."""
    dtype = dtype_for(device)
    cpu = Field().to(dtype)
    acc = Field().to(device, dtype)
    acc.load_state_dict(cpu.state_dict())
    y0 = torch.randn(8, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.0, 2.0, 5, dtype=dtype)
    return (cpu, y0, t), (acc, y0.to(device), t.to(device))


def tolerance(device: str) -> dict:
    return dict(rtol=1e-4, atol=1e-5) if dtype_for(device) == torch.float32 else dict(rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("method, options", [("dopri5", None), ("bosh3", None), ("rk4", {"step_size": 0.1}),
                                             ("dopri5", {"per_sample": True})])
def test_forward_solve_matches_the_cpu(device, method, options):
    (f_cpu, y_cpu, t_cpu), (f_acc, y_acc, t_acc) = both(device)
    on_cpu = nodecourse.solve(f_cpu, y_cpu, t_cpu, method=method, options=options, rtol=1e-7, atol=1e-9)
    on_acc = nodecourse.solve(f_acc, y_acc, t_acc, method=method, options=options, rtol=1e-7, atol=1e-9)
    assert on_acc.ys.device.type == device
    torch.testing.assert_close(on_acc.ys.cpu(), on_cpu.ys, **tolerance(device))


def test_adjoint_gradients_match_the_cpu(device):
    grads = []
    for field, y0, t in both(device):
        y0 = y0.clone().requires_grad_(True)
        loss = nodecourse.odeint_adjoint(field, y0, t, rtol=1e-7, atol=1e-9).pow(2).sum()
        grads.append([g.cpu() for g in torch.autograd.grad(loss, (y0, *field.parameters()))])
    for on_cpu, on_acc in zip(*grads):
        torch.testing.assert_close(on_acc, on_cpu, **tolerance(device))


def test_backprop_through_the_solver_and_time_gradients_on_the_device(device):
    (_, _, _), (field, y0, t) = both(device)
    t = t.clone().requires_grad_(True)
    nodecourse.odeint(field, y0, t, method="rk4", options={"step_size": 0.05}).sum().backward()
    assert t.grad is not None and t.grad.device.type == device and bool(torch.isfinite(t.grad).all())


def test_compiled_step_matches_the_eager_one(device):
    (_, _, _), (field, y0, t) = both(device)
    eager = nodecourse.odeint(field, y0, t, rtol=1e-6, atol=1e-8)
    compiled = nodecourse.odeint(field, y0, t, rtol=1e-6, atol=1e-8, options={"compile": True})
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


def test_a_state_and_a_field_on_different_devices_get_a_clear_error(device):
    (field_cpu, y_cpu, t_cpu), _ = both(device)
    with pytest.raises(ValueError, match=r"on the state's device .* func\.to\(y0\.device\)"):
        nodecourse.odeint(field_cpu, y_cpu.to(device), t_cpu)



def test_float64_times_with_a_float32_state_on_the_device(device):
    """t from np.linspace is float64; MPS has no float64 at all: the solve still runs and func sees float32."""
    seen = set()

    def field(t, y):
        seen.add(t.dtype)
        return -y * t

    y = nodecourse.odeint(field, torch.ones(3, device=device), torch.linspace(0, 1, 4, dtype=torch.float64))
    assert y.device.type == device and seen == {torch.float32}
