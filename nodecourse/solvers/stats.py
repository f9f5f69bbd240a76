"""Solve statistics: what a solve cost, the currency in which the course compares solvers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch

Count = Union[int, torch.Tensor]


@dataclass
class SolveStats:
    """Counts of one solve.

    ``nfe``: vector-field evaluations; ``n_steps``: attempted steps; ``n_accepted`` / ``n_rejected``:
    steps kept / retried with a smaller step. Plain ints when the batch shares one step size,
    ``[batch]`` integer tensors in per-sample mode (then ``nfe`` counts the evaluations each sample
    needed while it was still running). ``n_calls`` is how many times ``func`` was called on the
    whole batch, the same as ``nfe`` when the batch shares one step size.
    """

    nfe: Count
    n_steps: Count
    n_accepted: Count
    n_rejected: Count
    n_calls: int = 0

    @staticmethod
    def zeros(problem) -> "SolveStats":
        return SolveStats.fixed(problem, n_steps=0, nfe=0)

    @staticmethod
    def fixed(problem, n_steps: int, nfe: int) -> "SolveStats":
        if problem.per_sample:
            def full(v: int) -> torch.Tensor:
                return torch.full((problem.batch,), v, dtype=torch.long, device=problem.device)
            return SolveStats(full(nfe), full(n_steps), full(n_steps), full(0), nfe)
        return SolveStats(nfe, n_steps, n_steps, 0, nfe)

    def __add__(self, other: "SolveStats") -> "SolveStats":
        """The counts of two solves together (e.g. the intervals of an adjoint's reverse solve)."""
        return SolveStats(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def as_tuple(self) -> tuple:
        return self.nfe, self.n_steps, self.n_accepted, self.n_rejected, self.n_calls

    def total(self) -> dict:
        """The counts summed over the batch, as plain ints (the total work done)."""
        return {k: int(v.sum()) if torch.is_tensor(v) else int(v) for k, v in self.as_dict().items()}

    def as_dict(self) -> dict:
        return {"nfe": self.nfe, "n_steps": self.n_steps, "n_accepted": self.n_accepted,
                "n_rejected": self.n_rejected, "n_calls": self.n_calls}
