"""Small assertions shared by the tests."""
from __future__ import annotations

import pytest
import torch


def assert_directional_derivatives(module, loss_fn, n_directions=3, eps=1e-6, rtol=1e-6):
    """Autograd's gradient of loss_fn() w.r.t. the module's parameters against central differences."""
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(), params)
    g = torch.Generator().manual_seed(123)
    for _ in range(n_directions):
        direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(eps * d)
            up = loss_fn().item()
            for p, d in zip(params, direction):
                p.sub_(2 * eps * d)
            down = loss_fn().item()
            for p, d in zip(params, direction):
                p.add_(eps * d)
        numeric = (up - down) / (2 * eps)
        analytic = sum((gr * d).sum() for gr, d in zip(grads, direction)).item()
        assert analytic == pytest.approx(numeric, rel=rtol, abs=1e-8)


def assert_entry_gradients(loss_fn, weight, entries, eps=1e-6, rel=1e-6, abs_tol=1e-8):
    """Autograd's gradient of loss_fn() w.r.t. chosen entries of ``weight`` against central differences."""
    (grad,) = torch.autograd.grad(loss_fn(), weight)
    for idx in entries:
        with torch.no_grad():
            weight[idx] += eps
            up = loss_fn().item()
            weight[idx] -= 2 * eps
            down = loss_fn().item()
            weight[idx] += eps
        assert grad[idx].item() == pytest.approx((up - down) / (2 * eps), rel=rel, abs=abs_tol)


def assert_checker_rejects(checker, wrong, capsys, *phrases: str) -> str:
    """The checker does not keep a wrong answer, reports FAILED with a hint, and says each phrase."""
    returned = checker(wrong)
    out = capsys.readouterr().out
    assert returned is not wrong, "a wrong answer must not be kept"
    assert "FAILED" in out and "hint:" in out
    for phrase in phrases:
        assert phrase in out, out
    return out
