"""Models for irregularly sampled time series: a GRU encoder, the latent ODE and a GRU baseline.

The latent ODE (Chen et al. 2018, Sec. 5; Rubanova et al. 2019) reads a series' irregular
observations with an encoder, turns them into a latent state ``z0`` at t = 0, solves a learned ODE
``dz/dt = f(z)`` in latent space to any query times and decodes each latent state to an
observation. Here the latent state is deterministic (an autoencoder, not the paper's VAE).
The baseline replaces the ODE solve by a GRU cell that steps from one query time to the next and
takes the time gap as input: the discrete-time counterpart.

Batches of series are padded: ``times [B, N]``, ``values [B, N, D]`` and a boolean ``mask [B, N]``
that marks the real entries. Observed times of a series are sorted (strictly increasing) and
measured from the series' start, t = 0. Padded entries may hold anything; nothing reads them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nodecourse._validation import check_count, check_input

from ._compat import renamed
from .gradients import Adjoint, check_adjoint, solve_model
from .mlp import MLP
from .ode_block import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL
from .odefunc import ODEFunc

__all__ = [
    "pad_batch",
    "time_gaps",
    "union_times",
    "own_times",
    "masked_mse",
    "GRUEncoder",
    "LatentODE",
    "RNNBaseline",
]


# --------------------------------------------------------------------------------------------------
# batches of irregular series
# --------------------------------------------------------------------------------------------------


def pad_batch(
    times: Sequence[torch.Tensor], values: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack series of different lengths into one padded batch.

    ``times[i]`` is ``[n_i]`` and ``values[i]`` is ``[n_i, D]``. Returns ``(times [B, N],
    values [B, N, D], mask [B, N] bool)`` with ``N = max n_i``: series i fills the first ``n_i``
    entries of row i, the rest is zero and ``mask`` is False there.
    """
    if len(times) == 0 or len(times) != len(values):
        raise ValueError(
            f"pad_batch needs one times tensor per values tensor and at least one series, got "
            f"{len(times)} times and {len(values)} values."
        )
    for i, (t, v) in enumerate(zip(times, values)):
        if not (torch.is_tensor(t) and torch.is_tensor(v)):
            raise TypeError(f"series {i}: times and values must be tensors, got {type(t).__name__} and "
                            f"{type(v).__name__}.")
        if t.dim() != 1 or v.dim() != 2 or v.shape[0] != t.shape[0]:
            raise ValueError(
                f"series {i}: times must be [n] and values [n, D] with the same n, got {tuple(t.shape)} "
                f"and {tuple(v.shape)}."
            )
        if v.shape[1] != values[0].shape[1]:
            raise ValueError(f"series {i} has {v.shape[1]} channels but series 0 has {values[0].shape[1]}; "
                             "every series must observe the same quantities.")
    ref = values[0]
    n_max = max(int(t.shape[0]) for t in times)
    batch = len(times)
    out_t = torch.zeros(batch, n_max, dtype=times[0].dtype, device=ref.device)
    out_v = torch.zeros(batch, n_max, ref.shape[1], dtype=ref.dtype, device=ref.device)
    mask = torch.zeros(batch, n_max, dtype=torch.bool, device=ref.device)
    for i, (t, v) in enumerate(zip(times, values)):
        n = t.shape[0]
        out_t[i, :n] = t
        out_v[i, :n] = v
        mask[i, :n] = True
    return out_t, out_v, mask


def _check_times_mask(times: torch.Tensor, mask: torch.Tensor | None, what: str = "times") -> torch.Tensor:
    """Check a padded batch of times ``[B, N]`` and return its mask (all True when ``mask`` is None)."""
    if not torch.is_tensor(times) or not times.is_floating_point() or times.dim() != 2:
        shape = tuple(times.shape) if torch.is_tensor(times) else type(times).__name__
        raise ValueError(f"{what} must be a floating tensor [batch, n_points], got {shape}; "
                         "stack a batch of series with pad_batch.")
    if mask is None:
        return torch.ones(times.shape, dtype=torch.bool, device=times.device)
    if not torch.is_tensor(mask) or mask.dtype != torch.bool or mask.shape != times.shape:
        shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
        raise ValueError(f"the mask of {what} must be a bool tensor shaped like it, {tuple(times.shape)}, "
                         f"got {shape}.")
    return mask


