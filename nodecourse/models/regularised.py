"""Regularised Neural ODEs (Finlay et al. 2020): the dynamics carry the running integrals of the kinetic
energy ``int ||f||^2 dt`` and of the Jacobian's Frobenius norm ``int ||df/dz||_F^2 dt`` along the solve.

The two integrals are computed by the solver itself: the state is augmented to the tuple
``(z, E_kin, E_jac)`` with ``dE_kin/dt = ||f||^2`` and ``dE_jac/dt = ||eps^T df/dz||^2``, where ``eps``
is one Gaussian probe drawn per solve, so the Frobenius norm costs one vector-Jacobian product per
evaluation instead of a full Jacobian. Penalising the two integrals keeps the learned dynamics
straight and smooth, which is what makes an adaptive solver take few steps.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nodecourse._validation import check_batch, check_count, check_nonnegative, check_positive
from nodecourse.adjoint import solve_adjoint
from nodecourse.solvers import ADAPTIVE_METHODS, FIXED_METHODS, solve

from ._compat import renamed
from .gradients import Adjoint, check_adjoint
from .mlp import MLP
from .ode_block import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL
from .odefunc import ODEFunc

__all__ = ["kinetic_integrand", "jacobian_probe_integrand", "RegularisedODEFunc", "RegularisedClassifier"]

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def kinetic_integrand(f: torch.Tensor) -> torch.Tensor:
    """``||f||^2`` per sample: ``[B, ...] -> [B]`` (the squared norm over every dim but the first)."""
    return f.reshape(f.shape[0], -1).pow(2).sum(dim=1)


def jacobian_probe_integrand(f: torch.Tensor, z: torch.Tensor, probe: torch.Tensor,
                             create_graph: bool = True) -> torch.Tensor:
    """``||eps^T df/dz||^2`` per sample, by one vector-Jacobian product: ``[B, ...] -> [B]``.

    ``f`` must have been computed from ``z`` (``z.requires_grad``); ``probe`` is ``eps``, shaped like
    ``f``. For a Gaussian ``eps`` the expectation is the squared Frobenius norm ``||df/dz||_F^2``,
    since ``E[eps^T J J^T eps] = tr(J J^T)``. Samples must not interact (no batch norm), so that the
    one backward pass through the batch gives every sample's own product.
    """
    (vjp,) = torch.autograd.grad(f, z, probe, create_graph=create_graph)
    return kinetic_integrand(vjp)


class RegularisedODEFunc(nn.Module):
    """The augmented dynamics ``(z, E_kin, E_jac)' = (f(t, z), ||f||^2, ||eps^T df/dz||^2)``.

    ``net`` is the network of the plain vector field ``f = ODEFunc(net, time_dependent)`` (kept as
    ``self.dynamics``, so a model can also solve without the integrals). The state is a tuple:
    ``z`` ``[B, ...]`` and the two running integrals ``[B]``. ``kinetic`` / ``jacobian`` say which
    integrands to compute; one left out has a zero derivative (and the Jacobian's VJP is skipped).
    The probe ``eps`` is drawn once per solve by :meth:`initial_state` (or :meth:`sample_probe`),
    so the dynamics stay a fixed function during the solve, as an adaptive solver requires.
    """

    def __init__(self, net: nn.Module, kinetic: bool = True, jacobian: bool = True,
                 time_dependent: bool = False) -> None:
        super().__init__()
        self.dynamics = ODEFunc(net, time_dependent=time_dependent)
        self.kinetic = bool(kinetic)
        self.jacobian = bool(jacobian)
        self.probe: torch.Tensor | None = None

    def sample_probe(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw a standard Gaussian probe shaped like ``z`` (on its device and dtype) and keep it."""
        self.probe = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        return self.probe

    def initial_state(self, z0: torch.Tensor, generator: torch.Generator | None = None) -> State:
        """``(z0, 0, 0)`` with the integrals ``[B]``; draws a fresh probe when the Jacobian term is on."""
        if not torch.is_tensor(z0) or z0.dim() < 1 or not z0.is_floating_point():
            got = tuple(z0.shape) if torch.is_tensor(z0) else type(z0).__name__
            raise TypeError(f"z0 must be a floating tensor [batch, ...], got {got}.")
        if self.jacobian:
            self.sample_probe(z0, generator)
        zeros = z0.new_zeros(z0.shape[0])
        return z0, zeros, zeros.clone()

    def forward(self, t: torch.Tensor | float, state: Sequence[torch.Tensor]) -> State:
        if not isinstance(state, (tuple, list)) or len(state) != 3:
            raise TypeError("RegularisedODEFunc works on the tuple state (z, E_kin, E_jac); build it with "
                            "func.initial_state(z0) and solve with that tuple as y0.")
        z = state[0]
        batch = z.shape[0]
        if not self.jacobian:
            f = self.dynamics(t, z)
            kin = kinetic_integrand(f) if self.kinetic else z.new_zeros(batch)
            return f, kin, z.new_zeros(batch)
        if self.probe is None or self.probe.shape != z.shape:
            got = "no probe" if self.probe is None else f"a probe of shape {tuple(self.probe.shape)}"
            raise ValueError(f"The Jacobian term needs a probe shaped like z {tuple(z.shape)}, found {got}; "
                             "start each solve from func.initial_state(z0), which draws one.")
        graph = torch.is_grad_enabled()  # training: the integrals must be differentiable
        with torch.enable_grad():
            z_in = z if z.requires_grad else z.detach().requires_grad_(True)
            f = self.dynamics(t, z_in)
            jac = jacobian_probe_integrand(f, z_in, self.probe.to(f.dtype), create_graph=graph)
        kin = kinetic_integrand(f) if self.kinetic else z.new_zeros(batch)
        if not graph:
            f, kin, jac = f.detach(), kin.detach(), jac.detach()
        return f, kin, jac

    def extra_repr(self) -> str:
        return f"kinetic={self.kinetic}, jacobian={self.jacobian}"


@renamed({"in_features": "input_size", "n_classes": "output_size", "hidden": "state_size",
          "width": "hidden_size"})
class RegularisedClassifier(nn.Module):
    """``x [B, input_size] -> logits [B, output_size]`` through a Neural ODE that can be regularised.

    ``z(0) = Linear(x)`` in ``state_size`` dims; ``dz/dt = MLP([state_size, hidden_size, hidden_size,
    state_size])(z)`` on ``[0, t1]``; logits ``Linear(z(t1))``. In training mode with a weight ``kinetic`` or ``jacobian``
    above zero the solve carries the running integrals and ``self.penalty`` holds
    ``kinetic * mean E_kin + jacobian * mean E_jac`` (add it to the loss); otherwise (eval mode, or
    both weights zero) it solves the plain ODE and the penalty is 0. ``self.nfe`` is the number of
    vector-field evaluations of the last solve, ``self.stats`` its full statistics.

    ``adjoint`` is the setting every model takes (:mod:`nodecourse.models.gradients`): ``False``
    backpropagates through the solver, ``True`` solves the adjoint ODE backwards, ``"checkpoint"``
    replays the forward steps. With the last two, ``self.nfe_backward`` is the number of evaluations of
    the last backward pass through the model (``None`` with ``False``, and until a backward pass runs).
    """

    def __init__(self, input_size: int = 2, output_size: int = 2, state_size: int = 4, hidden_size: int = 32,
                 kinetic: float = 0.0, jacobian: float = 0.0, t1: float = 1.0, method: str = DEFAULT_METHOD,
                 rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                 activation: type[nn.Module] = nn.Tanh, adjoint: Adjoint = False) -> None:
        super().__init__()
        self.input_size = check_count("input_size", input_size)
        self.output_size = check_count("output_size", output_size)
        self.state_size = state = check_count("state_size", state_size)
        self.hidden_size = width = check_count("hidden_size", hidden_size)
        if method not in FIXED_METHODS + ADAPTIVE_METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(FIXED_METHODS + ADAPTIVE_METHODS)}.")
        if method in FIXED_METHODS:
            raise ValueError(f"RegularisedClassifier measures the cost of adaptive solves; choose an adaptive "
                             f"method ({', '.join(ADAPTIVE_METHODS)}), not the fixed-step {method!r}.")
        t1 = check_positive("t1", t1, "end time")
        self.kinetic = check_nonnegative("kinetic", kinetic)
        self.jacobian = check_nonnegative("jacobian", jacobian)
        self.t1, self.method, self.rtol, self.atol = t1, method, rtol, atol
        self.adjoint = check_adjoint(adjoint, method)
        self.embed = nn.Linear(self.input_size, state)
        self.func = RegularisedODEFunc(MLP([state, width, width, state], activation),
                                       kinetic=self.kinetic > 0, jacobian=self.jacobian > 0)
        self.readout = nn.Linear(state, self.output_size)
        self.nfe: int = 0
        self.stats = None
        self.penalty: torch.Tensor | float = 0.0
        self._adjoint_solution = None

    @property
    def nfe_backward(self) -> int | None:
        """Evaluations of the last backward pass (adjoint or replayed steps); ``None`` when there is none."""
        backward = self._adjoint_solution.backward if self._adjoint_solution is not None else None
        return int(backward.nfe) if backward is not None else None

    @property
    def regularised(self) -> bool:
        return self.kinetic > 0 or self.jacobian > 0

    def _times(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0.0, self.t1], dtype=z.dtype, device=z.device)

    def _check(self, x: torch.Tensor) -> None:
        check_batch("RegularisedClassifier", x, self.input_size, self.embed.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        z0 = self.embed(x)
        if self.training and self.regularised:
            sol = self._solve(self.func, self.func.initial_state(z0))
            z1, e_kin, e_jac = (part[-1] for part in sol.ys)
            self.penalty = self.kinetic * e_kin.mean() + self.jacobian * e_jac.mean()
        else:
            sol = self._solve(self.func.dynamics, z0)
            z1 = sol.ys[-1]
            self.penalty = 0.0
        self.stats, self.nfe = sol.stats, int(sol.stats.nfe)
        return self.readout(z1)

    def _solve(self, func: nn.Module, state):
        """Solve ``func`` from ``state`` on ``[0, t1]``, differentiated as ``self.adjoint`` says (checked
        again here: it may have been set after construction)."""
        settings = dict(rtol=self.rtol, atol=self.atol, method=self.method)
        adjoint = check_adjoint(self.adjoint, self.method)
        times = self._times(state[0] if isinstance(state, tuple) else state)
        if adjoint is False:
            self._adjoint_solution = None
            return solve(func, state, times, **settings)
        gradient = "checkpoint" if adjoint == "checkpoint" else "adjoint"
        self._adjoint_solution = solve_adjoint(func, state, times, adjoint_params=tuple(self.func.parameters()),
                                               gradient=gradient, **settings)
        return self._adjoint_solution

    @torch.no_grad()
    def integrals(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The kinetic energy and the (probe-estimated) Jacobian norm integrated along each input's
        trajectory, whatever the weights: ``([B], [B])``. For monitoring a model, not for training."""
        self._check(x)
        monitor = RegularisedODEFunc(self.func.dynamics.net, kinetic=True, jacobian=True)
        z0 = self.embed(x)
        sol = solve(monitor, monitor.initial_state(z0, generator), self._times(z0), rtol=self.rtol,
                    atol=self.atol, method=self.method)
        return sol.ys[1][-1], sol.ys[2][-1]

    def extra_repr(self) -> str:
        return (f"kinetic={self.kinetic}, jacobian={self.jacobian}, t1={self.t1}, method={self.method!r}, "
                f"rtol={self.rtol}, atol={self.atol}, adjoint={self.adjoint!r}")
