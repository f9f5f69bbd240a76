"""ODE solvers: explicit Runge-Kutta methods from Butcher tableaux, fixed-step and adaptive,
with a shared or a per-sample step size, dense output and solve statistics."""
from .api import Solution, odeint, solve
from .checks import SolverError
from .stats import SolveStats
from .tableaux import ADAPTIVE_METHODS, FIXED_METHODS, METHODS, TABLEAUX, ButcherTableau

__all__ = ["odeint", "solve", "Solution", "SolveStats", "SolverError", "ButcherTableau", "TABLEAUX",
           "METHODS", "FIXED_METHODS", "ADAPTIVE_METHODS"]
