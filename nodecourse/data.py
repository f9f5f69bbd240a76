"""The course's datasets: generated toy problems and MNIST.

Toy data is generated here, never downloaded. Every random set takes a ``seed`` and draws from its
own ``torch.Generator`` (on the CPU, so the numbers are the same on every device), never from the
global random state. Tensors come back as float32 unless a ``dtype`` is asked for.

The true trajectories of the Lotka-Volterra and pendulum systems are integrated with a small
fixed-step RK4 that lives in this module, so the data never depends on the solvers it is used to test.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, licensed CC BY-SA 3.0
(http://yann.lecun.com/exdb/mnist/). See :func:`load_mnist` for where the digits come from.
"""
from __future__ import annotations

import gzip
import importlib.resources
import io
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from nodecourse import config as _config
from nodecourse._validation import check_flag, check_real, check_seed, is_int, is_real

__all__ = [
    "cubic_regression",
    "spirals",
    "nested_circles",
    "reflection_1d",
    "lotka_volterra_field",
    "lotka_volterra",
    "pendulum_field",
    "pendulum",
    "TimeSeries",
    "irregular_time_series",
    "MNISTData",
    "load_mnist",
    "split_holdout",
    "read_idx",
    "write_idx",
]


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


MAX_RK4_SUBSTEPS = 1_000_000
"""The most RK4 substeps one trajectory may take: more would run for minutes (or forever)."""


def _generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (an int in [0, 2**32 - 1]): the same numbers on every device."""
    return torch.Generator(device="cpu").manual_seed(check_seed(seed))


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (Python or NumPy int), else a clear TypeError/ValueError."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int (Python or NumPy), got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}; ask for more points.")
    return int(value)


def _check_noise(noise: float) -> float:
    if not is_real(noise):
        raise TypeError(f"noise must be a real number, got {type(noise).__name__} {noise!r}; it is the standard "
                        "deviation of the added Gaussian noise, e.g. noise=0.05.")
    if not (noise >= 0.0 and math.isfinite(noise)):
        raise ValueError(f"noise is a standard deviation and must be >= 0 and finite, got noise={noise}.")
    return float(noise)


def _check_pair(name: str, pair: object) -> tuple[float, float]:
    """A pair of finite real numbers such as ``radius_range=(0.5, 1.5)``."""
    if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2 \
            or not all(is_real(v) and math.isfinite(v) for v in pair):
        raise ValueError(f"{name} must be a pair (low, high) of finite numbers, got {name}={pair!r}.")
    return float(pair[0]), float(pair[1])


def _check_dtype_device(
    dtype: torch.dtype | None, device: torch.device | str | None
) -> tuple[torch.dtype | None, torch.device | None]:
    """``dtype`` must be a floating torch dtype (or None); ``device`` a device this machine has (or None)."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch dtype such as torch.float32 or torch.float64, "
                        f"got {dtype!r}.")
    return dtype, (None if device is None else _config.device(device))


def _finish(
    x: torch.Tensor, dtype: torch.dtype | None, device: torch.device | str | None, what: str = "the data"
) -> torch.Tensor:
    """Cast a float64 tensor to the requested dtype (float32 by default) and device, checking that no
    value overflowed to inf or became NaN on the way (parameters far too large for the data)."""
    out = x.to(dtype=dtype or torch.float32)
    if not torch.isfinite(out).all():
        raise ValueError(
            f"{what} came out as inf or NaN in {out.dtype}: the parameters are too extreme for these data "
            "(values overflow); use parameters of an ordinary size, or dtype=torch.float64."
        )
    return out.to(device=device if device is not None else out.device)


