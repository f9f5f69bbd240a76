"""nodecourse: the shared package of the Neural ODE course (solvers, the adjoint method, models)."""
from .solvers import METHODS, Solution, SolverError, SolveStats, odeint, solve

__version__ = "0.1.0"
__all__ = ["odeint", "solve", "Solution", "SolveStats", "SolverError", "METHODS"]

try:  # the adjoint builds on the solvers
    from .adjoint import odeint_adjoint  # noqa: F401
    __all__.append("odeint_adjoint")
except ImportError:  # pragma: no cover - only while the package is being assembled
    pass
