"""The benchmark cases: nodecourse, torchdiffeq and torchode on the same problems, same process.

Each case returns a list of :class:`harness.Row`. Sizes follow the performance issue; ``scale``
below 1 shrinks them for a quick run (the notebooks' live versions).
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Optional

import torch
import torchdiffeq
from torch import nn

import nodecourse
from nodecourse.models import MLP
from nodecourse.solvers.grid import forget_recent_grids
from nodecourse.solvers.problem import plain_call
from nodecourse.benchmarking import (Counted, Row, interleaved_median_times, median_time, saved_tensor_bytes,
                                     time_and_overhead)
from nodecourse.data import load_mnist, split_holdout

try:
    import torchode
except ImportError:  # pragma: no cover - torchode is optional
    torchode = None


# --- problems -------------------------------------------------------------------------------
def mlp_field(sizes, seed=0, dtype=torch.float32):
    """A tanh MLP vector field f(t, y) = net(y) with fixed random weights."""
    torch.manual_seed(seed)
    net = MLP(sizes).to(dtype)
    for p in net.parameters():
        p.requires_grad_(False)
    return net, (lambda t, y: net(y))


def van_der_pol(mu: torch.Tensor):
    """x'' = mu (1 - x^2) x' - x as a first-order system; ``mu`` is a scalar or ``[B]``."""
    def field(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, mu * (1 - x * x) * v - x], dim=-1)
    return field


def reference_solution(field, y0, t):
    """An independent float64 reference: torchdiffeq's dopri5 at rtol = atol = 1e-11."""
    with torch.no_grad():
        return torchdiffeq.odeint(lambda s, y: field(s, y.to(y0.dtype)).double(), y0.double(), t.double(),
                                  rtol=1e-11, atol=1e-11).to(y0.dtype)


def _torchode_solve(field, y0, t, rtol, atol):
    """torchode's dopri5 with its integral controller; per-sample steps by design."""
    term = torchode.ODETerm(field)
    solver = torchode.AutoDiffAdjoint(torchode.Dopri5(term=term),
                                      torchode.IntegralController(atol=atol, rtol=rtol, term=term))
    t_eval = t.unsqueeze(0).expand(y0.shape[0], -1)
    return solver.solve(torchode.InitialValueProblem(y0=y0, t_eval=t_eval))


def _error(ys, reference):
    return (ys - reference).abs().max().item()


# --- case 1 and 2: MLP fields ------------------------------------------------------------------
COMPILED = {"compile": True}


def _first_solve_seconds(fn) -> float:
    """Wall time of the first call (for a compiled solve: tracing and compiling included)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _solve_and_count(solver_name, field, y0, t, **kwargs):
    """The solution and the number of evaluations: nodecourse reports them itself (wrapping the field
    would hand the compiled path a new field to compile); torchdiffeq's are counted."""
    if solver_name.startswith("nodecourse"):
        sol = nodecourse.solve(field, y0, t, **kwargs)
        return sol.ys, sol.stats.nfe
    counted = Counted(field)
    return torchdiffeq.odeint(counted, y0, t, **kwargs), counted.calls


class CountingField(nn.Module):
    """The vector field as the notebooks write it: an ``nn.Module`` that counts its calls around its network."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, t, y):
        self.calls += 1
        return self.net(y)


def floor_stage_times(y0, t_end, h):
    """The stage times of :func:`hand_written_rk4`'s steps, ``[(t0, t1, t2, t3)]`` per step, as 0-d tensors."""
    n = int(round(t_end / h))
    fractions = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0], dtype=y0.dtype)
    flat = ((torch.arange(n, dtype=y0.dtype).unsqueeze(1) + fractions) * h).reshape(-1).unbind()
    return [flat[4 * g:4 * g + 4] for g in range(n)]


def hand_written_rk4(field, y0, times, h):
    """rk4 (Kutta's 3/8 rule, torchdiffeq's and ours) as the shortest eager loop: no checks, no outputs but
    the last, the stage times made once before (:func:`floor_stage_times`; the solver reuses a recent
    grid's too), each stage input built in place, the new state as y + (h/8)(k1 + 3 k2 + 3 k3 + k4), the
    operations called as tensor methods (their arguments parse faster than ``torch.add``'s), and a
    hook-free module called through ``forward`` (as the solver does). The floor an eager Python solver can reach."""
    call = plain_call(field)
    y = y0
    for t0, t1, t2, t3 in times:
        k1 = call(t0, y)
        k2 = call(t1, y.add(k1, alpha=h / 3))
        k3 = call(t2, y.add(k1, alpha=-h / 3).add_(k2, alpha=h))
        k4 = call(t3, y.add(k1, alpha=h).add_(k2, alpha=-h).add_(k3, alpha=h))
        y = y.add(k1.add(k2, alpha=3.0).add_(k3, alpha=3.0).add_(k4), alpha=h / 8)
    return y


