"""Checkers for the course's exercises: one module per notebook (``ex01`` ... ), built on ``checking``.

In an exercise notebook::

    from nodecourse.exercises import ex02
    euler_step = ex02.check_euler_step(euler_step)   # prints a report, returns the function to go on with
"""
from .checking import Case, Report, check_function, close

__all__ = ["Case", "Report", "check_function", "close"]
