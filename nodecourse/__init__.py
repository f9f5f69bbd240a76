"""nodecourse: the shared package of the Neural ODE course (solvers, the adjoint method, models)."""
from .adjoint import AdjointSolution, odeint_adjoint, solve_adjoint
from .solvers import METHODS, Solution, SolverError, SolveStats, odeint, odeint_event, solve

__version__ = "0.1.0"
__all__ = ["odeint", "odeint_adjoint", "solve_adjoint", "AdjointSolution", "odeint_event", "solve", "Solution", "SolveStats", "SolverError", "METHODS"]
