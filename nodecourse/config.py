"""Course-wide settings: fast mode, the compute device and reproducible seeding."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["FAST", "device", "seed_everything", "fast_mode"]


def fast_mode() -> bool:
    """True when ``NODECOURSE_FAST`` is set to a truthy value ("1", "true", "yes")."""
    return os.environ.get("NODECOURSE_FAST", "0").strip().lower() in {"1", "true", "yes", "on"}


FAST: bool = fast_mode()
"""Fast mode shrinks every training loop so the whole course runs as tests in minutes."""


def device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices) so a notebook gives the same numbers each run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
