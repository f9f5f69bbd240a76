"""Error control: how a trial step's error estimate becomes a ratio to the tolerance, and how the
ratio becomes accept/reject and the next step size (on the host for a shared step; per sample, on
the device, in :func:`per_sample.trial_step`)."""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from .checks import SolverError
from .norms import rms_norm, rms_of_all

Tolerance = Union[float, torch.Tensor]


class Control:
    """The step-size controller's constants: h_new = h * clamp(safety * ratio^exponent, ., ifactor)."""

    def __init__(self, safety: float, ifactor: float, dfactor: float, exponent: float, max_num_steps: int):
        self.safety, self.ifactor, self.dfactor = safety, ifactor, dfactor
        self.exponent, self.max_num_steps = exponent, max_num_steps

    def factor(self, ratio: float) -> float:
        """Step-size factor for an error ratio (a float): grow up to ifactor after an accepted step,
        shrink no further than dfactor after a rejected one."""
        if ratio != ratio:  # NaN: the trial produced non-finite values
            return self.dfactor
        if ratio == 0.0:
            return self.ifactor
        factor = self.safety * ratio ** self.exponent
        return min(self.ifactor, max(factor, 1.0 if ratio <= 1 else self.dfactor))

    def factor_tensor(self, ratio: torch.Tensor, accepted: torch.Tensor) -> torch.Tensor:
        """The same rule on a ``[B]`` tensor of ratios (``accepted``: ``ratio <= 1``), on the device."""
        factor = ratio.pow(self.exponent).mul_(self.safety)
        floor = torch.where(accepted, 1.0, self.dfactor)
        # fmax, unlike clamp, ignores NaN: a NaN ratio (a non-finite trial) shrinks the step by dfactor
        return torch.fmax(factor, floor).clamp_(max=self.ifactor)

    def check_steps(self, n: int, problem, t=None) -> None:
        """Stop a solve past ``max_num_steps`` with the likely cause (``t``: where it got to)."""
        if n > self.max_num_steps:
            t_end = float(problem.t[..., -1].detach().max()) * problem.direction
            where = ""
            if t is not None:
                reached = float(torch.as_tensor(t).min())  # internal time runs forward: the slowest sample
                where = f" (it got to t={reached * problem.direction:.6g})"
            raise SolverError(
                f"The solver took more than max_num_steps={self.max_num_steps:,} steps before reaching "
                f"t={t_end:g}{where}. The likely cause is stiffness: a fast, decaying component forces an explicit "
                f"method to steps below its stability limit however loose the tolerance (notebook 11, "
                f"'Stiffness'); or the tolerance is tighter than the problem needs. Loosen rtol/atol, shorten the "
                f"time span, rescale the problem, or raise options['max_num_steps'] if the work is expected."
            )


def error_ratio(norm: Callable, error: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol: Tolerance,
                atol: Tolerance, batch: Optional[int]) -> torch.Tensor:
    """``norm(error / (atol + rtol * max(|y0|, |y1|)))`` per sample, ``[batch]``, NaN where ``y1`` is not
    finite. ``batch`` is ``None`` for a shared step (then the states may have any shape, and the ratio
    is ``[1]``, or 0-d from the RMS norm) or ``B`` for ``[B, N]`` states with one step per sample."""
    scale = torch.maximum(y0.abs(), y1.abs()).mul_(rtol).add_(atol)
    # + 0 * y1: NaN wherever y1 is NaN or infinite (0 * inf = NaN), so such a sample's ratio is NaN even
    # when the error estimate itself stayed finite; one operation instead of a separate finiteness test
    scaled = (error / scale).add_(y1.detach() if y1.requires_grad else y1, alpha=0.0)
    if batch is None and norm is rms_norm:  # one shared step: the norm of every entry, no reshape (an operation)
        ratio = rms_of_all(scaled)
    else:
        batch = batch or 1
        rows = y1.dim() == 2 and y1.shape[0] == batch  # already [batch, N]: no reshape
        ratio = norm(scaled if rows else scaled.reshape(batch, -1))
    return ratio.detach() if ratio.requires_grad else ratio  # step sizes are chosen, not differentiated
