"""Figures of the course: vector fields, phase portraits, trajectories, convergence plots, PCA paths.

Every function draws on a given matplotlib ``Axes`` and returns it; none calls ``plt.show()``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import nn

from nodecourse._validation import check_count, check_real, is_int, is_real
from nodecourse.solvers import odeint

__all__ = ["vector_field", "phase_portrait", "trajectories", "convergence_plot", "pca_project", "pca_trajectories",
           "resnet_block_vs_euler_step", "adjoint_sweeps"]

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


def _numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _field_dtype_device(field: Field) -> tuple[torch.dtype, torch.device]:
    """A module's parameter dtype and device (so a model is called on its own device); else float32 CPU."""
    if isinstance(field, nn.Module):
        param = next(field.parameters(), None)
        if param is not None:
            return param.dtype, param.device
    return torch.get_default_dtype(), torch.device("cpu")


def _check_limits(name: str, lim: Sequence[float]) -> tuple[float, float]:
    """Axis limits as a pair of finite numbers ``low < high``."""
    values = _numpy(lim).reshape(-1) if isinstance(lim, (torch.Tensor, np.ndarray)) else lim
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)) or len(values) != 2 \
            or not all(is_real(v) for v in values):
        raise ValueError(f"{name} must be a pair (low, high) of numbers, got {lim!r}.")
    lo, hi = float(values[0]), float(values[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be (low, high) with finite low < high, got ({lo}, {hi}).")
    return lo, hi


def vector_field(
    ax: Axes,
    field: Field,
    xlim: Sequence[float],
    ylim: Sequence[float],
    n: int = 20,
    t: float = 0.0,
    kind: str = "quiver",
    **kwargs: Any,
) -> Axes:
    """Draw the planar field ``field(t, y)`` on an ``n x n`` grid (``y`` is a ``[n*n, 2]`` batch).

    ``kind`` is "quiver" (arrows) or "stream" (streamlines); ``kwargs`` go to matplotlib.
    """
    xlo, xhi = _check_limits("xlim", xlim)
    ylo, yhi = _check_limits("ylim", ylim)
    n = check_count("n", n, 2, kind="an integer >= 2 (grid points per axis)")
    try:
        t = float(t)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"t must be one number (the time at which to draw the field), got {t!r}.") from None
    if not np.isfinite(t):
        raise ValueError(f"t must be a finite number (the time at which to draw the field), got t={t}.")
    if kind not in ("quiver", "stream"):
        raise ValueError(f"kind must be 'quiver' or 'stream', got {kind!r}.")
    dtype, device = _field_dtype_device(field)
    xs = torch.linspace(xlo, xhi, n, dtype=dtype, device=device)
    ys = torch.linspace(ylo, yhi, n, dtype=dtype, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # rows follow y, columns follow x
    points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)
    with torch.no_grad():
        velocity = field(torch.as_tensor(float(t), dtype=dtype, device=device), points)
    if tuple(velocity.shape) != (n * n, 2):
        raise ValueError(
            f"the field must map a [N, 2] batch of points to [N, 2] velocities, got {tuple(velocity.shape)} "
            f"for N={n * n}; vector_field draws planar systems only."
        )
    u, v = (_numpy(velocity[:, i]).reshape(n, n) for i in range(2))
    if kind == "quiver":
        kwargs.setdefault("color", "0.55")
        ax.quiver(_numpy(grid_x), _numpy(grid_y), u, v, **kwargs)
    else:
        kwargs.setdefault("color", "0.6")
        kwargs.setdefault("density", 1.0)
        ax.streamplot(_numpy(xs), _numpy(ys), u, v, **kwargs)
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, yhi)
    return ax


