"""``method="scipy_solver"``: SciPy's ``solve_ivp`` behind the same call, as in torchdiffeq.

For what the explicit Runge-Kutta methods cannot do well: stiff problems, with SciPy's implicit
solvers (``options={"solver": "LSODA"}``, the default, or ``"BDF"``, ``"Radau"``; also ``"RK45"``,
``"RK23"``, ``"DOP853"``). The solve runs in NumPy on the CPU in float64 and is not differentiable by
backpropagation (the adjoint method still gives gradients); results come back in ``y0``'s dtype and
device.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .stats import SolveStats

if TYPE_CHECKING:  # the problem module imports the input checks, which import this one
    from .problem import FlatProblem

NAME = "scipy_solver"
SOLVERS = ("LSODA", "BDF", "Radau", "RK45", "RK23", "DOP853")
OPTIONS = {"solver", "min_step", "max_step"}


def check_solver_options(options: dict) -> None:
    solver = options.get("solver", "LSODA")
    if solver not in SOLVERS:
        raise ValueError(f"options['solver'] must be one of {', '.join(SOLVERS)} (SciPy's solve_ivp methods), "
                         f"got {solver!r}.")
    for key in ("min_step", "max_step"):
        if key in options and not float(options[key]) >= 0:
            raise ValueError(f"options[{key!r}] must be a number >= 0, got {options[key]!r}.")


def integrate_scipy(problem: "FlatProblem", rtol: float, atol: float, options: dict) -> tuple[list, SolveStats]:
    """Solve with ``scipy.integrate.solve_ivp``; the ``[1, N]`` states at the output times and the statistics."""
    try:
        from scipy.integrate import solve_ivp
    except ImportError as error:  # pragma: no cover - scipy comes with the course's dependencies
        raise ImportError("method='scipy_solver' needs SciPy: pip install scipy.") from error
    if problem.per_sample:
        raise ValueError("method='scipy_solver' solves the batch as one system: drop per_sample.")
    t = problem.t.detach().to("cpu", torch.float64)
    if len(t) == 1:
        return [problem.y0], SolveStats.zeros(problem)

    def field(s: float, y):
        with torch.no_grad():
            state = torch.as_tensor(y, dtype=problem.dtype).reshape(problem.y0.shape).to(problem.device)
            f = problem(torch.tensor(s, dtype=problem.time_dtype, device=problem.device), state)
        return f.detach().to("cpu", torch.float64).numpy().reshape(-1)

    kwargs = {k: float(options[k]) for k in ("min_step", "max_step") if k in options}
    result = solve_ivp(field, (float(t[0]), float(t[-1])), problem.y0.detach().to("cpu", torch.float64).numpy()
                       .reshape(-1), method=options.get("solver", "LSODA"), t_eval=t.numpy(), rtol=rtol, atol=atol,
                       **kwargs)
    if not result.success:
        from .checks import SolverError  # (imported here: the checks import this module)
        raise SolverError(f"SciPy's {options.get('solver', 'LSODA')} failed: {result.message}")
    ys = torch.as_tensor(result.y.T, dtype=problem.dtype).to(problem.device)
    outputs = [problem.y0] + [y.reshape(problem.y0.shape) for y in ys[1:]]
    stats = SolveStats(int(result.nfev), len(t) - 1, len(t) - 1, 0, int(result.nfev))
    return outputs, stats
