"""Checkers for notebook 09 (time series): padding irregular series into a batch, a masked MSE, the
union of query times with gather indices, and a latent ODE's prediction at per-series times from one
solve.

Each ``check_*`` runs the learner's function against the reference on several cases, prints a report
and returns the function to go on with (the learner's when every case passed, else the reference).
The references are public so a notebook can also call them directly. Checkers leave the global random
state as they found it.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

from nodecourse.models import MLP, ODEFunc
from nodecourse.models import latent as _latent
from nodecourse.solvers import odeint

from .checking import Case, answers_for, check_function, check_prediction, close, keep_random_state, one_thread
from .checking import prediction, require_callable

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

    Left-aligned, zero-padded, ``N = max n_i``, ``mask`` bool and True at the real entries. (The package's
    ``nodecourse.models.latent.pad_batch`` does the same, with input checks.)
    """
    batch, n_max, dim = len(times), max(len(t) for t in times), values[0].shape[1]
    out_t = torch.zeros(batch, n_max, dtype=times[0].dtype, device=times[0].device)
    out_v = torch.zeros(batch, n_max, dim, dtype=values[0].dtype, device=values[0].device)
    mask = torch.zeros(batch, n_max, dtype=torch.bool, device=times[0].device)
    for i, (t, v) in enumerate(zip(times, values)):
        out_t[i, : len(t)], out_v[i, : len(t)], mask[i, : len(t)] = t, v, True
    return out_t, out_v, mask


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The MSE over real entries only (``pred, target [B, N, D]``, ``mask [B, N]``), a 0-d tensor;
    padded entries may hold NaN and must not matter, for the value and for the gradient."""
    diff = torch.where(mask.unsqueeze(-1), pred - target, torch.zeros_like(pred))  # select BEFORE squaring
    return (diff**2).sum() / (mask.sum() * pred.shape[-1])


def union_times(times: torch.Tensor, mask: torch.Tensor, t0: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grid [U], index [B, N])``: ``t0`` and the real times, sorted and distinct, and each real
    entry's position in ``grid`` (0 at padded entries)."""
    start = torch.full((1,), float(t0), dtype=times.dtype, device=times.device)
    grid, inverse = torch.unique(torch.cat([start, times[mask]]), sorted=True, return_inverse=True)
    index = torch.zeros(times.shape, dtype=torch.long, device=times.device)
    index[mask] = inverse[1:]
    return grid, index


def predict_at_times(dynamics: nn.Module, decoder: nn.Module, z0: torch.Tensor, query_times: torch.Tensor,
                     query_mask: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-8) -> torch.Tensor:
    """Decoded latent states at per-series query times, ``[B, M, D]``, from ONE Dopri5 solve.

    ``z0 [B, L]`` lives at t = 0; ``dz/dt = dynamics(t, z)``; the solve runs on the union of the
    real query times (with 0) and each series' states are gathered from it.
    """
    grid, index = union_times(query_times, query_mask)
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


def _check(exercise: str, learner: Callable, reference: Callable, cases: list[Case], hint: list[str],
           compare: Callable[[Any, Any], Optional[str]], verbose: bool, answer: Callable) -> bool:
    """:func:`check_function` on one thread without touching the random state; ``answer`` is what
    ``show_answer`` prints (the reference itself, not the runner that wraps it). True when every case passed."""
    with keep_random_state(), one_thread():
        _, report = check_function(exercise, learner, reference, cases, hint=hint, compare=compare, verbose=verbose,
                                   answer=answer)
    return report.ok


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
        if g.shape != e.shape:
            return f"{name} has shape {tuple(g.shape)}, expected {tuple(e.shape)}"
        if g.dtype != e.dtype:
            return f"{name} has dtype {g.dtype}, expected the input's {e.dtype}"
        real = m if name == "times" else m.unsqueeze(-1).expand_as(e)
        if not torch.equal(g[real], e[real]):
            return f"{name}: the real entries are not the series' own (left-aligned, copied as they are)"
        if not bool((g[~real] == 0).all()):
            return f"{name}: the padding must hold zeros, found {g[~real][g[~real] != 0][0].item()!r}"
    return None


