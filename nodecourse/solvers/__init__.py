"""ODE solvers: explicit Runge-Kutta methods from Butcher tableaux, fixed-step and adaptive,
with a shared or a per-sample step size, dense output and solve statistics."""
from .api import Solution, odeint, solve
from .checks import SolverError
from .events import odeint_event
from .stats import SolveStats
from .tableaux import ADAPTIVE_METHODS, FIXED_METHODS, METHODS, TABLEAUX, ButcherTableau

__all__ = ["odeint", "odeint_event", "solve", "Solution", "SolveStats", "SolverError", "ButcherTableau", "TABLEAUX",
           "METHODS", "FIXED_METHODS", "ADAPTIVE_METHODS"]
