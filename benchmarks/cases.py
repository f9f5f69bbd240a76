"""The benchmark cases: nodecourse, torchdiffeq and torchode on the same problems, same process.

Each case returns a list of :class:`harness.Row`. Sizes follow the performance issue; ``scale``
below 1 shrinks them for a quick run (the notebooks' live versions).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torchdiffeq
from torch import nn

import nodecourse
from nodecourse.models import MLP
from nodecourse.benchmarking import Counted, Row, call_time, median_time, saved_tensor_bytes
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
def mlp_case(name, sizes, batch, repeats, with_torchode=True):
    """dopri5 at rtol = atol = 1e-6 and rk4 at h = 0.05 on t in [0, 5]."""
    _, field = mlp_field(sizes)
    y0 = torch.randn(batch, sizes[0], generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 5.0])
    bare = call_time(field, t[0], y0)
    reference = reference_solution(field, y0, t)
    rows = []
    for method, kwargs in (("dopri5", dict(rtol=1e-6, atol=1e-6)), ("rk4", dict(options={"step_size": 0.05}))):
        case = f"{name} {method}"
        with torch.no_grad():
            for solver_name, solve in (("nodecourse", nodecourse.odeint), ("torchdiffeq", torchdiffeq.odeint)):
                counted = Counted(field)
                ys = solve(counted, y0, t, method=method, **kwargs)
                seconds = median_time(lambda: solve(field, y0, t, method=method, **kwargs), repeats)
                rows.append(Row(case, solver_name, seconds, counted.calls, None, seconds / (counted.calls * bare),
                                _error(ys[-1], reference[-1])))
            if method == "dopri5":
                sol = nodecourse.solve(field, y0, t, method=method, **kwargs)
                rows[-2].steps = sol.stats.n_steps
                if with_torchode and torchode is not None:
                    out = _torchode_solve(field, y0, t, 1e-6, 1e-6)
                    seconds = median_time(lambda: _torchode_solve(field, y0, t, 1e-6, 1e-6), repeats)
                    nfe = out.stats["n_f_evals"].max().item()
                    rows.append(Row(case, "torchode (per sample)", seconds, nfe, out.stats["n_steps"].float().mean().item(),
                                    seconds / (nfe * bare), _error(out.ys[:, -1], reference[-1])))
            else:
                rows[-2].steps = rows[-1].steps = 100
    return rows


# --- case 3: Van der Pol, many outputs ----------------------------------------------------------
def vdp_case(batch, repeats):
    field = van_der_pol(torch.tensor(2.0))
    y0 = torch.rand(batch, 2, generator=torch.Generator().manual_seed(2)) * 4 - 2
    t = torch.linspace(0, 10, 200)
    reference = reference_solution(field, y0, t)
    bare = call_time(field, t[0], y0)
    rows = []
    with torch.no_grad():
        for name, solve in (("nodecourse", nodecourse.odeint), ("torchdiffeq", torchdiffeq.odeint)):
            counted = Counted(field)
            ys = solve(counted, y0, t, rtol=1e-5, atol=1e-5)
            seconds = median_time(lambda: solve(field, y0, t, rtol=1e-5, atol=1e-5), repeats)
            rows.append(Row("3 VdP mu=2, 200 outputs", name, seconds, counted.calls, None,
                            seconds / (counted.calls * bare), _error(ys, reference)))
    return rows


# --- case 4: a mixed batch, shared vs per-sample steps -------------------------------------------
def mixed_case(batch, repeats):
    """Van der Pol with mu log-uniform in [0.5, 20]: some samples need far smaller steps than others."""
    gen = torch.Generator().manual_seed(3)
    mu = torch.exp(torch.empty(batch).uniform_(math.log(0.5), math.log(20.0), generator=gen))
    field = van_der_pol(mu)
    y0 = torch.rand(batch, 2, generator=gen) * 4 - 2
    t = torch.tensor([0.0, 10.0])
    tol = 1e-5
    reference = reference_solution(field, y0, t)[-1]
    rows = []

    def worst(ys):
        """The largest per-sample error as a multiple of that sample's tolerance."""
        scale = tol + tol * reference.abs()
        return ((ys - reference).abs() / scale).amax().item()

    with torch.no_grad():
        shared = nodecourse.solve(field, y0, t, rtol=tol, atol=tol)
        seconds = median_time(lambda: nodecourse.solve(field, y0, t, rtol=tol, atol=tol), repeats)
        rows.append(Row("4 mixed VdP", "nodecourse shared", seconds, shared.stats.nfe, shared.stats.n_steps, None,
                        _error(shared.ys[-1], reference),
                        extra={"function work (sample evals)": shared.stats.nfe * batch,
                               "worst error / tol": worst(shared.ys[-1])}))
        per = nodecourse.solve(field, y0, t, rtol=tol, atol=tol, options={"per_sample": True})
        seconds = median_time(lambda: nodecourse.solve(field, y0, t, rtol=tol, atol=tol, options={"per_sample": True}), repeats)
        rows.append(Row("4 mixed VdP", "nodecourse per-sample", seconds, per.stats.n_calls, per.stats.n_steps.float().mean().item(),
                        None, _error(per.ys[-1], reference),
                        extra={"steps per sample min/median/max": (int(per.stats.n_steps.min()), int(per.stats.n_steps.median()), int(per.stats.n_steps.max())),
                               "needed sample evals": int(per.stats.nfe.sum()),
                               "function work (sample evals)": per.stats.n_calls * batch,
                               "worst error / tol": worst(per.ys[-1])}))
        counted = Counted(field)
        ys = torchdiffeq.odeint(counted, y0, t, rtol=tol, atol=tol)
        seconds = median_time(lambda: torchdiffeq.odeint(field, y0, t, rtol=tol, atol=tol), repeats)
        rows.append(Row("4 mixed VdP", "torchdiffeq", seconds, counted.calls, None, None, _error(ys[-1], reference),
                        extra={"worst error / tol": worst(ys[-1])}))
        if torchode is not None:
            out = _torchode_solve(field, y0, t, tol, tol)
            seconds = median_time(lambda: _torchode_solve(field, y0, t, tol, tol), repeats)
            rows.append(Row("4 mixed VdP", "torchode", seconds, out.stats["n_f_evals"].max().item(),
                            out.stats["n_steps"].float().mean().item(), None, _error(out.ys[:, -1], reference),
                            extra={"worst error / tol": worst(out.ys[:, -1])}))
    return rows