def mlp_case(name, sizes, batch, repeats, with_torchode=True, with_compiled=True):
    """dopri5 at rtol = atol = 1e-6 and rk4 at h = 0.05 on t in [0, 5]. The field counts its calls, as in
    the notebooks; the overhead factor is measured against one bare call of its network."""
    net, bare = mlp_field(sizes)
    field = CountingField(net)
    y0 = torch.randn(batch, sizes[0], generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 5.0])
    reference = reference_solution(field, y0, t)
    rows = []
    def solve_rk4(field, y0, t):
        return nodecourse.odeint(field, y0, t, method="rk4", options={"step_size": 0.05})

    for method, kwargs in (("dopri5", dict(rtol=1e-6, atol=1e-6)), ("rk4", dict(options={"step_size": 0.05}))):
        case = f"{name} {method}"
        solvers = [("nodecourse", nodecourse.odeint, kwargs), ("torchdiffeq", torchdiffeq.odeint, kwargs)]
        if with_compiled:
            compiled_kwargs = {**kwargs, "options": {**kwargs.get("options", {}), **COMPILED}}
            solvers.insert(1, ("nodecourse compiled", nodecourse.odeint, compiled_kwargs))
        with torch.no_grad():
            for solver_name, solve, kw in solvers:
                first = _first_solve_seconds(lambda: solve(field, y0, t, method=method, **kw))
                ys, nfe = _solve_and_count(solver_name, field, y0, t, method=method, **kw)
                seconds, overhead = time_and_overhead(lambda: solve(field, y0, t, method=method, **kw), bare, t[0],
                                                      y0, nfe, repeats)
                extra = {"first solve s": first} if solver_name.endswith("compiled") else {}
                rows.append(Row(case, solver_name, seconds, nfe, None, overhead,
                                _error(ys[-1], reference[-1]), extra=extra))
            if method == "dopri5":
                steps = nodecourse.solve(field, y0, t, method=method, **kwargs).stats.n_steps
                for r in rows[-len(solvers):]:
                    r.steps = steps if r.solver.startswith("nodecourse") else None
                if with_torchode and torchode is not None:
                    out = _torchode_solve(field, y0, t, 1e-6, 1e-6)
                    nfe = out.stats["n_f_evals"].max().item()
                    seconds, overhead = time_and_overhead(lambda: _torchode_solve(field, y0, t, 1e-6, 1e-6), bare,
                                                          t[0], y0, nfe, repeats)
                    rows.append(Row(case, "torchode (per sample)", seconds, nfe, out.stats["n_steps"].float().mean().item(),
                                    overhead, _error(out.ys[:, -1], reference[-1])))
            else:
                for r in rows[-len(solvers):]:
                    r.steps = 100
                # A solve on a new grid pays for its stage-time tensors, which repeated solves reuse.
                seconds, overhead = time_and_overhead(lambda: (forget_recent_grids(), solve_rk4(field, y0, t)), bare,
                                                      t[0], y0, 400, repeats)
                rows.append(Row(case, "nodecourse, grid built each solve", seconds, 400, 100, overhead,
                                _error(solve_rk4(field, y0, t)[-1], reference[-1])))
                times = floor_stage_times(y0, 5.0, 0.05)
                seconds, overhead = time_and_overhead(lambda: hand_written_rk4(field, y0, times, 0.05), bare, t[0],
                                                      y0, 400, repeats)
                floor = hand_written_rk4(field, y0, times, 0.05)
                rows.append(Row(case, "hand-written (floor)", seconds, 400, 100, overhead,
                                _error(floor, reference[-1])))
    return rows


