"""Checkers for notebook 09 (time series): padding irregular series into a batch, a masked MSE, the
union of query times with gather indices, and a latent ODE's prediction at per-series times from one
solve.

Each ``check_*`` runs the learner's function against the reference on several cases, prints a report
and returns the function to go on with (the learner's when every case passed, else the reference).
The references are public so a notebook can also call them directly. Checkers leave the global random
state as they found it.
"""
from __future__ import annotations

import math

from typing import Any, Callable, Optional

import torch
from torch import nn

from nodecourse.models import MLP, ODEFunc
from nodecourse.models import latent as _latent
from nodecourse.solvers import odeint

from .checking import Case, close, require_callable, run_check
from .checking import answers_for, check_function, check_prediction, keep_random_state, one_thread, prediction

__all__ = ["show_answer", "last_observed", "buggy_last_observed", "check_last_observed", "check_union_size_prediction", 
    "pad_batch",
    "masked_mse",
    "union_times",
    "predict_at_times",
    "check_pad_batch",
    "check_masked_mse",
    "check_union_times",
    "check_predict_at_times",
]


# --------------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------------


def pad_batch(times: list[torch.Tensor], values: list[torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Series ``times[i] [n_i]``, ``values[i] [n_i, D]`` -> ``(times [B, N], values [B, N, D], mask [B, N])``.

    Left-aligned, zero-padded, ``N = max n_i``, ``mask`` bool and True at the real entries.
    """
    return _latent.pad_batch(times, values)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The MSE over real entries only (``pred, target [B, N, D]``, ``mask [B, N]``), a 0-d tensor;
    padded entries may hold NaN and must not matter."""
    return _latent.masked_mse(pred, target, mask)


def union_times(times: torch.Tensor, mask: torch.Tensor, t0: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grid [U], index [B, N])``: ``t0`` and the real times, sorted and distinct, and each real
    entry's position in ``grid`` (0 at padded entries)."""
    return _latent.union_times(times, mask, t0)


def predict_at_times(dynamics: nn.Module, decoder: nn.Module, z0: torch.Tensor, query_times: torch.Tensor,
                     query_mask: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-8) -> torch.Tensor:
    """Decoded latent states at per-series query times, ``[B, M, D]``, from ONE Dopri5 solve.

    ``z0 [B, L]`` lives at t = 0; ``dz/dt = dynamics(t, z)``; the solve runs on the union of the
    real query times (with 0) and each series' states are gathered from it.
    """
    grid, index = _latent.union_times(query_times, query_mask)
    path = odeint(dynamics, z0, grid, rtol=rtol, atol=atol, method="dopri5")            # [U, B, L]
    states = path.transpose(0, 1).gather(1, index.unsqueeze(-1).expand(-1, -1, z0.shape[1]))  # [B, M, L]
    return decoder(states)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _series(lengths: tuple[int, ...], dim: int = 2, dtype: torch.dtype = torch.float32, seed: int = 0
            ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Series of the given lengths: sorted positive times [n] and random values [n, dim]."""
    g = torch.Generator().manual_seed(seed)
    times = [(torch.sort(torch.rand(n, generator=g, dtype=torch.float64)).values * 8 + 0.1).to(dtype)
             for n in lengths]
    values = [torch.randn(n, dim, generator=g, dtype=torch.float64).to(dtype) for n in lengths]
    return times, values


def _copying(fn: Callable) -> Callable:
    """Call ``fn`` on copies of the tensor arguments, so a learner's in-place edit cannot change a case."""
    def clone(arg: Any) -> Any:
        if torch.is_tensor(arg):
            return arg.clone()
        if isinstance(arg, list):
            return [clone(a) for a in arg]
        return arg

    return lambda *args, **kwargs: fn(*(clone(a) for a in args), **{k: clone(v) for k, v in kwargs.items()})


# --------------------------------------------------------------------------------------------------
# exercise 1: pad a batch
# --------------------------------------------------------------------------------------------------


def _same_padded(expected: tuple, got: Any) -> Optional[str]:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return f"expected a triple (times, values, mask), got {type(got).__name__}"
    t, v, m = got
    if not all(torch.is_tensor(x) for x in (t, v, m)):
        return "times, values and mask must all be tensors"
    if m.dtype != torch.bool:
        return f"the mask must be a bool tensor (True at real entries), got dtype {m.dtype}"
    if m.shape != expected[2].shape:
        return f"the mask has shape {tuple(m.shape)}, expected {tuple(expected[2].shape)} ([B, longest series])"
    if not torch.equal(m, expected[2]):
        rows = [i for i in range(m.shape[0]) if not torch.equal(m[i], expected[2][i])]
        return (f"the mask is wrong in row(s) {rows}: series i fills the FIRST n_i entries of row i "
                "(left-aligned), the rest is padding")
    for name, e, g in (("times", expected[0], t), ("values", expected[1], v)):
        if g.dtype != e.dtype:
            return f"{name} has dtype {g.dtype}, expected the input's {e.dtype}"
        why = close(e, g, rtol=0, atol=0)
        if why:
            return f"{name}: {why} (real entries copied as they are, zeros in the padding)"
    return None


def check_pad_batch(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 1: stack series of different lengths into a left-aligned, zero-padded batch with a mask."""
    require_callable("check_pad_batch", fn)
    cases = [
        Case("three series of lengths 3, 1, 4", _series((3, 1, 4))),
        Case("one series", _series((5,), seed=1)),
        Case("equal lengths: no padding at all", _series((2, 2, 2), seed=2)),
        Case("the longest series first, 3 channels, float64", _series((6, 2, 3, 1), dim=3, dtype=torch.float64, seed=3)),
    ]
    hint = ("N = max(len(t) for t in times); start from torch.zeros(B, N), torch.zeros(B, N, D) and "
            "torch.zeros(B, N, dtype=torch.bool) (same dtypes and device as the inputs), then fill row i "
            "with [:n_i] = times[i], values[i], True.")
    ok = run_check("Exercise 1 (pad a batch)", _copying(fn), pad_batch, cases, hint, _same_padded, verbose)
    return fn if ok else pad_batch


# --------------------------------------------------------------------------------------------------
# exercise 2: the masked MSE
# --------------------------------------------------------------------------------------------------


def _mse_case(lengths: tuple[int, ...], dim: int, padding: float, dtype: torch.dtype = torch.float32,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pred, target, mask) of a padded batch whose target's padding holds ``padding``."""
    times, values = _series(lengths, dim, dtype, seed)
    _, target, mask = _latent.pad_batch(times, values)
    target = target.masked_fill(~mask.unsqueeze(-1), padding)
    g = torch.Generator().manual_seed(seed + 100)
    pred = torch.randn(target.shape, generator=g, dtype=torch.float64).to(dtype)
    return pred, target, mask


def _same_scalar(expected: torch.Tensor, got: Any) -> Optional[str]:
    if not torch.is_tensor(got):
        return f"return the loss as a tensor (so it can be backpropagated), got {type(got).__name__}"
    if got.numel() != 1:
        return f"expected one number (a 0-d tensor), got shape {tuple(got.shape)}"
    value = got.detach().reshape(())
    if torch.isnan(value):
        return ("got NaN: padded entries hold NaN here, and 0 * NaN = NaN, so multiplying by the mask is not "
                "enough; select the real entries (torch.where or boolean indexing)")
    why = close(expected.detach(), value.to(expected.dtype), rtol=1e-5, atol=1e-7)
    return None if why is None else f"{why} (average over the real entries and all D channels)"


def check_masked_mse(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 2: the mean squared error over the real entries of a padded batch."""
    require_callable("check_masked_mse", fn)
    cases = [
        Case("no padding", _mse_case((4, 4), 2, 0.0)),
        Case("padding full of zeros", _mse_case((5, 2, 3), 2, 0.0, seed=1)),
        Case("padding holding 7.0", _mse_case((5, 2, 3), 2, 7.0, seed=2)),
        Case("padding holding NaN", _mse_case((1, 4, 2), 2, float("nan"), seed=3)),
        Case("3 channels, float64", _mse_case((3, 6), 3, float("nan"), torch.float64, seed=4)),
        Case("1 channel", _mse_case((2, 5, 1), 1, 3.0, seed=5)),
    ]
    hint = ("diff = torch.where(mask.unsqueeze(-1), pred - target, torch.zeros_like(pred)); "
            "return (diff ** 2).sum() / (mask.sum() * pred.shape[-1]).")
    ok = run_check("Exercise 2 (masked MSE)", _copying(fn), masked_mse, cases, hint, _same_scalar, verbose)
    return fn if ok else masked_mse


# --------------------------------------------------------------------------------------------------
# exercise 3: the union of the query times
# --------------------------------------------------------------------------------------------------


def _union_case(kind: str) -> tuple:
    """(times, mask) or (times, mask, t0) for a case of exercise 3."""
    if kind == "shared":
        t = torch.tensor([[0.5, 1.0, 2.0], [0.5, 1.5, 2.0]])
        return t, torch.ones(2, 3, dtype=torch.bool)
    if kind == "padded":
        times, values = _series((4, 2, 3), seed=6)
        t, _, m = _latent.pad_batch(times, values)
        return t.masked_fill(~m, 99.0), m  # garbage in the padding, larger than any real time
    if kind == "zero":
        t = torch.tensor([[0.0, 0.3, 0.9], [0.2, 0.3, 0.0]])
        return t, torch.tensor([[True, True, True], [True, True, False]])
    if kind == "t0":
        t = torch.tensor([[1.0, 2.0, 3.0], [1.5, 2.0, 2.5]], dtype=torch.float64)
        return t, torch.ones(2, 3, dtype=torch.bool), 0.5
    if kind == "unsorted":  # the trick does not need sorted queries
        t = torch.tensor([[2.0, 0.5, 1.0], [1.0, 3.0, 0.25]])
        return t, torch.ones(2, 3, dtype=torch.bool)
    raise ValueError(kind)


class _UnionCase:
    """Keeps the case's inputs with the reference's answer so the comparison can index back."""

    def __init__(self, args: tuple, result: Any) -> None:
        self.args, self.result = args, result


def _union_runner(fn: Callable) -> Callable[[str], _UnionCase]:
    def run(kind: str) -> _UnionCase:
        args = _union_case(kind)
        return _UnionCase(args, fn(*(a.clone() if torch.is_tensor(a) else a for a in args)))

    return run


def _same_union(expected: _UnionCase, got: _UnionCase) -> Optional[str]:
    result = got.result
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return f"expected a pair (grid, index), got {type(result).__name__}"
    grid, index = result
    if not (torch.is_tensor(grid) and torch.is_tensor(index)):
        return "grid and index must both be tensors"
    times, mask = expected.args[0], expected.args[1]
    t0 = expected.args[2] if len(expected.args) > 2 else 0.0
    want = expected.result[0]
    if grid.dim() != 1:
        return f"grid must be 1-D, got shape {tuple(grid.shape)}"
    if grid.numel() and bool((grid[1:] <= grid[:-1]).any()):
        return "grid must be strictly increasing: sorted, each time once (torch.unique(..., sorted=True))"
    if grid.numel() == want.numel() - 1 and (grid.numel() == 0 or grid[0] != t0):
        return f"grid lacks t0 = {t0}: the latent state lives there, so the solve must start at it"
    if grid.numel() > want.numel():
        return (f"grid has {grid.numel()} times, expected {want.numel()}: did padded entries get in? Use only "
                "times[mask]")
    why = close(want, grid.to(want.dtype), rtol=0, atol=0)
    if why:
        return f"grid: {why}"
    if index.shape != times.shape or index.dtype not in (torch.int64, torch.int32):
        return f"index must be an integer tensor shaped like times, {tuple(times.shape)}, got {index.dtype} {tuple(index.shape)}"
    if bool((index < 0).any()) or bool((index >= grid.numel()).any()):
        return "index holds positions outside the grid (padded entries can point at 0, i.e. t0)"
    if not torch.equal(grid[index.long()][mask], times[mask].to(grid.dtype)):
        return "grid[index] differs from times at some real entries (return_inverse gives the positions)"
    return None


def check_union_times(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 3: the sorted distinct times of a batch with t0, and the gather index of every real entry."""
    require_callable("check_union_times", fn)
    cases = [
        Case("two series sharing times", ("shared",)),
        Case("padded batch, garbage in the padding", ("padded",)),
        Case("t0 = 0 is already a query time", ("zero",)),
        Case("t0 = 0.5, float64", ("t0",)),
        Case("queries not sorted within a series", ("unsorted",)),
    ]
    hint = ("start = torch.full((1,), t0, dtype=times.dtype); grid, inverse = torch.unique(torch.cat([start, "
            "times[mask]]), sorted=True, return_inverse=True); index = torch.zeros(times.shape, dtype=torch.long); "
            "index[mask] = inverse[1:].")
    ok = run_check("Exercise 3 (union of times)", _union_runner(fn), _union_runner(union_times), cases, hint,
                    _same_union, verbose)
    return fn if ok else union_times


# --------------------------------------------------------------------------------------------------
# exercise 4: predictions at per-series times from one solve
# --------------------------------------------------------------------------------------------------


class _Counting(nn.Module):
    """The case's dynamics, counting its evaluations."""

    def __init__(self, func: nn.Module) -> None:
        super().__init__()
        self.func = func
        self.calls = 0

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.func(t, z)


def _predict_case(kind: str) -> tuple:
    """(dynamics, decoder, z0, query_times, query_mask) of a case of exercise 4, built from a fixed seed."""
    g = torch.Generator().manual_seed({"shared": 1, "own": 2, "padded": 3, "float64": 4, "zero": 5}[kind])
    latent, batch = 3, 6
    dtype = torch.float64 if kind == "float64" else torch.float32
    dynamics = ODEFunc(MLP([latent, 16, latent]))
    decoder = nn.Linear(latent, 2)
    with torch.no_grad():
        for p in list(dynamics.parameters()) + list(decoder.parameters()):
            p.copy_(0.6 * torch.randn(p.shape, generator=g))
    dynamics, decoder = dynamics.to(dtype), decoder.to(dtype)
    z0 = torch.randn(batch, latent, generator=g, dtype=torch.float64).to(dtype)
    if kind == "shared":
        query = torch.linspace(0.2, 4.0, 7, dtype=dtype).expand(batch, -1).contiguous()
        mask = torch.ones(batch, 7, dtype=torch.bool)
    elif kind == "padded":
        times, values = _series((5, 2, 6, 1, 3, 4), seed=7)
        query, _, mask = _latent.pad_batch([t / 2 for t in times], values)
        query = query.masked_fill(~mask, 50.0)   # garbage in the padding: solving to it would cost a lot
    else:
        query = (torch.rand(batch, 5, generator=g, dtype=torch.float64) * 4).to(dtype)  # any order
        mask = torch.ones(batch, 5, dtype=torch.bool)
        if kind == "zero":
            query[:, 0] = 0.0
    return dynamics, decoder, z0, query, mask


def _predict_runner(fn: Callable) -> Callable[[str], tuple[torch.Tensor, torch.Tensor, int]]:
    def run(kind: str) -> tuple[torch.Tensor, torch.Tensor, int]:
        dynamics, decoder, z0, query, mask = _predict_case(kind)
        counting = _Counting(dynamics)
        with torch.no_grad():
            out = fn(counting, decoder, z0.clone(), query.clone(), mask.clone())
        return out, mask, counting.calls

    return run


def _same_predictions(expected: tuple, got: tuple) -> Optional[str]:
    want, mask, calls_ref = expected
    out, _, calls = got
    if not torch.is_tensor(out):
        return f"expected a tensor [B, M, D], got {type(out).__name__}"
    if out.shape != want.shape:
        return f"expected shape {tuple(want.shape)} ([batch, queries, observation dim]), got {tuple(out.shape)}"
    why = close(want[mask], out[mask].to(want.dtype), rtol=1e-4, atol=1e-5)
    if why:
        return (f"the predictions at real query times: {why} (solve from t = 0 on the union grid, then take "
                "series b's states at its own indices)")
    if calls > 2 * calls_ref + 10:
        return (f"right answers, but the dynamics were evaluated {calls} times where one solve on the union "
                f"needs {calls_ref}: solve ONCE for the whole batch, not once per series")
    return None


def check_predict_at_times(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 4: decoded latent states at per-series query times, from one solve on the union."""
    require_callable("check_predict_at_times", fn)
    cases = [
        Case("every series asks for the same times", ("shared",)),
        Case("each series its own times, in any order", ("own",)),
        Case("padded queries (garbage at the padding)", ("padded",)),
        Case("a query at t = 0 (gives decoder(z0))", ("zero",)),
        Case("float64", ("float64",)),
    ]
    hint = ("grid, index = union_times(query_times, query_mask); path = odeint(dynamics, z0, grid, rtol=rtol, "
            "atol=atol, method='dopri5')  # [U, B, L]; states = path.transpose(0, 1).gather(1, "
            "index.unsqueeze(-1).expand(-1, -1, z0.shape[1])); return decoder(states).")
    ok = run_check("Exercise 4 (predict at any times)", _predict_runner(fn), _predict_runner(predict_at_times),
                    cases, hint, _same_predictions, verbose)
    return fn if ok else predict_at_times


# --- exercise 5 (find the bug) and exercise 6 (predict, then check) ------------------------------

def last_observed(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each series' last real observation: ``values [B, L, D]`` padded after the real entries, ``mask [B, L]``
    (True at real entries, every series has at least one) -> ``[B, D]``."""
    last = mask.long().sum(dim=1) - 1
    return values[torch.arange(values.shape[0], device=values.device), last]


def buggy_last_observed(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exercise 5 ships this broken :func:`last_observed` for the learner to repair."""
    last = mask.long().sum(dim=1) - 1
    return values[:, -1]


def check_last_observed(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 5 (find the bug): the repaired :func:`buggy_last_observed`."""
    require_callable("check_last_observed", fn)
    g = torch.Generator().manual_seed(9)
    full = torch.ones(3, 4, dtype=torch.bool)
    ragged = torch.tensor([[True, True, True, True], [True, True, False, False], [True, False, False, False]])
    values = torch.randn(3, 4, 2, generator=g) * ragged[..., None]  # padding is zeros, as pad_batch makes it
    cases = [
        Case("series of equal length (no padding)", (torch.randn(3, 4, 2, generator=g), full)),
        Case("series of lengths 4, 2 and 1, padded with zeros", (values, ragged)),
        Case("one series of length 1 in a batch of one", (values[2:], ragged[2:])),
    ]
    hint = ["it is right when no series is padded and wrong when some are: which entry of a padded series "
            "does it return?",
            "a series of length n has its last real entry at position n - 1, which the mask tells; the last "
            "column is padding for every shorter series. Index each row at its own position."]
    return check_function("Exercise 5 (find the bug: the last observation)", fn, last_observed, cases, hint=hint,
                          verbose=verbose)[0]


@prediction
@keep_random_state()
def check_union_size_prediction(guess: Optional[float], verbose: bool = True) -> int:
    """Exercise 6 (predict, then check): the length of the union grid of 8 series with 5 random times each."""
    torch.manual_seed(0)
    times = torch.rand(8, 5).sort(dim=1).values * 10
    grid, _ = union_times(times, torch.ones(8, 5, dtype=torch.bool), 0.0)
    truth = int(grid.numel())
    check_prediction("Exercise 6 (predict: how long the union grid is)", guess, truth, notebook="09",
                     variable="predicted_length", atol=0.5,
                     explanation="random real times never coincide, so the union holds all 8 x 5 = 40 of them plus "
                                 "t0 = 0: 41 output times for one solve of the whole batch, which is why the union "
                                 "trick gets expensive as the batch grows.", verbose=verbose)
    return truth


show_answer = answers_for("09")