# --- case 5: the adjoint ----------------------------------------------------------------------
class _Field(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, t, y):
        self.calls += 1
        return self.net(y)


def adjoint_case(batch, repeats):
    torch.manual_seed(0)
    net = MLP([2, 64, 64, 2])
    field = _Field(net)
    y0 = torch.randn(batch, 2, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0.0, 1.0])
    rows = []

    def forward_backward(adjoint, options, tol):
        field.calls = 0
        ys = adjoint(field, y0, t, rtol=tol, atol=tol, adjoint_params=tuple(net.parameters()), adjoint_options=options)
        before = field.calls
        loss = ys[-1].pow(2).sum()
        grads = torch.autograd.grad(loss, tuple(net.parameters()))
        return grads, field.calls - before

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
                grads, backward_nfe = forward_backward(adjoint, options, tol)
                seconds = median_time(lambda: forward_backward(adjoint, options, tol), max(3, repeats // 2))
                rows.append(Row(f"5 adjoint tol={tol:g}{' seminorm' if seminorm else ''}", name, seconds,
                                backward_nfe, None, None, grad_error(grads), extra={"what": "forward+backward; NFE = backward"}))
    # memory kept for backward, as the number of fixed steps grows
    memory = {}
    for n in (10, 100, 1000):
        opts = dict(method="rk4", options={"step_size": 1.0 / n})
        memory[f"adjoint {n}"] = saved_tensor_bytes(lambda: nodecourse.odeint_adjoint(field, y0, t, **opts))
        memory[f"backprop {n}"] = saved_tensor_bytes(lambda: nodecourse.odeint(field, y0, t, **opts))
    rows.append(Row("5 saved memory (bytes)", "nodecourse", 0.0, extra=memory))
    return rows


# --- case 6: one epoch of an MNIST ODE-Net -------------------------------------------------------
class _ConvField(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.net = nn.Sequential(nn.GroupNorm(4, channels), nn.Tanh(), nn.Conv2d(channels, channels, 3, padding=1),
                                 nn.GroupNorm(4, channels), nn.Tanh(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, t, y):
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
        rows.append(Row(f"6 MNIST epoch ({len(images)} digits)", name, seconds))
    return rows
