"""The arithmetic shortcuts of the stepping code give the bits of the plain expressions they replace."""
from __future__ import annotations

import math

import pytest
import torch

from nodecourse.solvers.norms import rms_norm
from nodecourse.solvers.rk_step import scaled, shifted


def _values(dtype, n=4000, seed=0):
    """Random values over many magnitudes, with zeros of both signs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(-20, 20, (n,), generator=g)
    x[::37], x[::41] = 0.0, -0.0
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("s", [0.1, -1 / 3, 2.5e-7, 1.0, 3e5])
def test_scaled_gives_the_bits_of_the_product(dtype, s):
    x = _values(dtype)
    product, ours = s * x, scaled(x, s)
    assert ours.dtype == dtype and torch.equal(ours, product)  # -0 and +0 compare equal; every other bit agrees


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("s", [0.1, -1 / 3, 2.5e-7, 1.0, 3e5, 1e-30])
def test_shifted_gives_the_bits_of_the_sum(dtype, s):
    x = _values(dtype).clamp(-1e30, 1e30)
    assert torch.equal(shifted(x, s), x + s)


def test_scaled_passes_the_gradient_of_the_product():
    x = _values(torch.float64, n=10).requires_grad_()
    scaled(x, -0.75).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, -0.75))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("width", [1, 7, 256, 4099])
def test_rms_norm_gives_the_bits_of_dividing_by_the_python_root(dtype, width):
    x = _values(dtype, n=3 * width, seed=width).reshape(3, width).clamp(-1e15, 1e15)
    expected = torch.linalg.vector_norm(x, dim=1) / math.sqrt(width)
    assert torch.equal(rms_norm(x), expected)
    reference = (x.double() ** 2).mean(dim=1).sqrt()  # independent: the definition, in float64
    assert torch.allclose(rms_norm(x).double(), reference, rtol=1e-5 if dtype == torch.float32 else 1e-12)


def test_rms_norm_is_differentiable():
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rms_norm, (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_finite_answers_as_isfinite_all_does(dtype):
    from nodecourse.solvers.checks import all_finite

    huge = torch.finfo(dtype).max
    cases = [torch.randn(64, 4, dtype=dtype), torch.empty(0, 3, dtype=dtype),
             torch.full((5,), huge, dtype=dtype),  # finite entries whose sum overflows
             torch.tensor([huge, -huge, huge], dtype=dtype)]
    for bad in (math.nan, math.inf, -math.inf):
        x = torch.randn(3, 7, dtype=dtype)
        x[1, 4] = bad
        cases.append(x)
    both = torch.zeros(4, dtype=dtype)
    both[0], both[3] = math.inf, -math.inf  # their sum is NaN: still caught
    cases.append(both)
    for x in cases:
        assert all_finite(x) == bool(torch.isfinite(x).all()), x
    assert all_finite(torch.ones(3, requires_grad=True))
