"""Timing, counting and reporting for solver benchmarks: used by ``benchmarks/`` and by the
notebooks' live comparisons with torchdiffeq and torchode.

The overhead factor of a solve is its wall time divided by (NFE x the time of one bare call of the
vector field): 1.0 means the solver costs nothing beyond its function evaluations.
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch

__all__ = ["median_time", "call_time", "time_and_overhead", "launched_ops", "saved_tensor_bytes", "Counted", "Row", "fill_ratios", "table",
           "write_json", "read_json", "median_of_processes"]


def median_time(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_times(fns: dict, repeats: int = 10, warmup: int = 2) -> dict:
    """Median wall time of each ``fns[name]()`` in seconds, timed round-robin (each repeat runs every
    function once), so a burst of load on the machine slows every contender alike instead of one."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync()
            start = time.perf_counter()
            fn()
            _sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def call_time(field: Callable, t: torch.Tensor, y: torch.Tensor, calls: int = 200) -> float:
    """Seconds of one bare, gradient-free call of the vector field: the floor a solve is measured against."""
    def calls_in_a_row():
        for _ in range(calls):
            field(t, y)  # each output is dropped at once, as in a solve: no memory piles up

    with torch.no_grad():
        return median_time(calls_in_a_row, repeats=5) / calls


def time_and_overhead(solve: Callable[[], object], field: Callable, t: torch.Tensor, y: torch.Tensor, nfe: int,
                      repeats: int = 10, warmup: int = 2) -> tuple[float, float]:
    """Median wall time of ``solve()`` and its median overhead factor, time / (``nfe`` x one bare call).

    Each repeat times one solve and then ``nfe`` bare calls of ``field`` right after it, and the factor
    is taken per repeat: a machine that speeds up or slows down (other load, clock changes) moves both
    timings together instead of skewing the ratio.
    """
    if nfe < 1:
        raise ValueError(f"nfe must be a positive number of evaluations, got {nfe}.")

    def bare_calls():
        for _ in range(nfe):
            field(t, y)

    with torch.no_grad():
        for _ in range(warmup):
            solve()
            bare_calls()
        times, factors = [], []
        for _ in range(repeats):
            seconds = _timed(solve)
            times.append(seconds)
            factors.append(seconds / _timed(bare_calls))
    return statistics.median(times), statistics.median(factors)


def _timed(fn: Callable[[], object]) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


def launched_ops(fn: Callable[[], object]) -> int:
    """How many tensor operations ``fn()`` launches itself (top-level ``aten`` calls, not the ones they
    run inside): the count that Python dispatch costs scale with. Uses ``torch.profiler``."""
    from torch.profiler import profile

    prof = profile()
    with _quiet_native_stderr():  # some builds log profiler start/stop from C++; not the reader's business
        prof.start()
    try:
        fn()
    finally:
        with _quiet_native_stderr():
            prof.stop()
    return sum(1 for event in prof.events() if event.name.startswith("aten::") and event.cpu_parent is None)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Send file descriptor 2 (native code's stderr) to the null device for the duration."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (some embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def saved_tensor_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the distinct storages that autograd saves for backward while ``fn()`` runs.

    Uses ``torch.autograd.graph.saved_tensors_hooks``; a storage saved several times (a weight used by
    every step) counts once. The output of ``fn`` is kept alive until the count is done.
    """
    if not callable(fn):
        raise TypeError(f"saved_tensor_bytes needs a function of no arguments, got {type(fn).__name__}; wrap "
                        "the computation, e.g. saved_tensor_bytes(lambda: odeint(func, y0, t)).")
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn()
    del out
    return sum(storages.values())


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Counted:
    """Wraps a vector field and counts its calls."""

    def __init__(self, field: Callable):
        self.field, self.calls = field, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.field(t, y)


@dataclass
class Row:
    """One benchmark measurement."""

    case: str
    solver: str
    seconds: float
    nfe: Optional[float] = None
    steps: Optional[float] = None
    overhead: Optional[float] = None
    error: Optional[float] = None
    vs_torchdiffeq: Optional[float] = None
    vs_torchode: Optional[float] = None
    extra: dict = field(default_factory=dict)


def fill_ratios(rows: list[Row]) -> None:
    """Set each row's time ratios against the torchdiffeq and torchode rows of the same case."""
    for peer, attribute in (("torchdiffeq", "vs_torchdiffeq"), ("torchode", "vs_torchode")):
        reference = {r.case: r.seconds for r in rows if r.solver.split(" (")[0] == peer}
        for r in rows:
            if r.case in reference and r.seconds:
                setattr(r, attribute, r.seconds / reference[r.case])


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width text table."""
    head = f"{'case':<34} {'solver':<22} {'ms':>9} {'NFE':>8} {'steps':>7} {'overhead':>9} {'error':>9} {'/tdq':>6} {'/tode':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        def fmt(value, spec):
            return format(value, spec) if value is not None else "-"
        lines.append(
            f"{r.case:<34} {r.solver:<22} {r.seconds * 1e3:>9.2f} {fmt(r.nfe, '>8.0f'):>8} {fmt(r.steps, '>7.0f'):>7} "
            f"{fmt(r.overhead, '>9.2f'):>9} {fmt(r.error, '>9.1e'):>9} {fmt(r.vs_torchdiffeq, '>6.2f'):>6} {fmt(r.vs_torchode, '>6.2f'):>6}"
        )
        if r.extra:
            lines.append(" " * 36 + ", ".join(f"{k}={_short(v)}" for k, v in r.extra.items()))
    return "\n".join(lines)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def write_json(rows: list[Row], path, meta: dict) -> None:
    with open(path, "w") as handle:
        json.dump({"meta": meta, "rows": [asdict(r) for r in rows]}, handle, indent=2)


def read_json(path) -> list[Row]:
    """The rows :func:`write_json` wrote."""
    with open(path) as handle:
        return [Row(**row) for row in json.load(handle)["rows"]]


def median_of_processes(runs: list[list[Row]]) -> list[Row]:
    """One row per measurement from the same case list run in several fresh processes: the median time
    and overhead factor, the other columns from the first run.

    A process's memory layout (address randomisation, where the allocator puts each tensor) moves every
    timing in it together, by up to 10% on a small problem; the repeats inside one process cannot
    average that out, separate processes can. Each row keeps its per-process factors in ``extra``."""
    if not runs or any(len(rows) != len(runs[0]) for rows in runs):
        raise ValueError("median_of_processes needs runs with the same rows in the same order.")
    merged = []
    for same in zip(*runs):
        if len({(r.case, r.solver) for r in same}) != 1:
            raise ValueError(f"rows out of step across processes: {sorted({(r.case, r.solver) for r in same})}.")
        first = same[0]
        factors = [r.overhead for r in same if r.overhead is not None]
        extra = {**first.extra, "processes": len(same)}
        if factors:
            extra["overhead per process"] = [round(f, 3) for f in factors]
        merged.append(Row(first.case, first.solver, statistics.median(r.seconds for r in same), first.nfe, first.steps,
                          statistics.median(factors) if factors else None, first.error, extra=extra))
    return merged