def trajectories(
    ax: Axes,
    ys: ArrayLike,
    color: Any = None,
    alpha: float = 0.8,
    label: str | None = None,
    start_markers: bool = True,
    **kwargs: Any,
) -> Axes:
    """Draw planar trajectories ``ys`` of shape ``[T, B, 2]`` (or ``[T, 2]``): one line per sample.

    With ``start_markers`` the initial states are marked by one scatter of dots.
    """
    arr = _numpy(ys)
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(
            f"trajectories expects states of shape [T, B, 2] (time, sample, xy), got {arr.shape}; "
            "project higher-dimensional states first (e.g. pca_trajectories)."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"trajectories got no states to draw (shape {arr.shape}); pass at least one time and one "
                         "sample.")
    lines = ax.plot(arr[:, :, 0], arr[:, :, 1], color=color, alpha=alpha, **kwargs)
    if label is not None and lines:
        lines[0].set_label(label)
    if start_markers:
        ax.scatter(arr[0, :, 0], arr[0, :, 1], s=12, color=lines[0].get_color() if color is None else color,
                   zorder=3)
    return ax


def phase_portrait(
    ax: Axes,
    field: Field,
    initial_states: torch.Tensor,
    t: torch.Tensor,
    method: str = "dopri5",
    rtol: float = 1e-6,
    atol: float = 1e-8,
    options: dict[str, Any] | None = None,
    xlim: Sequence[float] | None = None,
    ylim: Sequence[float] | None = None,
    n: int = 20,
    kind: str = "quiver",
    **line_kwargs: Any,
) -> Axes:
    """Solve ``dy/dt = field(t, y)`` from ``initial_states [B, 2]`` at times ``t`` and draw the paths on the field.

    Limits default to the trajectories' extent plus a 10% margin.
    """
    if not isinstance(initial_states, torch.Tensor) or initial_states.dim() != 2 or initial_states.shape[-1] != 2:
        shape = tuple(initial_states.shape) if isinstance(initial_states, torch.Tensor) else type(initial_states)
        raise ValueError(f"initial_states must be a [B, 2] tensor of planar states, got {shape}.")
    t = torch.as_tensor(t, dtype=initial_states.dtype, device=initial_states.device)
    with torch.no_grad():
        ys = odeint(field, initial_states, t, rtol=rtol, atol=atol, method=method, options=options)
    pts = _numpy(ys).reshape(-1, 2)
    if xlim is None or ylim is None:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        margin = 0.1 * np.maximum(hi - lo, 1e-3)
        xlim = xlim if xlim is not None else (lo[0] - margin[0], hi[0] + margin[0])
        ylim = ylim if ylim is not None else (lo[1] - margin[1], hi[1] + margin[1])
    vector_field(ax, field, xlim, ylim, n=n, t=float(t[0]), kind=kind)
    trajectories(ax, ys, **line_kwargs)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    return ax


def _error_matrix(errors: ArrayLike | Sequence[ArrayLike]) -> np.ndarray:
    """Errors as an ``[M, N]`` float array from ``[N]``, ``[M, N]`` or a list of M sequences of length N."""
    if isinstance(errors, (torch.Tensor, np.ndarray)):
        return np.atleast_2d(_numpy(errors).astype(float))
    rows = [_numpy(e).astype(float).reshape(-1) for e in errors]
    if all(r.size == 1 for r in rows):  # a flat list of numbers: one method
        return np.concatenate(rows)[None, :]
    if len({r.size for r in rows}) != 1:
        raise ValueError(f"every method needs one error per step size, got lengths {[r.size for r in rows]}.")
    return np.stack(rows)