def _shuffle(
    X: torch.Tensor, labels: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random permutation applied to points and labels (so classes are mixed)."""
    perm = torch.randperm(labels.shape[0], generator=gen)
    return X[perm], labels[perm]


# --------------------------------------------------------------------------------------------------
# toy sets for regression and classification
# --------------------------------------------------------------------------------------------------


def cubic_regression(
    *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The regression set of Chen et al. (2018): x = 10 points on [-2, 2], y = x**3 + 0.1 x.

    Returns ``(x, y)``, both shaped [10, 1].
    """
    dtype, device = _check_dtype_device(dtype, device)
    x = torch.linspace(-2.0, 2.0, 10, dtype=torch.float64).unsqueeze(1)
    y = x**3 + 0.1 * x
    return _finish(x, dtype, device), _finish(y, dtype, device)


def spirals(
    n_samples: int = 1000,
    noise: float = 0.05,
    seed: int = 0,
    *,
    turns: float = 1.5,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals in the plane, a two-class classification problem.

    Class 0 follows ``r (cos a, sin a)`` with ``r`` in [0, 1] and ``a = 2 pi turns r``; class 1 is
    the same spiral turned by 180 degrees. Gaussian noise of std ``noise`` is added to each point.
    Returns ``(X [n, 2], labels [n] int64)``, shuffled, with ``ceil(n/2)`` points in class 0.
    """
    n_samples = _check_count("n_samples", n_samples, 2)
    noise = _check_noise(noise)
    turns = check_real("turns", turns, low=0)
    dtype, device = _check_dtype_device(dtype, device)
    gen = _generator(seed)
    n0 = (n_samples + 1) // 2
    labels = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n_samples - n0, dtype=torch.long)])
    r = torch.rand(n_samples, generator=gen, dtype=torch.float64)
    angle = 2 * math.pi * turns * r + math.pi * labels.to(torch.float64)
    X = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)
    X = X + noise * torch.randn(n_samples, 2, generator=gen, dtype=torch.float64)
    X, labels = _shuffle(X, labels, gen)
    what = f"spirals(noise={noise}, turns={turns})"
    return _finish(X, dtype, device, what), labels.to(device=device if device is not None else "cpu")


def nested_circles(
    n_samples: int = 1000,
    inner_radius: float = 0.5,
    outer_radii: tuple[float, float] = (1.0, 1.5),
    seed: int = 0,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A disk (class 0) inside an annulus (class 1): the set of Dupont et al. (2019) that a plain
    Neural ODE cannot separate, because its trajectories cannot cross.

    Points are uniform in area: class 0 in ``|x| <= inner_radius``, class 1 in
    ``outer_radii[0] <= |x| <= outer_radii[1]``. Returns ``(X [n, 2], labels [n] int64)``, shuffled,
    with ``ceil(n/2)`` points in class 0.
    """
    n_samples = _check_count("n_samples", n_samples, 2)
    r_in = check_real("inner_radius", inner_radius)
    r_lo, r_hi = _check_pair("outer_radii", outer_radii)
    dtype, device = _check_dtype_device(dtype, device)
    if not 0 < r_in < r_lo < r_hi:
        raise ValueError(
            "need 0 < inner_radius < outer_radii[0] < outer_radii[1] so the disk and the annulus are "
            f"separated by a gap; got inner_radius={r_in}, outer_radii=({r_lo}, {r_hi})."
        )
    gen = _generator(seed)
    n0 = (n_samples + 1) // 2
    n1 = n_samples - n0
    u = torch.rand(n_samples, generator=gen, dtype=torch.float64)
    ratio = r_lo / r_hi  # r = sqrt(r_lo^2 + u (r_hi^2 - r_lo^2)), written so that no square overflows
    r = torch.cat([r_in * u[:n0].sqrt(), r_hi * (ratio**2 + u[n0:] * (1 - ratio**2)).sqrt()])
    angle = 2 * math.pi * torch.rand(n_samples, generator=gen, dtype=torch.float64)
    X = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)
    labels = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)])
    X, labels = _shuffle(X, labels, gen)
    what = f"nested_circles(inner_radius={r_in}, outer_radii=({r_lo}, {r_hi}))"
    return _finish(X, dtype, device, what), labels.to(device=device if device is not None else "cpu")


def reflection_1d(
    n_samples: int = 100,
    seed: int = 0,
    *,
    x_max: float = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1-D reflection y = -x with x uniform on [-x_max, x_max]: a map no 1-D Neural ODE can
    represent, since its flow preserves order on the line. Returns ``(x [n, 1], y [n, 1])``."""
    n_samples = _check_count("n_samples", n_samples)
    x_max = check_real("x_max", x_max, low=0)
    dtype, device = _check_dtype_device(dtype, device)
    gen = _generator(seed)
    x = (2 * torch.rand(n_samples, 1, generator=gen, dtype=torch.float64) - 1) * x_max
    what = f"reflection_1d(x_max={x_max})"
    return _finish(x, dtype, device, what), _finish(-x, dtype, device, what)


# --------------------------------------------------------------------------------------------------
# dynamical systems: vector fields and true trajectories
# --------------------------------------------------------------------------------------------------


def _check_planar_state(owner: str, y: object, names: str) -> None:
    """A vector field of two variables needs states ``[..., 2]`` (a shape comparison, cheap per call)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{owner} needs the state as a tensor [..., 2] {names}, got {type(y).__name__}; "
                        "convert it with torch.as_tensor(y, dtype=torch.float64).")
    if y.dim() == 0 or y.shape[-1] != 2:
        raise ValueError(f"{owner} needs states of shape [..., 2] {names}, got shape {tuple(y.shape)}.")