# --- case 3: Van der Pol, many outputs ----------------------------------------------------------
def vdp_case(batch, repeats, with_compiled=True):
    field = van_der_pol(torch.tensor(2.0))
    y0 = torch.rand(batch, 2, generator=torch.Generator().manual_seed(2)) * 4 - 2
    t = torch.linspace(0, 10, 200)
    reference = reference_solution(field, y0, t)
    rows = []
    solvers = [("nodecourse", nodecourse.odeint, None), ("torchdiffeq", torchdiffeq.odeint, None)]
    if with_compiled:
        solvers.insert(1, ("nodecourse compiled", nodecourse.odeint, COMPILED))
    with torch.no_grad():
        for name, solve, options in solvers:
            kw = {"options": options} if options else {}
            first = _first_solve_seconds(lambda: solve(field, y0, t, rtol=1e-5, atol=1e-5, **kw))
            ys, nfe = _solve_and_count(name, field, y0, t, rtol=1e-5, atol=1e-5, **kw)
            seconds, overhead = time_and_overhead(lambda: solve(field, y0, t, rtol=1e-5, atol=1e-5, **kw), field,
                                                  t[0], y0, nfe, repeats)
            rows.append(Row("3 VdP mu=2, 200 outputs", name, seconds, nfe, None, overhead,
                            _error(ys, reference), extra={"first solve s": first} if options else {}))
    return rows


# --- case 4: a mixed batch, shared vs per-sample steps -------------------------------------------
def mixed_case(batch, repeats, with_compiled=True):
    """Van der Pol with mu log-uniform in [0.5, 20]: some samples need far smaller steps than others.

    Accuracy is reported two ways: the worst error against the float64 reference in units of the
    tolerance (the global error, which exceeds the local tolerance for every solver here), and the
    worst ratio of a sample's error to the error of solving that sample alone with torchdiffeq at
    the same tolerance (both in units of the tolerance, the solo one at least 1): near 1 when every
    sample got the accuracy its own tolerance buys.
    """
    gen = torch.Generator().manual_seed(3)
    mu = torch.exp(torch.empty(batch).uniform_(math.log(0.5), math.log(20.0), generator=gen))
    field = van_der_pol(mu)
    y0 = torch.rand(batch, 2, generator=gen) * 4 - 2
    t = torch.tensor([0.0, 10.0])
    tol = 1e-5
    reference = reference_solution(field, y0, t)[-1]
    with torch.no_grad():
        solo = torch.stack([torchdiffeq.odeint(van_der_pol(mu[i]), y0[i:i + 1], t, rtol=tol, atol=tol)[-1, 0]
                            for i in range(batch)])
    scale = tol + tol * reference.abs()  # the tolerance, per sample and component
    solo_error = ((solo - reference).abs() / scale).amax(dim=1)

    def accuracy(ys):
        error = ((ys - reference).abs() / scale).amax(dim=1)
        return {"worst error / tol": error.max().item(),
                "worst error / solo error": (error / solo_error.clamp(min=1.0)).max().item()}

    runs = [("nodecourse shared", {}), ("nodecourse per-sample", {"per_sample": True})]
    if with_compiled:
        runs += [("nodecourse shared compiled", COMPILED), ("nodecourse per-sample compiled", {"per_sample": True, **COMPILED})]

    def nodecourse_solve(options):
        return lambda: nodecourse.solve(field, y0, t, rtol=tol, atol=tol, options=options)

    solves = {name: nodecourse_solve(options) for name, options in runs}
    solves["torchdiffeq"] = lambda: torchdiffeq.odeint(field, y0, t, rtol=tol, atol=tol)
    if torchode is not None:
        solves["torchode"] = lambda: _torchode_solve(field, y0, t, tol, tol)
    with torch.no_grad():
        first = {name: _first_solve_seconds(solves[name]) for name, _ in runs}
        seconds = interleaved_median_times(solves, repeats)  # round-robin: load on the machine hits all alike
        rows = []
        for name, options in runs:
            sol = solves[name]()
            extra = {"function work (sample evals)": int(sol.stats.n_calls) * batch, **accuracy(sol.ys[-1])}
            if options.get("per_sample"):
                steps = sol.stats.n_steps
                extra["steps per sample min/median/max"] = (int(steps.min()), int(steps.median()), int(steps.max()))
                extra["needed sample evals"] = int(sol.stats.nfe.sum())
                mean_steps = steps.float().mean().item()
            else:
                mean_steps = sol.stats.n_steps
            if options.get("compile"):
                extra["first solve s"] = first[name]
            rows.append(Row("4 mixed VdP", name, seconds[name], sol.stats.n_calls, mean_steps, None,
                            _error(sol.ys[-1], reference), extra=extra))
        counted = Counted(field)
        ys = torchdiffeq.odeint(counted, y0, t, rtol=tol, atol=tol)
        rows.append(Row("4 mixed VdP", "torchdiffeq", seconds["torchdiffeq"], counted.calls, None, None,
                        _error(ys[-1], reference), extra=accuracy(ys[-1])))
        if torchode is not None:
            out = solves["torchode"]()
            rows.append(Row("4 mixed VdP", "torchode", seconds["torchode"], out.stats["n_f_evals"].max().item(),
                            out.stats["n_steps"].float().mean().item(), None, _error(out.ys[:, -1], reference),
                            extra={"function work (sample evals)": int(out.stats["n_f_evals"].max()) * batch,
                                   **accuracy(out.ys[:, -1])}))
    return rows


