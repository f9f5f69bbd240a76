"""The initial value problem in the flat form the steppers work on.

Every state, a tensor or a tuple of tensors, becomes one ``[B, N]`` tensor: ``B = 1`` when the
batch shares one step size (the whole state is one sample), ``B = batch`` in per-sample mode. Time
runs forward inside the solver; a decreasing ``t`` is handled by solving ``dy/ds = -f(-s, y)``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .checks import check_func_output


CALLBACKS = ("callback_step", "callback_accept_step", "callback_reject_step")
_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def plain_call(func: Callable) -> Callable:
    """``func.forward`` where calling ``func`` would call just that, else ``func`` itself.

    ``nn.Module.__call__`` checks for hooks on every call (1-2 us, a tenth of a small field's own time)
    and, finding none, calls ``forward``; a solve checks once instead: an ``nn.Module`` whose class keeps
    ``nn.Module``'s call, with no hooks of its own or global ones, not compiled by ``module.compile()``
    and not being traced by ``torch.jit.trace``. A hook registered during a solve applies from the next.
    """
    module = torch.nn.Module
    if not isinstance(func, module):
        return func
    cls = type(func)
    if cls.__call__ is not module.__call__ or getattr(cls, "_call_impl", None) is not module._call_impl:
        return func
    if getattr(func, "_compiled_call_impl", None) is not None or torch._C._get_tracing_state():
        return func
    hooks = [getattr(func, name, None) for name in _MODULE_HOOKS]
    hooks += [getattr(torch.nn.modules.module, name, None) for name in _GLOBAL_HOOKS]
    if any(h is None or len(h) > 0 for h in hooks):  # a hook, or a torch whose names differ: the full call
        return func
    return func.forward


def split_flat(flat: torch.Tensor, shapes: list, widths: list, lead: tuple[int, ...] = ()) -> tuple[torch.Tensor, ...]:
    """``[*lead, B, N]`` -> the state's tensors, ``[*lead, *shape]`` each (``widths``: their sizes per sample)."""
    if len(shapes) == 1:
        return (flat.reshape((*lead, *shapes[0])),)
    out, start = [], 0
    for shape, width in zip(shapes, widths):
        out.append(flat[..., start:start + width].reshape((*lead, *shape)))
        start += width
    return tuple(out)


class FlatField:
    """``func`` seen on the flat ``[B, N]`` state, as a plain object ``torch.compile`` can inline (the
    compiled steps call this; the eager ones call :class:`FlatProblem`, which also checks and counts).

    ``s`` is the internal time: 0-d (shared step) or ``[B]`` (per sample); a decreasing time span
    is solved as ``dy/ds = -f(-s, y)``.
    """

    def __init__(self, func: Callable, shapes: list, widths: list, batch: int, is_tuple: bool, direction: float):
        self.func, self.shapes, self.widths, self.batch = func, shapes, widths, batch
        self.is_tuple, self.direction = is_tuple, direction

    def __call__(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = (-s if self.direction < 0 else s).to(y.dtype)  # func sees t in the state's dtype
        if self.is_tuple:
            f = torch.cat([p.reshape(self.batch, -1)
                           for p in self.func(t, split_flat(y, self.shapes, self.widths))], dim=1)
        else:
            f = self.func(t, y.reshape(self.shapes[0])).reshape(self.batch, -1)
        return -f if self.direction < 0 else f


class FlatProblem:
    """``func(t, y)`` on a ``[B, N]`` view of the state, counting evaluations.

    ``self.y0`` is ``[B, N]``, ``self.t`` the output times ``[T]`` (or each sample's, ``[B, T]``) turned increasing,
    ``self.ends`` its first and last time (of the first row) as floats.
    ``self(t, y)`` takes ``t`` of shape ``[B]`` (per sample) or ``[1]`` and returns ``[B, N]``.
    """

    def __init__(self, func: Callable, y0: tuple[torch.Tensor, ...], is_tuple: bool, t: torch.Tensor,
                 per_sample: bool):
        self.func = func
        self.call = plain_call(func)  # what evaluations use once func's output is checked
        self.is_tuple = is_tuple
        self.shapes = [y.shape for y in y0]
        self.numels = [y.numel() for y in y0]
        self.per_sample = per_sample
        if per_sample:
            batch_sizes = {y.shape[0] if y.dim() > 0 else None for y in y0}
            if None in batch_sizes or len(batch_sizes) != 1:
                raise ValueError(
                    "per_sample=True treats dim 0 of the state as the batch, so every state tensor needs "
                    f"the same size in dim 0; got shapes {[tuple(s) for s in self.shapes]}."
                )
            self.batch = batch_sizes.pop()
        else:
            self.batch = 1
        self.widths = [n // self.batch for n in self.numels]
        first = t if t.dim() == 1 else t[0]  # [T] (per-sample times [B, T] share one direction)
        ends = first.detach()[::max(len(first) - 1, 1)].tolist()  # the first and the last time (a view)
        self.direction = 1.0 if len(ends) < 2 or ends[-1] > ends[0] else -1.0
        self.ends = tuple(v * self.direction for v in ends)  # the internal first and last time, floats
        self.t = t * self.direction if self.direction < 0 else t
        self.time_dtype = t.dtype
        self.y0 = self.flatten(y0)
        self.dtype, self.device = self.y0.dtype, self.y0.device
        self.nfe = 0
        self.callbacks = {name: getattr(func, name) for name in CALLBACKS if callable(getattr(func, name, None))}
        self._checked = False
        self._simple = False  # set once func's output has been checked

    # --- shape plumbing --------------------------------------------------------------------
    def flatten(self, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Tuple of state-shaped tensors -> ``[B, N]``."""
        if len(parts) == 1:
            return parts[0].reshape(self.batch, -1)
        return torch.cat([p.reshape(self.batch, -1) for p in parts], dim=1)

    def unflatten(self, flat: torch.Tensor, lead: tuple[int, ...] = ()) -> tuple[torch.Tensor, ...]:
        """``[*lead, B, N]`` -> tuple of ``[*lead, *shape]`` tensors."""
        return split_flat(flat, self.shapes, self.widths, lead)

    def to_user(self, parts: tuple[torch.Tensor, ...]):
        return parts if self.is_tuple else parts[0]

    def user_time(self, s: torch.Tensor) -> torch.Tensor:
        """Internal times -> the ``t`` handed to ``func``: 0-d when shared, ``[B]`` per sample, in the
        state's dtype (as torchdiffeq does: a field may combine ``t`` with ``y``)."""
        t = s if (self.per_sample or s.dim() == 0) else s.reshape(())
        t = t if t.dtype == self.dtype else t.to(self.dtype)
        return -t if self.direction < 0 else t

    def callback(self, name: str, s: torch.Tensor, y: torch.Tensor, dt) -> None:
        """Call ``func.<name>(t0, y0, dt)`` if func has it, as torchdiffeq does: before each step
        (``callback_step``) and after each accepted or rejected one, in the user's time and shapes."""
        callback = self.callbacks.get(name)
        if callback is None:
            return
        s = torch.as_tensor(s, dtype=self.time_dtype, device=self.device).reshape(())
        dt = torch.as_tensor(dt, dtype=self.time_dtype, device=self.device).reshape(())
        y = self.to_user(self.unflatten(y.reshape(self.batch, -1)))
        callback(s * self.direction, y, dt)  # dt stays positive, as in torchdiffeq

    # --- evaluation ------------------------------------------------------------------------
    def direct(self) -> Optional[Callable]:
        """``func`` on states of the user's shape, for steppers, when that is allowed: a single tensor,
        time running forward in the state's dtype, and func's output already checked; else ``None``.
        Saves the two reshapes per evaluation (evaluations are not counted then); each output's shape is
        still compared with the state's (a tuple comparison)."""
        return self._shape_checked if self._simple else None

    def direct_flat(self) -> Optional[Callable]:
        """:meth:`direct` when the user's state already is ``[B, N]`` (so no reshape is ever needed),
        else ``None``. For per-sample mode, whose masks work on ``[B, N]``."""
        return self.direct() if tuple(self.shapes[0]) == (self.batch, self.widths[0]) else None

    def _shape_checked(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f = self.call(t, y)
        if f.shape != y.shape:
            self.reject_output(f)
        return f

    def reject_output(self, f) -> None:
        """Raise the error for an output of func that does not match the state (found after the first call)."""
        check_func_output(f, self.unflatten(self.y0), self.is_tuple)  # raises with the detailed message
        raise ValueError("func(t, y) returned an output unlike the state.")  # pragma: no cover

    def traceable_field(self) -> "FlatField":
        """The flat field as a plain object ``torch.compile`` can trace (it counts no evaluations:
        the compiled steps add theirs to ``self.nfe``)."""
        return FlatField(self.func, self.shapes, self.widths, self.batch, self.is_tuple, self.direction)

    def __call__(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        if self._simple:  # the common case: one tensor, time forward; two reshapes
            s = s if self.per_sample or s.dim() == 0 else s.reshape(())
            f = self.call(s, y.reshape(self.shapes[0]))
            if f.shape != self.shapes[0]:
                self.reject_output(f)
            return f.reshape(self.batch, -1)
        t = self.user_time(s)
        if self._checked and not self.is_tuple:
            f = self.call(t, y.reshape(self.shapes[0]))
            if not torch.is_tensor(f) or f.shape != self.shapes[0]:
                self.reject_output(f)
            f = f.reshape(self.batch, -1)
        else:
            state = self.to_user(self.unflatten(y))
            f = self.call(t, state) if self._checked else self._first_call(t, state)
            if not self._checked or not all(torch.is_tensor(fi) and fi.shape == shape for fi, shape in zip(f, self.shapes)):
                check_func_output(f, self.unflatten(y), self.is_tuple)
                self._checked = True
                self._simple = not self.is_tuple and self.direction > 0 and self.time_dtype == self.dtype
            f = self.flatten(tuple(f) if self.is_tuple else (f,))
        return -f if self.direction < 0 else f

    def _first_call(self, t: torch.Tensor, state):
        """func's first evaluation, where a field and a state on different devices meet first."""
        try:
            return self.func(t, state)
        except RuntimeError as error:
            if "device" not in str(error).lower():
                raise
            raise ValueError(
                f"func(t, y) failed on the state's device ({self.device}): {str(error).splitlines()[0]} The field's "
                f"parameters are probably on another device: move the field with func.to(y0.device) (or the state "
                f"to the field's device).") from error