def lotka_volterra_field(
    t: torch.Tensor | float,
    y: torch.Tensor,
    alpha: float = 1.5,
    beta: float = 1.0,
    delta: float = 1.0,
    gamma: float = 3.0,
) -> torch.Tensor:
    """Lotka-Volterra predator-prey field; ``y[..., 0]`` is the prey x, ``y[..., 1]`` the predator.

    dx/dt = alpha x - beta x y,  dy/dt = delta x y - gamma y.  Shape [..., 2] in, [..., 2] out.
    """
    _check_planar_state("lotka_volterra_field", y, "(prey, predator)")
    x, p = y[..., 0], y[..., 1]
    return torch.stack([alpha * x - beta * x * p, delta * x * p - gamma * p], dim=-1)


def pendulum_field(
    t: torch.Tensor | float, y: torch.Tensor, g_over_l: float = 1.0, damping: float = 0.0
) -> torch.Tensor:
    """Pendulum field; ``y[..., 0]`` is the angle theta, ``y[..., 1]`` the angular velocity omega.

    dtheta/dt = omega,  domega/dt = -(g/l) sin(theta) - damping omega.  Shape [..., 2] in and out.
    """
    _check_planar_state("pendulum_field", y, "(theta, omega)")
    theta, omega = y[..., 0], y[..., 1]
    return torch.stack([omega, -g_over_l * torch.sin(theta) - damping * omega], dim=-1)