def time_gaps(times: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The time since the previous real entry of the same series: ``[B, N] -> [B, N]``.

    The first real entry's gap is measured from t = 0 (where the latent state lives); padded
    entries get 0. Raises ValueError when a series' real times are negative or not increasing.
    """
    mask = _check_times_mask(times, mask)
    t = torch.where(mask, times, torch.zeros_like(times))
    if bool((t < 0).any()):
        raise ValueError("observation times must be >= 0 (measured from the series' start at t = 0).")
    previous = torch.cummax(t, dim=1).values  # times increase, so the running max is the last real time
    previous = torch.cat([torch.zeros_like(t[:, :1]), previous[:, :-1]], dim=1)
    gaps = torch.where(mask, t - previous, torch.zeros_like(t))
    if bool((gaps < 0).any()):
        raise ValueError("the real times of each series must be sorted in increasing order; sort each series "
                         "(and its values) by time first.")
    return gaps


def union_times(
    times: torch.Tensor, mask: torch.Tensor | None = None, t0: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sorted distinct times of a batch, starting at ``t0``, and where each entry sits in it.

    Returns ``(grid [U], index [B, N] long)``: ``grid`` holds ``t0`` and every real time once, in
    increasing order, and ``grid[index] == times`` at every real entry (``index`` is 0, i.e. ``t0``,
    at padded ones). One ODE solve on ``grid`` then serves every series of the batch.
    """
    mask = _check_times_mask(times, mask)
    real = times[mask]
    if real.numel() and bool((real < t0).any()):
        raise ValueError(f"every real time must be >= t0 = {t0}; the latent state lives at t0.")
    start = torch.full((1,), float(t0), dtype=times.dtype, device=times.device)
    grid, inverse = torch.unique(torch.cat([start, real]), sorted=True, return_inverse=True)
    index = torch.zeros(times.shape, dtype=torch.long, device=times.device)
    index[mask] = inverse[1:]
    return grid, index


def own_times(times: torch.Tensor, mask: torch.Tensor | None = None, t0: float = 0.0,
              pad_gap: float = 1e-3) -> torch.Tensor:
    """Each series' own output times for a per-sample solve: ``[B, 1 + N]``, row ``b`` holding ``t0`` and
    then its times, so ``solve(..., t=own_times(...), options={"per_sample": True}).ys[1 + k, b]`` is
    series ``b`` at ``times[b, k]``. Padded entries, which a solve still needs as increasing times, sit
    ``pad_gap`` apart after the series' last real time (their states are masked out like their values).
    """
    mask = _check_times_mask(times, mask)
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("own_times needs each row's real entries first and its padding after them, as "
                         "pad_batch makes them.")
    if bool((times[mask] <= t0).any()):
        raise ValueError(f"every real time must be > t0 = {t0}: each row starts at t0, where the state lives.")
    last = torch.where(mask, times, torch.full_like(times, float(t0))).amax(dim=1, keepdim=True)
    padding = last + pad_gap * torch.cumsum((~mask).to(times.dtype), dim=1)
    start = torch.full_like(times[:, :1], float(t0))
    return torch.cat([start, torch.where(mask, times, padding)], dim=1)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real entries only: ``pred, target [B, N, D]``, ``mask [B, N]``.

    Every real entry counts ``D`` squared errors; padded entries (whatever they hold, NaN included)
    count nothing. Returns a 0-d tensor; raises ValueError when no entry is real.
    """
    if pred.shape != target.shape or pred.dim() != 3 or mask.shape != pred.shape[:2]:
        raise ValueError(f"need pred and target [B, N, D] and mask [B, N], got {tuple(pred.shape)}, "
                         f"{tuple(target.shape)} and {tuple(mask.shape)}.")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}; use mask.bool().")
    count = int(mask.sum())
    if count == 0:
        raise ValueError("the mask selects no entry: there is nothing to average.")
    diff = torch.where(mask.unsqueeze(-1), pred - target, torch.zeros_like(pred))
    return (diff**2).sum() / (count * pred.shape[-1])


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------


def _decoder(state_size: int, hidden_size: int | None, input_size: int) -> nn.Module:
    return nn.Linear(state_size, input_size) if hidden_size is None else MLP([state_size, hidden_size, input_size])


def _check_observations(times: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None,
                        input_size: int) -> torch.Tensor:
    mask = _check_times_mask(times, mask, "obs_times")
    if not torch.is_tensor(values) or values.shape != (*times.shape, input_size):
        shape = tuple(values.shape) if torch.is_tensor(values) else type(values).__name__
        raise ValueError(f"obs_values must be [batch, n_points, {input_size}] to match obs_times "
                         f"{tuple(times.shape)}, got {shape}.")
    if times.device != values.device or mask.device != values.device:
        raise ValueError(f"obs_times, obs_values and obs_mask must be on one device, got {times.device}, "
                         f"{values.device} and {mask.device}; move them with .to(device).")
    return mask


@renamed({"obs_dim": "input_size", "hidden": "hidden_size", "out_dim": "output_size"})
class GRUEncoder(nn.Module):
    """Reads a series' observations backwards in time and returns one vector per series.

    Input at each real entry: ``[value, gap]`` with the gap to the previous real time (the first one
    to t = 0), so the GRU knows how far apart the samples are; padded entries leave the state as it
    is. Running backwards, the last entry read is the earliest, next to t = 0, where the output
    (a latent initial state) lives. A series without real entries gets the encoding of the empty
    sequence. Shapes: ``times [B, N]``, ``values [B, N, input_size]``,
    ``mask [B, N]`` -> ``[B, output_size]``; the GRU has ``hidden_size`` units, as in ``nn.GRU``.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.input_size = check_count("input_size", input_size)
        self.hidden_size = check_count("hidden_size", hidden_size)
        self.output_size = check_count("output_size", output_size)
        self.cell = nn.GRUCell(self.input_size + 1, self.hidden_size)
        self.out = nn.Linear(self.hidden_size, self.output_size)

    def forward(self, times: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = _check_observations(times, values, mask, self.input_size)
        check_input("GRUEncoder", values, self.cell.weight_ih)
        gaps = time_gaps(times, mask).to(values.dtype)
        clean = torch.where(mask.unsqueeze(-1), values, torch.zeros_like(values))  # padding may hold NaN
        inputs = torch.cat([clean, gaps.unsqueeze(-1)], dim=-1)
        h = values.new_zeros(values.shape[0], self.hidden_size)
        for k in reversed(range(values.shape[1])):
            h = torch.where(mask[:, k : k + 1], self.cell(inputs[:, k], h), h)
        return self.out(h)


_OLD = {"obs_dim": "input_size", "encoder_hidden": "encoder_hidden_size", "decoder_hidden": "decoder_hidden_size"}


@renamed({**_OLD, "latent_dim": "state_size", "ode_hidden": "hidden_size"})
class LatentODE(nn.Module):
    """Encoder, latent ODE, decoder: observations at some times -> predictions at any times.

    ``input_size`` is the number of observed channels (the output has the same), ``state_size`` the
    width of the latent ODE state. ``z0 = GRUEncoder(obs)`` ([B, state_size], at t = 0, a GRU of
    ``encoder_hidden_size`` units); ``dz/dt = MLP([state_size, hidden_size, state_size])(z)`` solved once
    on the sorted union of all query times of the batch (:func:`union_times`) and gathered per series;
    ``x(t) = decoder(z(t))`` (linear, or an MLP with ``decoder_hidden_size`` units). Shapes:
    ``forward(obs_times [B, N], obs_values [B, N, D], obs_mask [B, N], query_times [B, M],
    query_mask [B, M]) -> [B, M, D]``. Query times may come in any order; padded queries get the
    decoded ``z0``. ``adjoint`` chooses how the solve is differentiated (:mod:`nodecourse.models.gradients`):
    ``"checkpoint"`` replays the forward steps, so the backward pass costs about one forward solve however
    many query times the union holds, where ``True``'s reverse solve restarts at every one of them.
    """

    def __init__(
        self,
        input_size: int = 2,
        state_size: int = 4,
        encoder_hidden_size: int = 32,
        hidden_size: int = 32,
        decoder_hidden_size: int | None = None,
        method: str = DEFAULT_METHOD,
        rtol: float = DEFAULT_RTOL,
        atol: float = DEFAULT_ATOL,
        options: dict[str, Any] | None = None,
        adjoint: Adjoint = False,
    ) -> None:
        super().__init__()
        self.input_size = check_count("input_size", input_size)
        self.state_size = check_count("state_size", state_size)
        self.hidden_size = check_count("hidden_size", hidden_size)
        self.adjoint = check_adjoint(adjoint, method)
        self.encoder = GRUEncoder(self.input_size, check_count("encoder_hidden_size", encoder_hidden_size),
                                  self.state_size)
        self.dynamics = ODEFunc(MLP([self.state_size, self.hidden_size, self.state_size]))
        self.decoder = _decoder(self.state_size, decoder_hidden_size, self.input_size)
        self.method, self.rtol, self.atol = method, rtol, atol
        self.options = dict(options) if options is not None else None
        self.nfe: int = 0

    def encode(self, obs_times: torch.Tensor, obs_values: torch.Tensor,
               obs_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The latent initial states ``z0 [B, state_size]`` at t = 0."""
        return self.encoder(obs_times, obs_values, obs_mask)

    def latent_path(self, z0: torch.Tensor, query_times: torch.Tensor,
                    query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``z(t)`` at every query time, ``[B, M, state_size]``, from one solve on the union of the times."""
        if z0.dim() != 2 or z0.shape[1] != self.state_size or query_times.dim() != 2 \
                or query_times.shape[0] != z0.shape[0]:
            raise ValueError(f"need z0 [B, {self.state_size}] and query_times [B, M] with the same B, got "
                             f"{tuple(z0.shape)} and {tuple(query_times.shape)}.")
        grid, index = union_times(query_times.to(z0.dtype), query_mask)
        before = self.dynamics.nfe
        if grid.numel() == 1:  # every query sits at t = 0
            path = z0.unsqueeze(0)
        else:
            path = solve_model(self.dynamics, z0, grid, self.adjoint, rtol=self.rtol, atol=self.atol,
                               method=self.method, options=self.options)  # [U, B, L]
        self.nfe = self.dynamics.nfe - before
        path = path.transpose(0, 1)  # [B, U, L]
        return torch.gather(path, 1, index.unsqueeze(-1).expand(-1, -1, self.state_size))

    def forward(self, obs_times: torch.Tensor, obs_values: torch.Tensor, obs_mask: torch.Tensor | None,
                query_times: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        z0 = self.encode(obs_times, obs_values, obs_mask)
        return self.decoder(self.latent_path(z0, query_times, query_mask))


@renamed({**_OLD, "state_dim": "state_size"})
class RNNBaseline(nn.Module):
    """The same encoder, then a GRU cell that steps from query to query with the time gap as input.

    ``h0 = GRUEncoder(obs)`` ([B, state_size]); for each query time in increasing order
    ``h <- GRUCell(gap, h)`` with ``gap`` the time since the previous query (the first from t = 0);
    ``x = decoder(h)``. A learned discrete map in place of the ODE's flow. Query times must be sorted
    per series. Shapes as :class:`LatentODE`: ``-> [B, M, D]``.
    """

    def __init__(self, input_size: int = 2, state_size: int = 16, encoder_hidden_size: int = 32,
                 decoder_hidden_size: int | None = None) -> None:
        super().__init__()
        self.input_size = check_count("input_size", input_size)
        self.state_size = check_count("state_size", state_size)
        self.encoder = GRUEncoder(self.input_size, check_count("encoder_hidden_size", encoder_hidden_size),
                                  self.state_size)
        self.cell = nn.GRUCell(1, self.state_size)
        self.decoder = _decoder(self.state_size, decoder_hidden_size, self.input_size)

    def forward(self, obs_times: torch.Tensor, obs_values: torch.Tensor, obs_mask: torch.Tensor | None,
                query_times: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(obs_times, obs_values, obs_mask)
        query_mask = _check_times_mask(query_times, query_mask, "query_times")
        if query_times.shape[0] != h.shape[0]:
            raise ValueError(f"query_times has {query_times.shape[0]} series but the observations have "
                             f"{h.shape[0]}.")
        gaps = time_gaps(query_times, query_mask).to(h.dtype).unsqueeze(-1)
        states = []
        for m in range(query_times.shape[1]):
            h = torch.where(query_mask[:, m : m + 1], self.cell(gaps[:, m], h), h)
            states.append(h)
        if not states:
            return h.new_zeros(h.shape[0], 0, self.input_size)
        return self.decoder(torch.stack(states, dim=1))
