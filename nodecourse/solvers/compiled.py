"""The optional ``torch.compile`` path: ``options={"compile": True}``.

On the small problems of a course a step costs more in Python and per-operation dispatch than in
arithmetic. Here one whole step (every evaluation of ``func`` in it, the stage combinations, the
error norm and, per sample, the step-size controller: the functions of :mod:`steps`, the same ones
the eager loops call) is traced once by ``torch.compile`` into one graph whose elementwise work is
fused. The first solve pays the compilation (seconds); later solves with the same ``func``, shapes,
dtype and method reuse it (each ``func`` has its own compiled copy of the step). If compiling fails
(no C++ compiler, a ``func`` the tracer cannot follow), the solve warns and continues without it.
"""
from __future__ import annotations

import functools
import types
import warnings
import weakref
from typing import Callable

import torch


class CompiledStep:
    """One solve's step function: compiled for this ``func`` (once, then reused), or eager after a failure.

    If compiling or running the compiled step raises, the solve warns and takes the eager step from
    then on; a genuine error in ``func`` then surfaces from the eager call with its usual traceback.
    """

    def __init__(self, step: Callable, func: Callable):
        self.step, self.func = step, func
        self.failed = False

    def __call__(self, *args):
        if not self.failed:
            try:
                # a field that counts its calls (self.calls += 1, as the course's fields do) must not make
                # the compiler guard on the counter's value and recompile at every solve
                with torch._dynamo.config.patch(allow_unspec_int_on_nn_module=True):
                    return _compiled_for(self.step, self.func)(*args)
            except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
                self.failed = True
                first_line = (str(error).strip().splitlines() or [""])[0][:200]
                warnings.warn(f"options['compile']=True: torch.compile could not compile the solver step "
                              f"({type(error).__name__}: {first_line}). Solving without compilation.",
                              RuntimeWarning, stacklevel=3)
        return self.step(*args)


_PER_FUNC: "weakref.WeakKeyDictionary[Callable, dict]" = weakref.WeakKeyDictionary()


def _compiled_for(step: Callable, func: Callable) -> Callable:
    """``torch.compile(step)`` for one vector field ``func``, kept while ``func`` lives.

    The compiler caches its graphs per code object, at most a few per object (torch's recompile
    limit), and checks them one by one on every call. Each field therefore gets its own copy of the
    step's code: a program or notebook that solves many fields keeps every one compiled, and a call
    checks only the graphs of its own field.
    """
    try:
        table = _PER_FUNC.setdefault(func, {})
    except TypeError:  # func cannot be weakly referenced: share one compiled step
        return _shared_compiled(step)
    if step not in table:
        own_copy = types.FunctionType(step.__code__.replace(), step.__globals__, step.__name__, step.__defaults__,
                                      step.__closure__)
        table[step] = torch.compile(own_copy)
    return table[step]


@functools.lru_cache(maxsize=None)
def _shared_compiled(step: Callable) -> Callable:
    return torch.compile(step)