def check_pad_batch(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 1: stack series of different lengths into a left-aligned, zero-padded batch with a mask."""
    require_callable("check_pad_batch", fn)
    cases = [
        Case("left-aligned: series i fills the first n_i entries of row i (lengths 3, 1, 4)", _series((3, 1, 4))),
        Case("the padding holds zeros, in times and in values (lengths 2, 5)", _series((2, 5), seed=4)),
        Case("the mask is bool, True exactly at the real entries (lengths 1, 3)", _series((1, 3), seed=5)),
        Case("N is the longest length, wherever that series sits (the longest first)", _series((6, 2, 3, 1), seed=3)),
        Case("one series: nothing to pad", _series((5,), seed=1)),
        Case("equal lengths: the mask is all True", _series((2, 2, 2), seed=2)),
        Case("float64 series with 3 channels keep their dtype", _series((4, 2), dim=3, dtype=torch.float64, seed=6)),
    ]
    hint = ["the first failed case names the property: where each series sits in its row, what the padding holds, "
            "the mask (its dtype and where it is True), or the dtype of the result.",
            "start from tensors that are zero everywhere, N entries long in time, with the inputs' dtype and device "
            "(and a bool mask that is False everywhere); then copy series i into the FIRST n_i places of row i and "
            "mark the same places in the mask."]
    ok = _check("Exercise 1 (pad a batch)", _copying(fn), pad_batch, cases, hint, _same_padded, verbose, pad_batch)
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


class _Loss:
    """A loss computed by some function, with pred's gradient when the case asks for it."""

    def __init__(self, value: Any, grad: Optional[torch.Tensor] = None, graph: bool = True) -> None:
        self.value, self.grad, self.graph = value, grad, graph


def _mse_runner(fn: Callable) -> Callable[..., _Loss]:
    """Call ``fn`` on copies of the case; with ``backward=True`` differentiate the loss with respect to pred."""
    def run(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, backward: bool = False) -> _Loss:
        pred = pred.clone().requires_grad_(backward)
        value = fn(pred, target.clone(), mask.clone())
        if not backward or not torch.is_tensor(value):
            return _Loss(value.detach() if torch.is_tensor(value) else value)
        if not value.requires_grad:
            return _Loss(value.detach(), graph=False)
        (grad,) = torch.autograd.grad(value.sum(), pred, allow_unused=True, materialize_grads=True)
        return _Loss(value.detach(), grad)

    return run


def _same_loss(expected: _Loss, got: _Loss) -> Optional[str]:
    value = got.value
    if not torch.is_tensor(value):
        return f"return the loss as a tensor (so it can be backpropagated), got {type(value).__name__}"
    if value.dim() != 0:
        return f"expected a 0-d tensor (one number), got shape {tuple(value.shape)}"
    if torch.isnan(value):
        return ("got NaN: padded entries hold NaN here, and 0 * NaN = NaN, so multiplying by the mask is not "
                "enough; select the real entries (torch.where or boolean indexing)")
    why = close(expected.value, value.to(expected.value.dtype), rtol=1e-5, atol=1e-7)
    if why:
        return f"{why} (average over the real entries and all D channels)"
    if expected.grad is None:
        return None
    if not got.graph:
        return "the loss carries no graph back to pred: compute it from pred with tensor operations, no detach"
    if not bool(torch.isfinite(got.grad).all()):
        return ("pred's gradient holds NaN at padded entries: the padding's NaN went through an operation (the "
                "square) before it was dropped, and that operation's backward gives NaN * 0 = NaN; drop the padded "
                "entries before squaring")
    why = close(expected.grad, got.grad.to(expected.grad.dtype), rtol=1e-5, atol=1e-7)
    return f"pred's gradient: {why}" if why else None


def check_masked_mse(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 2: the mean squared error over the real entries of a padded batch."""
    require_callable("check_masked_mse", fn)
    cases = [
        Case("no padding: the mean over every entry and channel", _mse_case((4, 4), 2, 0.0)),
        Case("padding holding 7.0 does not count", _mse_case((5, 2, 3), 2, 7.0, seed=2)),
        Case("padding holding NaN does not count (0 * NaN = NaN)", _mse_case((1, 4, 2), 2, float("nan"), seed=3)),
        Case("divided by the real entries times all D channels (D = 3, float64)",
             _mse_case((3, 6), 3, float("nan"), torch.float64, seed=4)),
        Case("one channel", _mse_case((2, 5, 1), 1, 3.0, seed=5)),
        Case("a 0-d tensor that backpropagates: pred's gradient is finite under NaN padding",
             _mse_case((2, 4, 3), 2, float("nan"), seed=6), {"backward": True}),
    ]
    hint = ["the first failed case names the property: what the padding may hold (7.0, NaN), the denominator, the "
            "result's type and shape, or its gradient with respect to pred.",
            "select the real entries (torch.where, or boolean indexing with the mask) before any arithmetic that a "
            "NaN could poison, squaring included; multiplying by the mask is not enough, since 0 * NaN = NaN. "
            "Divide by the number of real entries times D, and return a 0-d tensor."]
    ok = _check("Exercise 2 (masked MSE)", _mse_runner(fn), _mse_runner(masked_mse), cases, hint, _same_loss,
                verbose, masked_mse)
    return fn if ok else masked_mse


# --------------------------------------------------------------------------------------------------
# exercise 3: the union of the query times
# --------------------------------------------------------------------------------------------------


def _union_case(kind: str) -> tuple:
    """(times, mask) or (times, mask, t0) for a case of exercise 3."""
    if kind == "shared":
        t = torch.tensor([[0.5, 1.0, 2.0], [0.5, 1.5, 2.0]])
        return t, torch.ones(2, 3, dtype=torch.bool)
    if kind in ("padded", "padded index"):
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
    if kind == "start":
        t = torch.tensor([[0.7, 1.2], [0.4, 2.2], [1.2, 1.9]])
        return t, torch.ones(3, 2, dtype=torch.bool)
    raise ValueError(kind)


class _UnionCase:
    """Keeps the case's inputs with the reference's answer so the comparison can index back."""

    def __init__(self, kind: str, args: tuple, result: Any) -> None:
        self.kind, self.args, self.result = kind, args, result


def _union_runner(fn: Callable) -> Callable[[str], _UnionCase]:
    def run(kind: str) -> _UnionCase:
        args = _union_case(kind)
        return _UnionCase(kind, args, fn(*(a.clone() if torch.is_tensor(a) else a for a in args)))

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
        return "grid must be strictly increasing: sorted, each time once"
    if grid.numel() == want.numel() - 1 and (grid.numel() == 0 or grid[0] != t0):
        return f"grid lacks t0 = {t0}: the latent state lives there, so the solve must start at it"
    if grid.numel() > want.numel():
        return (f"grid has {grid.numel()} times, expected {want.numel()}: did padded entries get in? Only the "
                "real times (where the mask is True) belong in it")
    why = close(want, grid.to(want.dtype), rtol=0, atol=0)
    if why:
        return f"grid: {why}"
    if index.shape != times.shape or index.dtype not in (torch.int64, torch.int32):
        return (f"index must be an integer tensor shaped like times, {tuple(times.shape)}, got {index.dtype} "
                f"{tuple(index.shape)}")
    if bool((index[mask] < 0).any()) or bool((index[mask] >= grid.numel()).any()):
        return "index holds positions outside the grid at real entries"
    if not torch.equal(grid[index[mask].long()], times[mask].to(grid.dtype)):
        return "grid[index] differs from times at some real entries: index must hold each real time's position"
    if expected.kind == "padded index" and bool((index[~mask] != 0).any()):
        return (f"index at padded entries must be 0 (the position of t0), got {index[~mask].unique().tolist()}: "
                "a gather with it then stays inside the grid")
    return None


def check_union_times(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 3: the sorted distinct times of a batch with t0, and the gather index of every real entry."""
    require_callable("check_union_times", fn)
    cases = [
        Case("t0 comes first: the solve starts where the latent state lives", ("start",)),
        Case("sorted, each time once: series that share times", ("shared",)),
        Case("t0 = 0 already a query time: it appears once", ("zero",)),
        Case("the given t0 (t0 = 0.5), float64", ("t0",)),
        Case("padding holding 99 stays out of the grid", ("padded",)),
        Case("padded entries get index 0, the position of t0", ("padded index",)),
        Case("grid[index] gives back every real time, queries unsorted within a series", ("unsorted",)),
    ]
    hint = ["the first failed case names the property of the grid (t0 at its start, sorted, each time once, no "
            "padded times) or of the index (it points back at every real time, and at t0 for padded entries).",
            "put t0 together with the real times only (the mask selects them) and let ONE call of torch.unique sort "
            "them, drop repeats and tell where each input went (return_inverse); the first of those positions is "
            "t0's, the others belong to the real entries in the order the mask selected them."]
    ok = _check("Exercise 3 (union of times)", _union_runner(fn), _union_runner(union_times), cases, hint,
                _same_union, verbose, union_times)
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


_PREDICT_SEEDS = {"shared": 1, "own": 2, "padded": 3, "float64": 4, "zero": 5, "loose": 6, "cost": 7}


def _predict_case(kind: str) -> tuple:
    """(dynamics, decoder, z0, query_times, query_mask) of a case of exercise 4, built from a fixed seed."""
    g = torch.Generator().manual_seed(_PREDICT_SEEDS[kind])
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
        query = (torch.rand(batch, 5, generator=g, dtype=torch.float64) * 4 + 0.5).to(dtype)  # any order
        mask = torch.ones(batch, 5, dtype=torch.bool)
        if kind == "zero":
            query[:, 0] = 0.0
    return dynamics, decoder, z0, query, mask


def _predict_runner(fn: Callable) -> Callable[[str], tuple[Any, torch.Tensor, int, str]]:
    def run(kind: str) -> tuple[Any, torch.Tensor, int, str]:
        dynamics, decoder, z0, query, mask = _predict_case(kind)
        counting = _Counting(dynamics)
        tolerances = {"rtol": 1e-3, "atol": 1e-4} if kind == "loose" else {}
        with torch.no_grad():
            out = fn(counting, decoder, z0.clone(), query.clone(), mask.clone(), **tolerances)
        return out, mask, counting.calls, kind

    return run


def _same_predictions(expected: tuple, got: tuple) -> Optional[str]:
    want, mask, calls_ref, kind = expected
    out, _, calls, _ = got
    if not torch.is_tensor(out):
        return f"expected a tensor [B, M, D], got {type(out).__name__}"
    if out.shape != want.shape:
        return f"expected shape {tuple(want.shape)} ([batch, queries, observation dim]), got {tuple(out.shape)}"
    why = close(want[mask], out[mask].to(want.dtype), rtol=1e-4, atol=1e-5)
    if why:
        return (f"the predictions at real query times: {why} (solve from t = 0 on the union grid, then take "
                "series b's states at its own indices)")
    if kind == "cost" and calls > 2 * calls_ref + 10:
        return (f"right answers, but the dynamics were evaluated {calls} times where one solve on the union "
                f"needs {calls_ref}: solve ONCE for the whole batch, not once per series")
    return None


def check_predict_at_times(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 4: decoded latent states at per-series query times, from one solve on the union."""
    require_callable("check_predict_at_times", fn)
    cases = [
        Case("every series asks for the same times", ("shared",)),
        Case("each series its own times, in any order: gathered from the union", ("own",)),
        Case("a query at t = 0 gives decoder(z0): the solve starts at t = 0", ("zero",)),
        Case("padded queries (garbage 50 in the padding) are neither solved to nor returned", ("padded",)),
        Case("the given rtol and atol are used (rtol = 1e-3, atol = 1e-4)", ("loose",)),
        Case("ONE solve for the whole batch: no more evaluations than one solve needs", ("cost",)),
        Case("float64", ("float64",)),
    ]
    hint = ["the first failed case names the property: the values at each series' own times, the start at t = 0, "
            "the padded queries, the tolerances, or the cost (one solve for the whole batch).",
            "build the union grid of the real query times with t0 = 0 (exercise 3), solve once on it with the given "
            "rtol and atol, then put the batch axis first and pick, for every series, the time rows its index points "
            "to (torch.gather along the time axis needs the index expanded over the latent dimension); decode last."]
    ok = _check("Exercise 4 (predict at any times)", _predict_runner(fn), _predict_runner(predict_at_times),
                cases, hint, _same_predictions, verbose, predict_at_times)
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
    garbage = values.masked_fill(~ragged[..., None], 99.0)
    garbage[1, 1] = 0.0  # a real observation that happens to be zero
    wide = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    cases = [
        Case("series of equal length (no padding)", (torch.randn(3, 4, 2, generator=g), full)),
        Case("padded series (lengths 4, 2, 1): each row's own last real entry", (values, ragged)),
        Case("one series of length 1 in a batch of one", (values[2:], ragged[2:])),
        Case("padding that is not zero (99), a real entry that is: only the mask tells where a series ends",
             (garbage, ragged)),
        Case("float64 with 3 channels (lengths 5, 3)", (wide, torch.arange(5).expand(2, 5) < torch.tensor([[5], [3]]))),
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