def convergence_plot(
    ax: Axes,
    step_sizes: ArrayLike,
    errors: ArrayLike | Sequence[ArrayLike],
    orders: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
) -> Axes:
    """Log-log plot of error against step size, one line per method, with dashed ``O(h^p)`` references.

    ``errors`` is ``[N]`` (one method) or ``[M, N]``. Reference line ``i`` (slope ``orders[i]``) passes
    through the middle point of method ``i`` (of the first method when there are more orders than methods).
    """
    h = _numpy(step_sizes).astype(float).reshape(-1)
    if h.size < 2 or np.any(h <= 0) or not np.all(np.isfinite(h)):
        raise ValueError(f"step_sizes must hold at least two finite, positive step sizes, got {h.tolist()}.")
    errs = _error_matrix(errors)
    if errs.shape[1] != h.size:
        raise ValueError(
            f"errors must have one value per step size ({h.size}), got shape {errs.shape}; "
            "pass [N] for one method or [M, N] for M methods."
        )
    if labels is not None and len(labels) != errs.shape[0]:
        raise ValueError(f"labels must name each of the {errs.shape[0]} methods, got {len(labels)} labels.")
    order = np.argsort(h)
    for i, e in enumerate(errs):
        ax.plot(h[order], e[order], "o-", label=None if labels is None else labels[i])
    mid = order[len(order) // 2]
    for i, p in enumerate(orders or []):
        anchor = errs[i] if i < errs.shape[0] else errs[0]
        ref = anchor[mid] * (h[order] / h[mid]) ** p
        ax.plot(h[order], ref, "--", color="0.5", linewidth=1, label=f"O(h^{p:g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step size h")
    ax.set_ylabel("error")
    if labels is not None or orders:
        ax.legend()
    return ax


def pca_project(
    states: ArrayLike, k: int = 2, basis: ArrayLike | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project ``states [T, D]`` onto their first ``k`` principal components.

    Returns ``(projected [T, k], components [D, k], mean [D])``. The components come from an SVD of
    the centred states (or of ``basis [S, D]`` when given, e.g. all models' states together); each is
    signed so that its largest-magnitude entry is positive, which makes the result deterministic.
    """
    x = torch.as_tensor(states)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    fit = x if basis is None else torch.as_tensor(basis, dtype=x.dtype, device=x.device)
    if x.dim() != 2 or fit.dim() != 2:
        raise ValueError(
            f"states must be [T, D] (one sample's hidden states over time), got {tuple(x.shape)}; "
            "for a batch [T, B, D] pick one sample with states[:, i]."
        )
    if fit.shape[1] != x.shape[1]:
        raise ValueError(f"basis has {fit.shape[1]} features but states have {x.shape[1]}.")
    if not is_int(k) or not 1 <= k <= min(fit.shape):
        raise ValueError(
            f"k must be between 1 and min(T, D) = {min(fit.shape)} for {tuple(fit.shape)} states, got k={k!r}."
        )
    if not (torch.isfinite(x).all() and torch.isfinite(fit).all()):
        raise ValueError("the states hold NaN or inf values, which have no principal components; check the model "
                         "that produced them (a solve that blew up?) or drop those rows.")
    k = int(k)
    mean = fit.mean(dim=0)
    _, _, vh = torch.linalg.svd(fit - mean, full_matrices=False)
    components = vh[:k].T.clone()
    idx = components.abs().argmax(dim=0)
    signs = torch.sign(components[idx, torch.arange(k, device=components.device)])
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    return (x - mean) @ components, components, mean


def pca_trajectories(
    ax: Axes,
    states_list: Sequence[ArrayLike],
    labels: Sequence[str] | None = None,
    joint: bool = False,
    markers: bool = True,
) -> Axes:
    """Draw each hidden-state sequence ``[T, D]`` projected on its first two principal components.

    ``joint=False`` fits each sequence its own components (sequences may differ in D, e.g. MLP layers
    of different widths); ``joint=True`` fits one basis to all of them so the paths share axes.
    A dot marks each path's start.
    """
    if len(states_list) == 0:
        raise ValueError("states_list is empty; pass a list of [T, D] hidden-state sequences.")
    if labels is not None and len(labels) != len(states_list):
        raise ValueError(f"labels must name each of the {len(states_list)} sequences, got {len(labels)}.")
    seqs = [torch.as_tensor(s).detach() for s in states_list]
    basis = None
    if joint:
        if len({s.shape[-1] for s in seqs}) != 1:
            raise ValueError("joint=True needs sequences with the same state size D; use joint=False.")
        basis = torch.cat([s.reshape(-1, s.shape[-1]).to(seqs[0]) for s in seqs])
    for i, s in enumerate(seqs):
        proj = _numpy(pca_project(s, 2, basis=basis)[0])
        (line,) = ax.plot(proj[:, 0], proj[:, 1], "o-" if markers else "-", markersize=3,
                          label=None if labels is None else labels[i])
        ax.scatter(proj[:1, 0], proj[:1, 1], s=40, color=line.get_color(), zorder=3)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    if labels is not None:
        ax.legend()
    return ax


# Concept figures: diagrams of one idea each, drawn in code so they stay true to the formulas.

def resnet_block_vs_euler_step(
    ax_block: Axes,
    ax_step: Axes,
    field: Field,
    y0: ArrayLike,
    h: float = 0.5,
    n_steps: int = 3,
    t0: float = 0.0,
) -> tuple[Axes, Axes]:
    """A ResNet block beside an Euler step (notebook 02): the same update drawn twice.

    ``ax_block``: the residual block as a diagram, the input y_l going through f(., theta_l) while the skip
    connection carries it to the sum, y_{l+1} = y_l + f(y_l; theta_l). ``ax_step``: ``n_steps`` Euler steps
    of size ``h`` for dy/dt = field(t, y) from the 2-D state ``y0``, each an arrow h f(t_n, y_n) along the
    tangent, over the exact solution (dopri5 at a tight tolerance, in grey); the first step's local
    error is marked. ``field`` is called as ``field(t, y)`` with ``y`` of shape [1, 2] in float64.
    """
    n_steps = check_count("n_steps", n_steps)
    h = check_real("h", h, low=0.0)
    t0 = check_real("t0", t0)
    start = torch.as_tensor(_numpy(y0), dtype=torch.float64).reshape(-1)
    if start.numel() != 2 or not bool(torch.isfinite(start).all()):
        raise ValueError(f"y0 must be one finite 2-D state (two numbers), got {tuple(_numpy(y0).shape)} values "
                         f"{_numpy(y0).tolist()}.")

    # left: the block diagram, in axes coordinates
    ax = ax_block
    ax.set_axis_off()
    ax.set(xlim=(0, 1), ylim=(0, 1), title="a ResNet block")
    arrow = dict(arrowstyle="-|>", color="k", lw=1.2, shrinkA=0, shrinkB=0)
    ax.text(0.06, 0.55, "$y_l$", ha="center", va="center", fontsize=14)
    ax.text(0.5, 0.55, r"$f(\,\cdot\,;\theta_l)$", ha="center", va="center", fontsize=13,
            bbox=dict(boxstyle="round,pad=0.5", fc="#dbe9f6", ec="C0"))
    ax.text(0.8, 0.55, "+", ha="center", va="center", fontsize=16,
            bbox=dict(boxstyle="circle,pad=0.15", fc="white", ec="k"))
    ax.text(0.96, 0.55, "$y_{l+1}$", ha="center", va="center", fontsize=14)
    ax.annotate("", xy=(0.34, 0.55), xytext=(0.11, 0.55), arrowprops=arrow)
    ax.annotate("", xy=(0.765, 0.55), xytext=(0.66, 0.55), arrowprops=arrow)
    ax.annotate("", xy=(0.91, 0.55), xytext=(0.835, 0.55), arrowprops=arrow)
    ax.plot([0.2, 0.2, 0.8], [0.55, 0.85, 0.85], color="C3", lw=1.5)
    ax.annotate("", xy=(0.8, 0.59), xytext=(0.8, 0.85), arrowprops=dict(arrow, color="C3"))
    ax.text(0.5, 0.89, "skip connection: the identity", ha="center", va="bottom", color="C3", fontsize=10)
    ax.text(0.5, 0.27, r"$y_{l+1} = y_l + f(y_l;\, \theta_l)$", ha="center", fontsize=13)
    ax.text(0.5, 0.1, r"Euler: $y_{n+1} = y_n + h\, f(t_n, y_n)$, with $h = 1$, $t_n = n$", ha="center",
            fontsize=11, color="0.3")

    # right: the same update as Euler steps on a trajectory
    ax = ax_step
    times = torch.linspace(t0, t0 + n_steps * h, 200, dtype=torch.float64)
    with torch.no_grad():
        exact = odeint(field, start[None], times, rtol=1e-10, atol=1e-12)[:, 0]
        states, t = [start[None]], t0
        for _ in range(n_steps):
            slope = torch.as_tensor(field(torch.tensor(t, dtype=torch.float64), states[-1]), dtype=torch.float64)
            states.append(states[-1] + h * slope)  # odeint above has checked the field's output shape
            t += h
    exact, path = _numpy(exact), _numpy(torch.cat(states))
    ax.plot(exact[:, 0], exact[:, 1], color="0.6", lw=4, alpha=0.7, label="exact solution")
    for n in range(n_steps):
        ax.annotate("", xy=path[n + 1], xytext=path[n],
                    arrowprops=dict(arrowstyle="-|>", color="C0", lw=1.5, shrinkA=0, shrinkB=0))
    ax.plot(path[:, 0], path[:, 1], "o", color="C0", ms=5, label=r"Euler: $y_{n+1} = y_n + h f(t_n, y_n)$")
    for n, point in enumerate(path):
        ax.annotate(f"$y_{n}$", point, textcoords="offset points", xytext=(6, 6), color="C0")
    on_curve = _numpy(odeint(field, start[None], torch.tensor([t0, t0 + h], dtype=torch.float64),
                             rtol=1e-10, atol=1e-12)[-1, 0])
    ax.plot(*on_curve, "o", mfc="white", mec="k", ms=6, label=f"exact $y(t_0 + h)$, h = {h:g}")
    ax.plot([on_curve[0], path[1, 0]], [on_curve[1], path[1, 1]], ":", color="C3", lw=1.5,
            label="local error of one step")
    ax.set(xlabel="$y_1$", ylabel="$y_2$", title="the same update: Euler steps", aspect="equal")
    ax.legend(fontsize=8, loc="best")
    return ax_block, ax_step


def adjoint_sweeps(ax: Axes, output_times: ArrayLike = (0.0, 0.7, 1.2, 2.0)) -> Axes:
    """The adjoint method's two sweeps on one time axis (notebook 04), as a schematic.

    Top band: the forward solve of h from t_0 to t_N, left to right, keeping only the states at the
    output times. Lower bands: the backward solve of the augmented state [h, a, g] from t_N to t_0,
    right to left: h recomputed (and restarted from the stored h(t_i) at every output time), the
    adjoint a jumping by dl_i/dh(t_i) at each output time, the parameter gradient g accumulating from 0
    without jumps. The curves are illustrative shapes, not a solution; ``output_times`` (increasing,
    at least two) places the output times t_0 < ... < t_N.
    """
    times = np.asarray(_numpy(output_times), dtype=float).reshape(-1)
    if times.size < 2 or not np.all(np.isfinite(times)) or not np.all(np.diff(times) > 0):
        raise ValueError(f"output_times must be at least two finite, strictly increasing times, got "
                         f"{times.tolist()}.")
    t0, t1 = times[0], times[-1]
    span = t1 - t0
    grid = np.linspace(t0, t1, 300)
    h_fwd, h_bwd, a_base, jump, g_start, g_gain = 3.05, 2.3, 1.0, 0.22, 0.15, 0.5

    def h_shape(t):  # an illustrative state, within +-0.2 of zero
        s = (np.asarray(t) - t0) / span
        return 0.17 * np.sin(2.4 * s + 0.3) - 0.1 * s

    def tip(color, style="-|>"):
        return dict(arrowstyle=style, color=color, lw=1.5, shrinkA=0, shrinkB=0)

    # forward: h from t_0 to t_N, the output states kept
    ax.plot(grid, h_fwd + h_shape(grid), color="C0", lw=2)
    ax.annotate("", xy=(t1, h_fwd + h_shape(t1)), xytext=(t1 - 0.05 * span, h_fwd + h_shape(t1 - 0.05 * span)),
                arrowprops=tip("C0"))
    ax.plot(times, h_fwd + h_shape(times), "o", color="C0", ms=7, zorder=3)
    ax.text(t0 + 0.5 * span, 3.45, r"forward, $t_0 \to t_N$: solve $\dot h = f(h, t, \theta)$, keep only the "
            r"output states $h(t_i)$ (dots)", ha="center", color="C0", fontsize=10)

    # backward: [h, a, g] from t_N to t_0, interval by interval
    a_right, g_curve = a_base + 0.3, lambda s: g_start + g_gain * (1 - np.exp(-2 * s)) / (1 - np.exp(-2))
    ax.plot(t1, a_right, "o", color="C3", ms=6, zorder=3)
    for i in range(len(times) - 1, 0, -1):
        seg = np.linspace(times[i], times[i - 1], 60)
        s_local = (times[i] - seg) / span
        h_seg = h_bwd + h_shape(seg)
        a_seg = a_base + (a_right - a_base) * np.exp(-3.0 * s_local) + 0.03 * np.sin(12 * s_local)
        ax.plot(seg, h_seg, color="C3", lw=1.5, ls="--")
        ax.plot(seg, a_seg, color="C3", lw=2)
        ax.annotate("", xy=(seg[-1], h_seg[-1]), xytext=(seg[-5], h_seg[-5]), arrowprops=tip("C3"))
        ax.annotate("", xy=(seg[-1], a_seg[-1]), xytext=(seg[-5], a_seg[-5]), arrowprops=tip("C3"))
        ax.annotate("", xy=(times[i], h_bwd + h_shape(times[i]) + 0.03),
                    xytext=(times[i], h_fwd + h_shape(times[i]) - 0.05), arrowprops=tip("0.55", "->"))
        a_right = a_seg[-1] + jump
        ax.annotate("", xy=(times[i - 1], a_right), xytext=(times[i - 1], a_seg[-1]), arrowprops=tip("k"))
    g_grid = np.linspace(t1, t0, 200)
    g_values = g_curve((t1 - g_grid) / span)
    ax.plot(g_grid, g_values, color="C2", lw=2)
    ax.annotate("", xy=(t0, g_values[-1]), xytext=(g_grid[-6], g_values[-6]), arrowprops=tip("C2"))

    ax.text(t0 + 0.5 * span, 1.82, r"backward, $t_N \to t_0$: solve $[h, a, g]$; $h$ restarts from the stored "
            r"$h(t_i)$ (grey arrows)", ha="center", color="C3", fontsize=10)
    ax.text(t1 + 0.02 * span, a_base + 0.3, r"$a(t_N) = \partial \ell_N / \partial h(t_N)$", va="center", fontsize=9)
    ax.text(0.5 * (times[-2] + times[-1]), a_base + 0.5,
            r"at each $t_i$: $a \leftarrow a + \partial \ell_i / \partial h(t_i)$", ha="center", fontsize=9)
    ax.text(t1 + 0.02 * span, g_start, r"$g(t_N) = 0$", va="center", fontsize=9, color="C2")
    ax.text(t0 - 0.02 * span, a_right, r"$a(t_0) = \partial L / \partial h(t_0)$", ha="right", va="center",
            fontsize=9, color="C3")
    ax.text(t0 - 0.02 * span, g_values[-1], r"$g(t_0) = \mathrm{d}L / \mathrm{d}\theta$", ha="right", va="center",
            fontsize=9, color="C2")
    ax.text(t0 + 0.5 * span, 0.02, r"$g$ accumulates $\int a\, \partial f / \partial \theta\, \mathrm{d}t$ "
            r"and never jumps", ha="center", color="C2", fontsize=9)
    for t in times:
        ax.axvline(t, color="0.88", lw=0.8, zorder=0)
    ax.set_xticks(times, [f"$t_{i}$" if i < len(times) - 1 else "$t_N$" for i in range(len(times))])
    ax.set_yticks([h_fwd, h_bwd, a_base + 0.25, g_start + 0.3], ["h, forward", "h, recomputed", "a", "g"])
    ax.set_xlim(t0 - 0.3 * span, t1 + 0.3 * span)
    ax.set_ylim(-0.05, 3.6)
    ax.set_xlabel("time")
    ax.set_title("the adjoint method: one sweep forward, one backward (schematic)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax
