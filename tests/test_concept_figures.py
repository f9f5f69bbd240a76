"""The concept figures of the lectures (nodecourse.plotting): they draw what their formulas say, and
refuse bad input with a message that names it. Drawn on the Agg backend."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nodecourse.plotting import adjoint_sweeps, resnet_block_vs_euler_step  # noqa: E402


def oscillator(t, y):
    """dy1/dt = y2, dy2/dt = -y1: the exact solution is a clockwise rotation."""
    return torch.stack([y[..., 1], -y[..., 0]], dim=-1)


def texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts) + " " + ax.get_title()


def test_resnet_block_vs_euler_step_draws_the_block_and_the_euler_steps():
    fig, (left, right) = plt.subplots(1, 2)
    assert resnet_block_vs_euler_step(left, right, oscillator, [0.0, 1.0], h=0.5, n_steps=3) == (left, right)
    assert "y_{l+1} = y_l + f(y_l" in texts(left) and "skip connection" in texts(left)
    assert not left.axison
    # the Euler points are y_{n+1} = y_n + h f(y_n): on the oscillator the radius grows by sqrt(1 + h^2)
    dots = [line for line in right.lines if line.get_marker() == "o" and len(line.get_xdata()) == 4]
    assert len(dots) == 1
    x, y = dots[0].get_data()
    np.testing.assert_allclose(np.hypot(x, y), (1 + 0.25) ** (np.arange(4) / 2), rtol=1e-12)
    # the exact solution stays on the unit circle
    exact = right.lines[0]
    np.testing.assert_allclose(np.hypot(*exact.get_data()), 1.0, atol=1e-8)
    plt.close(fig)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(h=0.0), ValueError, "h must be > 0"),
    (dict(h="0.5"), TypeError, "h must be a real number"),
    (dict(n_steps=0), ValueError, "n_steps must be a positive integer"),
    (dict(y0=[1.0, 0.0, 0.0]), ValueError, "y0 must be one finite 2-D state"),
    (dict(y0=[float("nan"), 0.0]), ValueError, "y0 must be one finite 2-D state"),
    (dict(field=lambda t, y: y[..., :1]), ValueError, "the state's shape"),
])
def test_resnet_block_vs_euler_step_rejects_bad_input(kwargs, error, match):
    args = dict(field=oscillator, y0=[0.0, 1.0])
    args.update(kwargs)
    fig, (left, right) = plt.subplots(1, 2)
    with pytest.raises(error, match=match):
        resnet_block_vs_euler_step(left, right, **args)
    plt.close(fig)


def test_adjoint_sweeps_marks_every_output_time_and_both_directions():
    fig, ax = plt.subplots()
    times = [0.0, 0.5, 1.5, 2.0, 3.0]
    assert adjoint_sweeps(ax, times) is ax
    assert [t.get_text() for t in ax.get_xticklabels()] == ["$t_0$", "$t_1$", "$t_2$", "$t_3$", "$t_N$"]
    words = texts(ax)
    assert "forward" in words and "backward" in words and "[h, a, g]" in words
    # the stored states: one dot per output time on the forward curve
    stored = [line for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata()) == len(times)]
    assert len(stored) == 1 and list(stored[0].get_xdata()) == times
    # the adjoint jumps once at every output time before t_N (black arrows), g never
    jumps = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None
             and a.arrow_patch.get_edgecolor()[:3] == (0.0, 0.0, 0.0)]
    assert len(jumps) == len(times) - 1
    plt.close(fig)


@pytest.mark.parametrize("times", [[1.0], [0.0, 1.0, 1.0], [2.0, 1.0], [0.0, float("inf")]])
def test_adjoint_sweeps_rejects_times_that_are_not_increasing(times):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="strictly increasing"):
        adjoint_sweeps(ax, times)
    plt.close(fig)