# --- case 7: output patterns, per-sample steps -------------------------------------------------------
def output_patterns_case(batch, repeats, counts=(2, 50, 200)):
    """The mixed Van der Pol batch of case 4 (mu log-uniform in [0.5, 20], t in [0, 10], rtol = atol = 1e-5)
    observed at 2, 50 and 200 shared output times, then at 50 times of each sample's own (irregular, [B, T])."""
    gen = torch.Generator().manual_seed(3)
    mu = torch.exp(torch.empty(batch).uniform_(math.log(0.5), math.log(20.0), generator=gen))
    field = van_der_pol(mu)
    y0 = torch.rand(batch, 2, generator=gen) * 4 - 2
    tol = 1e-5
    rows = []
    contenders: dict = {}  # name -> (run, ys_of, nfe, reference) of the case being set up

    def add(case, name, run, ys_of, nfe, reference):
        contenders[name] = (run, ys_of, nfe, reference)

    def time_case(case):
        """Time the case's contenders round-robin, so load on the machine hits them alike."""
        with torch.no_grad():
            seconds = interleaved_median_times({name: c[0] for name, c in contenders.items()}, repeats)
            for name, (run, ys_of, nfe, reference) in contenders.items():
                out = run()
                rows.append(Row(case, name, seconds[name], nfe(out), None, None, _error(ys_of(out), reference)))
        contenders.clear()

    # each sample its own 50 irregular times in [0, 10]
    own = torch.sort(torch.rand(batch, 50, generator=gen) * 10, dim=1).values
    own[:, 0] = 0.0
    # one float64 reference solve on the union of every time used below, then looked up: the tight
    # reference solve is the slowest part of the case, so it runs once
    grids = {n: torch.linspace(0.0, 10.0, n) for n in counts}
    union = torch.unique(torch.cat([*grids.values(), own.reshape(-1)]))
    with torch.no_grad():
        on_union = reference_solution(field, y0, union)                         # [U, B, 2]

    def reference_at(times):                                                    # [T] or [B, T] -> [T, B, 2]
        index = torch.searchsorted(union, times.contiguous())
        if times.dim() == 1:
            return on_union[index]
        return on_union[index.t(), torch.arange(batch).unsqueeze(0)]

    with torch.no_grad():
        for n in counts:
            t = grids[n]
            reference = reference_at(t)
            case = f"7 mixed VdP, {n} outputs"
            for name, options in (("nodecourse per-sample", {"per_sample": True}), ("nodecourse shared", {})):
                add(case, name, lambda options=options: nodecourse.solve(field, y0, t, rtol=tol, atol=tol, options=options),
                    lambda sol: sol.ys, lambda sol: sol.stats.n_calls, reference)
            counted = Counted(field)
            torchdiffeq.odeint(counted, y0, t, rtol=tol, atol=tol)
            add(case, "torchdiffeq", lambda: torchdiffeq.odeint(field, y0, t, rtol=tol, atol=tol), lambda ys: ys,
                lambda ys, calls=counted.calls: calls, reference)
            if torchode is not None:
                add(case, "torchode", lambda: _torchode_solve(field, y0, t, tol, tol), lambda out: out.ys.transpose(0, 1),
                    lambda out: out.stats["n_f_evals"].max().item(), reference)
            time_case(case)
        reference = reference_at(own)
        case = "7 mixed VdP, 50 own times per sample"
        add(case, "nodecourse per-sample", lambda: nodecourse.solve(field, y0, own, rtol=tol, atol=tol,
                                                                    options={"per_sample": True}),
            lambda sol: sol.ys, lambda sol: sol.stats.n_calls, reference)
        if torchode is not None:
            def torchode_own():
                term = torchode.ODETerm(field)
                solver = torchode.AutoDiffAdjoint(torchode.Dopri5(term=term),
                                                  torchode.IntegralController(atol=tol, rtol=tol, term=term))
                return solver.solve(torchode.InitialValueProblem(y0=y0, t_eval=own))
            add(case, "torchode", torchode_own, lambda out: out.ys.transpose(0, 1),
                lambda out: out.stats["n_f_evals"].max().item(), reference)
        time_case(case)
    return rows