def _as_state_and_times(
    y0: torch.Tensor | Sequence[float],
    t: torch.Tensor | Sequence[float],
    dtype: torch.dtype | None,
    device: torch.device | str | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """Check ``y0`` ([..., 2]) and ``t`` (1-D, strictly monotone); return them in the working dtype
    (float64, except on MPS which has none) together with the output dtype."""
    dtype, device = _check_dtype_device(dtype, device)
    if dtype is None:
        dtype = y0.dtype if isinstance(y0, torch.Tensor) and y0.is_floating_point() else torch.float32
    if device is None:
        source = y0 if isinstance(y0, torch.Tensor) else t if isinstance(t, torch.Tensor) else None
        device = source.device if source is not None else torch.device("cpu")
    work = dtype if device.type == "mps" else torch.float64
    y0 = _as_numbers("y0", y0).to(device=device, dtype=work)
    t = _as_numbers("t", t).to(device=device, dtype=work)
    if y0.ndim == 0 or y0.shape[-1] != 2:
        raise ValueError(
            f"y0 must have last dimension 2 (the two state variables), got shape {tuple(y0.shape)}; "
            "for a batch pass [batch, 2]."
        )
    if not torch.isfinite(y0).all():
        raise ValueError("y0 contains NaN or infinite values; pass a finite initial state.")
    if t.ndim != 1 or t.numel() < 1:
        raise ValueError(f"t must be a non-empty 1-D tensor of output times, got shape {tuple(t.shape)}.")
    if not torch.isfinite(t).all():
        raise ValueError("t contains NaN or infinite times; pass finite output times.")
    if t.numel() > 1:
        dt = t[1:] - t[:-1]
        if not ((dt > 0).all() or (dt < 0).all()):
            raise ValueError(
                "t must be strictly increasing or strictly decreasing; sort it and drop repeats."
            )
    return y0, t, dtype


def _as_numbers(name: str, value: object) -> torch.Tensor:
    """``value`` (a tensor, or a sequence of numbers) as a tensor, or a TypeError naming ``name``."""
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a tensor or a sequence of numbers, got {value!r}.") from None


def _rk4_trajectory(
    field: Callable[[float, torch.Tensor], torch.Tensor], y0: torch.Tensor, t: torch.Tensor, max_step: float
) -> torch.Tensor:
    """Classical RK4 with at most ``max_step`` per substep between consecutive output times.

    Returns [len(t), *y0.shape]. Self-contained on purpose: the data must not depend on the solvers.
    """
    max_step = check_real("max_step", max_step, low=0)
    times = t.tolist()
    substeps = sum(abs(t1 - t0) / max_step for t0, t1 in zip(times[:-1], times[1:]))
    if substeps > MAX_RK4_SUBSTEPS:
        raise ValueError(
            f"integrating over t in [{times[0]:g}, {times[-1]:g}] with max_step={max_step:g} takes about "
            f"{substeps:.3g} RK4 substeps, more than {MAX_RK4_SUBSTEPS:,} (minutes of work, or hours); "
            "raise max_step or shorten the time span."
        )
    ys = [y0]
    y = y0
    for t0, t1 in zip(times[:-1], times[1:]):
        n_sub = max(1, math.ceil(abs(t1 - t0) / max_step))
        h = (t1 - t0) / n_sub
        for k in range(n_sub):
            s = t0 + k * h
            k1 = field(s, y)
            k2 = field(s + h / 2, y + (h / 2) * k1)
            k3 = field(s + h / 2, y + (h / 2) * k2)
            k4 = field(s + h, y + h * k3)
            y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        ys.append(y)
    return torch.stack(ys)


def lotka_volterra(
    y0: torch.Tensor | Sequence[float] = (1.0, 1.0),
    t: torch.Tensor | Sequence[float] | None = None,
    alpha: float = 1.5,
    beta: float = 1.0,
    delta: float = 1.0,
    gamma: float = 3.0,
    *,
    max_step: float = 0.01,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """True Lotka-Volterra trajectories [len(t), *y0.shape] from ``y0`` ([..., 2], positive).

    ``t`` defaults to 201 points on [0, 10]. Integrated with RK4 (substeps <= ``max_step``) in
    float64; returned in ``dtype`` (default: ``y0``'s floating dtype, else float32).
    """
    if t is None:
        t = torch.linspace(0.0, 10.0, 201)
    alpha, beta, delta, gamma = (check_real(name, value, low=0) for name, value in
                                 (("alpha", alpha), ("beta", beta), ("delta", delta), ("gamma", gamma)))
    y0, t, out_dtype = _as_state_and_times(y0, t, dtype, device)
    if not (y0 > 0).all():
        raise ValueError("Lotka-Volterra populations in y0 must be positive (prey, predator) > 0.")

    def field(s: float, y: torch.Tensor) -> torch.Tensor:
        return lotka_volterra_field(s, y, alpha, beta, delta, gamma)

    what = (f"lotka_volterra(alpha={alpha}, beta={beta}, delta={delta}, gamma={gamma}, max_step={max_step}) "
            "(an RK4 step too large for these rates also blows up: lower max_step)")
    return _finish(_rk4_trajectory(field, y0, t, max_step), out_dtype, None, what)


def pendulum(
    y0: torch.Tensor | Sequence[float] = (1.0, 0.0),
    t: torch.Tensor | Sequence[float] | None = None,
    g_over_l: float = 1.0,
    damping: float = 0.0,
    *,
    max_step: float = 0.01,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """True pendulum trajectories [len(t), *y0.shape] from ``y0 = (theta, omega)`` ([..., 2]).

    ``t`` defaults to 201 points on [0, 10]; with ``g_over_l = 1`` small swings have period 2 pi.
    Integrated with RK4 (substeps <= ``max_step``) in float64; returned in ``dtype``.
    """
    if t is None:
        t = torch.linspace(0.0, 10.0, 201)
    g_over_l = check_real("g_over_l", g_over_l, low=0)
    damping = check_real("damping", damping, low=0, strict=False)
    y0, t, out_dtype = _as_state_and_times(y0, t, dtype, device)

    def field(s: float, y: torch.Tensor) -> torch.Tensor:
        return pendulum_field(s, y, g_over_l, damping)

    what = (f"pendulum(g_over_l={g_over_l}, damping={damping}, max_step={max_step}) "
            "(an RK4 step too large for these rates also blows up: lower max_step)")
    return _finish(_rk4_trajectory(field, y0, t, max_step), out_dtype, None, what)


# --------------------------------------------------------------------------------------------------
# irregularly sampled time series
# --------------------------------------------------------------------------------------------------


@dataclass
class TimeSeries:
    """Irregularly sampled trajectories of the damped spiral dy/dt = A y, A = [[-d, -w], [w, -d]].

    Every series shares the dynamics (decay ``d``, angular frequency ``w``) and starts from its own
    ``y0`` at t = 0. ``times`` [n_series, n_points] are strictly increasing per series, ``values``
    [n_series, n_points, 2] are the noisy observations and ``clean`` the exact states at those times.
    ``dense(t)`` evaluates the exact trajectories anywhere (the ground truth for inter- and
    extrapolation).
    """

    times: torch.Tensor
    values: torch.Tensor
    clean: torch.Tensor
    y0: torch.Tensor
    decay: float
    frequency: float
    noise: float

    def dense(self, t: torch.Tensor | Sequence[float]) -> torch.Tensor:
        """Exact states at times ``t``: [m] (shared by all series) or [n_series, m] -> [n_series, m, 2]."""
        t = _as_numbers("t", t).to(dtype=self.y0.dtype, device=self.y0.device)
        if t.ndim == 1:
            t = t.unsqueeze(0).expand(self.y0.shape[0], -1)
        if t.ndim != 2 or t.shape[0] != self.y0.shape[0]:
            raise ValueError(
                f"t must be [m] or [n_series={self.y0.shape[0]}, m], got shape {tuple(t.shape)}."
            )
        if not torch.isfinite(t).all():
            raise ValueError("t contains NaN or infinite times; pass finite times.")
        states = _spiral_closed_form(self.y0, t, self.decay, self.frequency)
        if not torch.isfinite(states).all():
            raise ValueError(f"the states overflow at these times (decay={self.decay} makes exp(-decay t) huge "
                             "for t far below 0); ask for times closer to the observation window.")
        return states

    def field(self, t: torch.Tensor | float, y: torch.Tensor) -> torch.Tensor:
        """The true vector field A y, for [..., 2] states (handy to compare with a learned one)."""
        d, w = self.decay, self.frequency
        return torch.stack([-d * y[..., 0] - w * y[..., 1], w * y[..., 0] - d * y[..., 1]], dim=-1)


def _spiral_closed_form(y0: torch.Tensor, t: torch.Tensor, decay: float, frequency: float) -> torch.Tensor:
    """exp(-d t) R(w t) y0 for y0 [n, 2] and t [n, m] -> [n, m, 2]."""
    scale = torch.exp(-decay * t)
    c, s = torch.cos(frequency * t), torch.sin(frequency * t)
    a, b = y0[:, :1], y0[:, 1:]
    return torch.stack([scale * (c * a - s * b), scale * (s * a + c * b)], dim=-1)


def irregular_time_series(
    n_series: int = 100,
    n_points: int = 50,
    t_max: float = 10.0,
    noise: float = 0.05,
    seed: int = 0,
    *,
    decay: float = 0.1,
    frequency: float = 1.0,
    radius_range: tuple[float, float] = (0.5, 1.5),
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> TimeSeries:
    """Noisy observations of a damped spiral at random, irregular times in (0, t_max).

    Each series starts at t = 0 from a random angle and a radius uniform in ``radius_range``. Its
    observation times are Poisson-like (exponential gaps plus a small floor, rescaled to the window),
    so they are sorted and strictly increasing; the noise is Gaussian with std ``noise``.
    """
    n_series = _check_count("n_series", n_series)
    n_points = _check_count("n_points", n_points)
    noise = _check_noise(noise)
    t_max = check_real("t_max", t_max, low=0)
    decay = check_real("decay", decay, low=0, strict=False)
    frequency = check_real("frequency", frequency)
    r_lo, r_hi = _check_pair("radius_range", radius_range)
    if not 0 < r_lo <= r_hi:
        raise ValueError(f"radius_range must satisfy 0 < low <= high, got {radius_range}.")
    dtype, device = _check_dtype_device(dtype, device)
    gen = _generator(seed)
    f64 = torch.float64
    angle = 2 * math.pi * torch.rand(n_series, generator=gen, dtype=f64)
    radius = r_lo + (r_hi - r_lo) * torch.rand(n_series, generator=gen, dtype=f64)
    y0 = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    gaps = torch.empty(n_series, n_points + 1, dtype=f64).exponential_(1.0, generator=gen) + 0.05
    times = t_max * gaps.cumsum(1)[:, :-1] / gaps.sum(1, keepdim=True)
    clean = _spiral_closed_form(y0, times, decay, frequency)
    values = clean + noise * torch.randn(clean.shape, generator=gen, dtype=f64)
    what = (f"irregular_time_series(t_max={t_max}, noise={noise}, decay={decay}, frequency={frequency}, "
            f"radius_range=({r_lo}, {r_hi}))")
    series = TimeSeries(
        times=_finish(times, dtype, device, what),
        values=_finish(values, dtype, device, what),
        clean=_finish(clean, dtype, device, what),
        y0=_finish(y0, dtype, device, what),
        decay=decay,
        frequency=frequency,
        noise=noise,
    )
    if not ((series.times > 0).all() and (series.times.diff(dim=1) > 0).all()):
        raise ValueError(f"t_max={t_max} is too small to give {n_points} distinct, increasing times in "
                         f"{series.times.dtype}; use a larger t_max (or dtype=torch.float64).")
    return series


# --------------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------------

_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a NumPy array in native byte order.

    Format: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions, then each
    dimension as a big-endian uint32, then the data, big-endian, row-major.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path} looks gzip-compressed but cannot be decompressed ({err}); "
                             "download it again.") from None
    if len(raw) < 4:
        raise ValueError(
            f"{path} is not an IDX file: {len(raw)} bytes, shorter than the 4-byte magic number."
        )
    zero, code, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in _IDX_TYPES or ndim == 0:
        raise ValueError(
            f"{path} is not an IDX file: bad magic number 0x{raw[:4].hex()} (expected 0x0000TTNN with "
            f"type TT in {{{', '.join(f'{c:02x}' for c in _IDX_TYPES)}}} and NN >= 1 dimensions)."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated IDX header ({len(raw)} bytes, need {header} for {ndim} dimensions)."
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_TYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX size mismatch: the header says shape {shape} ({expected} bytes of data) but "
            f"the file holds {len(raw) - header} bytes; the file is truncated or corrupt."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray | torch.Tensor) -> Path:
    """Write ``array`` (integers in 0..255, any shape) as a uint8 IDX file; gzip it when the name
    ends in ``.gz``. Returns the path. Handy to make small MNIST-like files."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"an IDX file needs 1 to 255 dimensions, got an array of shape {array.shape}.")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"write_idx writes uint8 data; got dtype {array.dtype}. Convert e.g. "
                            "with (x * 255).round().astype(np.uint8).")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"write_idx writes uint8 data; values must lie in 0..255, got "
                             f"[{array.min()}, {array.max()}].")
    data = np.ascontiguousarray(array, dtype=np.uint8)
    blob = bytes([0, 0, 0x08, data.ndim]) + struct.pack(f">{data.ndim}I", *data.shape) + data.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        blob = gzip.compress(blob, mtime=0)
    path.write_bytes(blob)
    return path


# --------------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------------

_SUBSET_FILE = "mnist_5k.npz"
_DEFAULT_CACHE = Path.home() / ".cache" / "nodecourse"


@dataclass
class MNISTData:
    """MNIST digits: ``images`` float32 in [0, 1], [n, 1, 28, 28] (or [n, 784] when flattened),
    ``labels`` int64 [n], ``source`` one of ``"idx"``, ``"torchvision"``, ``"subset"``, and
    ``description``, the one-line account of where the digits came from."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    description: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def dataset(self) -> torch.utils.data.TensorDataset:
        """A ``TensorDataset`` of (image, label) pairs for a ``DataLoader``."""
        return torch.utils.data.TensorDataset(self.images, self.labels)


def _idx_names(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _data_folder(root: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The folder to search: ``root``, else ``$NODECOURSE_DATA``, else the default cache if it exists."""
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a folder path (a str or pathlib.Path), got {type(root).__name__} "
                            f"{root!r}.")
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise ValueError(f"root={str(root)!r} is not a directory; pass the folder that holds the "
                             "MNIST IDX files, or root=None.")
        return folder, f"root {folder}"
    env = os.environ.get("NODECOURSE_DATA", "").strip()
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            raise ValueError(f"NODECOURSE_DATA={env!r} is not a directory; point it at the folder that "
                             "holds the MNIST IDX files, or unset it.")
        return folder, f"NODECOURSE_DATA={folder}"
    return (_DEFAULT_CACHE if _DEFAULT_CACHE.is_dir() else None), f"{_DEFAULT_CACHE}"


def _find_idx_pair(folder: Path, train: bool) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files in ``folder`` or ``folder/MNIST/raw``, plain or .gz, if any."""
    image_name, label_name = _idx_names(train)

    def first_file(where: Path, name: str) -> Path | None:
        return next((where / f"{name}{s}" for s in ("", ".gz") if (where / f"{name}{s}").is_file()), None)

    for where in (folder, folder / "MNIST" / "raw"):
        images = first_file(where, image_name)
        if images is None:
            continue
        labels = first_file(where, label_name)
        if labels is None:
            raise ValueError(f"found {images} but no {label_name}[.gz] beside it; put both MNIST files "
                             "in the same folder.")
        return images, labels
    return None


MNIST_IMAGE_SIZE = (28, 28)
_MNIST_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # unsigned bytes; 3 and 1 dimensions


def _read_mnist_idx(path: Path, kind: str) -> np.ndarray:
    """Read an MNIST IDX file and check its magic number: unsigned bytes, [n, 28, 28] images or [n] labels."""
    array = read_idx(path)
    ndim = _MNIST_MAGIC[kind] & 0xFF
    if array.dtype != np.uint8 or array.ndim != ndim:
        shape = "[n, height, width] = [n, 28, 28]" if kind == "images" else "[n]"
        raise ValueError(
            f"{path}: wrong magic number for MNIST {kind}: MNIST {kind} must be {shape} unsigned bytes (magic "
            f"number 0x{_MNIST_MAGIC[kind]:08x}), got {array.dtype} data of shape {array.shape}; is this the "
            f"{kind} file of MNIST?"
        )
    return array


def _check_mnist(images: np.ndarray, labels: np.ndarray, image_source: str, label_source: str) -> None:
    """Digits as MNIST has them: [n, 28, 28] images, n >= 1 labels in 0..9, one label per image."""
    if images.ndim != 3:
        raise ValueError(f"{image_source}: MNIST images must be [n, height, width], got shape {images.shape}.")
    if labels.ndim != 1:
        raise ValueError(f"{label_source}: MNIST labels must be [n], got shape {labels.shape}.")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels ({image_source} and "
                         f"{label_source}); the two files do not belong together.")
    if images.shape[0] == 0:
        raise ValueError(f"{image_source} holds no images; the file is empty or cut short, download it again.")
    if images.shape[1:] != MNIST_IMAGE_SIZE:
        raise ValueError(f"{image_source}: MNIST images are 28x28 pixels, got {images.shape[1]}x{images.shape[2]}; "
                         "this is not an MNIST images file (or it was resized).")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{label_source}: MNIST labels must be integers, got {labels.dtype}.")
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise ValueError(f"{label_source}: MNIST labels are digits 0-9, found {labels[bad[0]]} at index {bad[0]} "
                         f"({bad.size} bad labels in all); the labels file is corrupt or not MNIST's.")


def _torchvision_mnist(folder: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Download (or reuse) MNIST with torchvision into ``folder``; raises on any failure."""
    from torchvision import datasets  # optional dependency

    folder.mkdir(parents=True, exist_ok=True)
    ds = datasets.MNIST(root=str(folder), train=train, download=True)
    return np.asarray(ds.data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64)


def _shipped_subset() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-digit subset shipped inside the package (500 per class, MNIST training set)."""
    try:
        blob = (importlib.resources.files("nodecourse") / "data_files" / _SUBSET_FILE).read_bytes()
    except (OSError, TypeError, ValueError, ModuleNotFoundError):
        blob = (Path(__file__).parent / "data_files" / _SUBSET_FILE).read_bytes()
    with np.load(io.BytesIO(blob)) as npz:
        return npz["images"], npz["labels"]


def _to_tensors(
    images: np.ndarray, labels: np.ndarray, flatten: bool, device: torch.device | str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).to(torch.float32).div_(255.0)
    x = x.reshape(x.shape[0], -1) if flatten else x.unsqueeze(1)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return x.to(device or "cpu"), y.to(device or "cpu")


def load_mnist(
    root: str | os.PathLike | None = None,
    train: bool = True,
    flatten: bool = False,
    download: bool = True,
    verbose: bool = True,
    *,
    device: torch.device | str | None = None,
) -> MNISTData:
    """Load MNIST from the first source that works, and say which one it was.

    1. IDX files on disk (``train-images-idx3-ubyte``/``train-labels-idx1-ubyte``, or ``t10k-...``
       for ``train=False``; plain or ``.gz``; directly in the folder or in ``MNIST/raw/``, the
       torchvision layout). The folder is ``root``, else ``$NODECOURSE_DATA``, else
       ``~/.cache/nodecourse`` when it exists.
    2. torchvision's downloader into that folder, only if torchvision is installed, ``download`` is
       true and fast mode is off (in fast mode the network is never touched). Any failure falls
       through to 3; the printed line says why.
    3. The subset shipped with the package: 5,000 real digits, 500 per class, from the MNIST
       training set. It has no separate test set: ``train=False`` returns the same 5,000 digits, so
       split them with :func:`split_holdout` (the course trains on 4,000 and tests on 1,000).

    Returns an :class:`MNISTData` (images float32 in [0, 1], [n, 1, 28, 28] or [n, 784] when
    ``flatten``; labels int64 [n]; ``source`` in {"idx", "torchvision", "subset"}). Prints its
    ``description`` when ``verbose``.

    MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, licensed CC BY-SA 3.0.
    """
    train, flatten = check_flag("train", train), check_flag("flatten", flatten)
    download, verbose = check_flag("download", download), check_flag("verbose", verbose)
    device = None if device is None else _config.device(device)
    split = "training" if train else "test"
    folder, folder_text = _data_folder(root)
    reasons: list[str] = []

    if folder is not None:
        pair = _find_idx_pair(folder, train)
        if pair is not None:
            images, labels = _read_mnist_idx(pair[0], "images"), _read_mnist_idx(pair[1], "labels")
            _check_mnist(images, labels, str(pair[0]), str(pair[1]))
            description = f"MNIST: {images.shape[0]:,} {split} digits from IDX files in {pair[0].parent}"
            return _report(images, labels, "idx", description, flatten, device, verbose)
        reasons.append(f"no IDX files found under {folder_text}")
    else:
        reasons.append("no data folder given: pass root= or set NODECOURSE_DATA")

    if not download:
        reasons.append("download=False")
    elif _config.FAST or _config.fast_mode():
        reasons.append("fast mode: no download")
    else:
        target = folder if folder is not None else _DEFAULT_CACHE
        try:
            images, labels = _torchvision_mnist(target, train)
            _check_mnist(images, labels, "torchvision's MNIST images", "torchvision's MNIST labels")
        except ImportError:
            reasons.append("torchvision not installed")
        except Exception as err:  # noqa: BLE001 - any download problem falls through to the subset
            reasons.append(f"torchvision download failed: {type(err).__name__}: {str(err)[:80]}")
        else:
            description = f"MNIST: {images.shape[0]:,} {split} digits downloaded by torchvision into {target}"
            return _report(images, labels, "torchvision", description, flatten, device, verbose)

    images, labels = _shipped_subset()
    note = "" if train else "; it has no separate test set, split it with split_holdout"
    description = (f"MNIST: {images.shape[0]:,} digits from the subset shipped with nodecourse "
                   f"({'; '.join(reasons)}{note})")
    return _report(images, labels, "subset", description, flatten, device, verbose)


def _report(
    images: np.ndarray,
    labels: np.ndarray,
    source: str,
    description: str,
    flatten: bool,
    device: torch.device | str | None,
    verbose: bool,
) -> MNISTData:
    if verbose:
        print(description)
    x, y = _to_tensors(images, labels, flatten, device)
    return MNISTData(images=x, labels=y, source=source, description=description)


def split_holdout(data: MNISTData, n_test: int = 1000, seed: int = 0) -> tuple[MNISTData, MNISTData]:
    """Split ``data`` into (train, test) with ``n_test`` held out, stratified by label.

    Each class gives its share of ``n_test`` (largest-remainder rounding), drawn at random with
    ``seed``; both parts keep the original order. On the shipped subset, ``n_test=1000`` leaves
    4,000 for training and takes 100 of each digit for testing.
    """
    if not isinstance(data, MNISTData):
        raise TypeError(f"split_holdout splits an MNISTData (from load_mnist), got {type(data).__name__}.")
    n = len(data)
    n_test = _check_count("n_test", n_test)
    if n_test >= n:
        raise ValueError(f"n_test must be smaller than the {n} samples, got {n_test}; keep some to train on.")
    gen = _generator(seed)
    labels = data.labels.cpu()
    classes, counts = torch.unique(labels, return_counts=True)
    quota = counts.double() * n_test / n
    take = quota.floor().long()
    short = n_test - int(take.sum())
    if short:
        order = sorted(range(len(classes)), key=lambda k: (-(quota[k] - take[k]).item(), k))
        for k in order[:short]:
            take[k] += 1
    test_mask = torch.zeros(n, dtype=torch.bool)
    for c, k in zip(classes.tolist(), take.tolist()):
        idx = (labels == c).nonzero().squeeze(1)
        test_mask[idx[torch.randperm(idx.numel(), generator=gen)[:k]]] = True
    test_mask = test_mask.to(data.labels.device)

    def part(mask: torch.Tensor, name: str) -> MNISTData:
        return MNISTData(images=data.images[mask], labels=data.labels[mask], source=data.source,
                         description=f"{data.description} [{name}: {int(mask.sum()):,}]")

    return part(~test_mask, "train"), part(test_mask, "held out")
