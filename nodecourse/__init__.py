"""nodecourse: the shared package of the Neural ODE course (solvers, the adjoint method, models)."""
from .adjoint import odeint_adjoint
from .solvers import METHODS, Solution, SolverError, SolveStats, odeint, odeint_event, solve

__version__ = "0.1.0"
__all__ = ["odeint", "odeint_adjoint", "odeint_event", "solve", "Solution", "SolveStats", "SolverError", "METHODS"]