# --- case 5: the adjoint ----------------------------------------------------------------------
def adjoint_case(batch, repeats):
    torch.manual_seed(0)
    net = MLP([2, 64, 64, 2])
    field = CountingField(net)
    y0 = torch.randn(batch, 2, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0.0, 1.0])
    rows = []

    def forward_backward(adjoint, options, tol):
        """Gradients, backward NFE, and the seconds of the forward solve and of the backward pass."""
        field.calls = 0
        start = time.perf_counter()
        ys = adjoint(field, y0, t, rtol=tol, atol=tol, adjoint_params=tuple(net.parameters()), adjoint_options=options)
        loss = ys[-1].pow(2).sum()
        middle = time.perf_counter()
        before = field.calls
        grads = torch.autograd.grad(loss, tuple(net.parameters()))
        end = time.perf_counter()
        return grads, field.calls - before, middle - start, end - middle

    # float64 reference gradient at a tight tolerance, by backprop through torchdiffeq (independent)
    net64 = MLP([2, 64, 64, 2]).double()
    net64.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    ys64 = torchdiffeq.odeint(lambda s, y: net64(y), y0.double(), t.double(), rtol=1e-12, atol=1e-12)
    reference = torch.autograd.grad(ys64[-1].pow(2).sum(), tuple(net64.parameters()))

    def grad_error(grads):
        return max(((g.double() - r).abs().max() / r.abs().max()).item() for g, r in zip(grads, reference))

    for tol in (1e-3, 1e-5, 1e-7):
        for seminorm in (False, True):
            options = {"norm": "seminorm"} if seminorm else None
            for name, adjoint in (("nodecourse", nodecourse.odeint_adjoint), ("torchdiffeq", torchdiffeq.odeint_adjoint)):
                grads, backward_nfe, _, _ = forward_backward(adjoint, options, tol)  # warm-up
                runs = [forward_backward(adjoint, options, tol) for _ in range(max(3, repeats // 2))]
                backward = statistics.median(r[3] for r in runs)
                forward = statistics.median(r[2] for r in runs)
                rows.append(Row(f"5 adjoint tol={tol:g}{' seminorm' if seminorm else ''}", name, backward,
                                backward_nfe, None, None, grad_error(grads),
                                extra={"what": "time and NFE of the backward pass", "forward ms": forward * 1e3}))
    # memory kept for backward, as the number of fixed steps grows
    memory = {}
    for n in (10, 100, 1000):
        opts = dict(method="rk4", options={"step_size": 1.0 / n})
        memory[f"adjoint {n}"] = saved_tensor_bytes(lambda: nodecourse.odeint_adjoint(field, y0, t, **opts))
        memory[f"backprop {n}"] = saved_tensor_bytes(lambda: nodecourse.odeint(field, y0, t, **opts))
    rows.append(Row("5 saved memory (bytes)", "nodecourse", 0.0, extra=memory))
    return rows


def own_times_gradient_case(batch, repeats, n_times=20):
    """A gradient through a batch of series, each observed at its own ``n_times`` irregular times in [0, 10]
    (an MLP field, rtol = atol = 1e-5, loss = sum of squares of every observed state). nodecourse solves
    with per-sample times, its gradient by the reverse solve (default norm or seminorm) or by replaying the
    steps; torchdiffeq solves once on the sorted union of all times and gathers, its gradient by its
    adjoint or by backprop.
    Time, batched backward NFE and gradient error of the backward pass; the forward's in ``extra``."""
    torch.manual_seed(0)
    net = MLP([2, 64, 64, 2])
    field = CountingField(net)
    params = tuple(net.parameters())
    gen = torch.Generator().manual_seed(5)
    own = torch.sort(torch.rand(batch, n_times, generator=gen) * 10, dim=1).values
    own[:, 0] = 0.0
    y0 = torch.rand(batch, 2, generator=gen) * 2 - 1
    union, inverse = torch.unique(own.reshape(-1), sorted=True, return_inverse=True)
    index = inverse.reshape(batch, n_times).t()                                   # [T, B] rows of the union
    samples = torch.arange(batch)
    tol = 1e-5

    def loss_at_own_times(ys):                                                     # [T, B, 2] at own times
        return ys.pow(2).sum()

    solvers = {
        "nodecourse adjoint": lambda: nodecourse.odeint_adjoint(field, y0, own, rtol=tol, atol=tol,
                                                                options={"per_sample": True}),
        "nodecourse adjoint seminorm": lambda: nodecourse.odeint_adjoint(field, y0, own, rtol=tol, atol=tol,
                                                                         options={"per_sample": True},
                                                                         adjoint_options={"norm": "seminorm"}),
        "nodecourse checkpoint": lambda: nodecourse.odeint_adjoint(field, y0, own, rtol=tol, atol=tol,
                                                                   options={"per_sample": True}, gradient="checkpoint"),
        "torchdiffeq": lambda: torchdiffeq.odeint_adjoint(field, y0, union, rtol=tol, atol=tol,
                                                          adjoint_params=params)[index, samples],
        "torchdiffeq backprop": lambda: torchdiffeq.odeint(field, y0, union, rtol=tol, atol=tol)[index, samples],
    }
    # float64 reference: backprop through torchdiffeq at a tight tolerance on the union grid (independent)
    net64 = MLP([2, 64, 64, 2]).double()
    net64.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    ys64 = torchdiffeq.odeint(lambda s, y: net64(y), y0.double(), union.double(), rtol=1e-10, atol=1e-10)
    reference = torch.autograd.grad(loss_at_own_times(ys64[index, samples]), tuple(net64.parameters()))

    def run(solve):
        field.calls = 0
        start = time.perf_counter()
        loss = loss_at_own_times(solve())
        middle, forward_calls = time.perf_counter(), field.calls
        grads = torch.autograd.grad(loss, params)
        return grads, forward_calls, field.calls - forward_calls, middle - start, time.perf_counter() - middle

    rows = []
    case = f"5 gradient, {n_times} own times each"
    for name, solve in solvers.items():
        grads, forward_nfe, backward_nfe, _, _ = run(solve)  # warm-up
        runs = [run(solve) for _ in range(repeats)]
        error = max(((g.double() - r).abs().max() / r.abs().max()).item() for g, r in zip(grads, reference))
        rows.append(Row(case, name, statistics.median(r[4] for r in runs), backward_nfe, None, None, error,
                        extra={"what": "time and batched NFE of the backward pass", "forward NFE": forward_nfe,
                               "forward ms": statistics.median(r[3] for r in runs) * 1e3}))
    return rows


# --- case 6: one epoch of an MNIST ODE-Net -------------------------------------------------------
class _ConvField(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.net = nn.Sequential(nn.GroupNorm(4, channels), nn.Tanh(), nn.Conv2d(channels, channels, 3, padding=1),
                                 nn.GroupNorm(4, channels), nn.Tanh(), nn.Conv2d(channels, channels, 3, padding=1))

        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.net(y)


class _ODENet(nn.Module):
    """Conv stem to 16x7x7, an ODE block, pooled linear head (after Chen et al. 2018's MNIST model)."""

    def __init__(self, solver):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.Tanh(),
                                  nn.Conv2d(16, 16, 3, stride=2, padding=1))
        self.field, self.solver = _ConvField(16), solver
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 7 * 7, 10))

    def forward(self, x):
        h = self.stem(x)
        h = self.solver(self.field, h, torch.tensor([0.0, 1.0]), rtol=1e-3, atol=1e-3)[-1]
        return self.head(h)


def mnist_case(n_train: Optional[int], batch_size=128):
    data = load_mnist(verbose=False)
    train, _ = split_holdout(data, n_test=1000, seed=0)
    images, labels = train.images, train.labels
    if n_train is not None:
        images, labels = images[:n_train], labels[:n_train]
    rows = []
    for name, solver in (("nodecourse", nodecourse.odeint), ("torchdiffeq", torchdiffeq.odeint)):
        torch.manual_seed(0)
        model = _ODENet(solver)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def epoch():
            for start in range(0, len(images), batch_size):
                x, y = images[start:start + batch_size], labels[start:start + batch_size]
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()

        seconds = median_time(epoch, repeats=2, warmup=0)
        model.field.calls = 0
        epoch()
        rows.append(Row(f"6 MNIST epoch ({len(images)} digits)", name, seconds, model.field.calls,
                        extra={"what": "NFE = calls of the field in one more epoch (backprop: all in the forward pass)"}))
    return rows
