"""Course-wide settings: fast mode, the compute device and reproducible seeding."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from nodecourse._validation import check_seed

__all__ = ["FAST", "device", "seed_everything", "fast_mode"]

_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off", "")
_DEVICE_TYPES = ("cpu", "cuda", "mps")


def fast_mode() -> bool:
    """Whether ``NODECOURSE_FAST`` turns fast mode on.

    The rule: ``1``, ``true``, ``yes`` or ``on`` mean on; ``0``, ``false``, ``no``, ``off``, empty or
    unset mean off (case and surrounding spaces do not matter). Anything else (``2``, ``y``, ``1.0``)
    is a ValueError rather than a silent "off".
    """
    raw = os.environ.get("NODECOURSE_FAST", "")
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(
        f"NODECOURSE_FAST={raw!r} is not understood; set it to one of {', '.join(_ON)} (fast mode on) or "
        f"{', '.join(v for v in _OFF if v)} (off), or leave it unset or empty (off)."
    )


FAST: bool = fast_mode()
"""Fast mode shrinks every training loop so the whole course runs as tests in minutes."""


def device(name: str | torch.device | None = None) -> torch.device:
    """The best available device (CUDA, then Apple's MPS, then the CPU), or the one named.

    ``name`` ("cpu", "cuda", "cuda:1", "mps" or a ``torch.device``) is checked: an unknown name or a
    device this machine does not have is a ValueError that says what is available.
    """
    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if isinstance(name, str):
        try:
            chosen = torch.device(name.strip().lower())
        except RuntimeError:
            chosen = None
    elif isinstance(name, torch.device):
        chosen = name
    else:
        raise TypeError(f"device name must be a string such as 'cpu' or 'cuda', or a torch.device, got "
                        f"{type(name).__name__} {name!r}.")
    if chosen is None or chosen.type not in _DEVICE_TYPES:
        raise ValueError(f"unknown device {name!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps', or device() for the "
                         f"best available one ({_available_devices()}).")
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (chosen.index is not None and chosen.index >= count):
            raise ValueError(f"device {name!r} is not available: this machine has {count} CUDA device(s); "
                             f"use one of {_available_devices()}, or device() for the best available one.")
    if chosen.type == "mps" and not _mps_available():
        raise ValueError(f"device {name!r} is not available: Apple's MPS backend is not usable here; use one "
                         f"of {_available_devices()}, or device() for the best available one.")
    return chosen


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def _available_devices() -> str:
    """The devices this machine has, as text: e.g. "'cuda:0', 'cpu'"."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    names += ["mps"] if _mps_available() else []
    return ", ".join(repr(n) for n in names + ["cpu"])


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices) so a notebook gives the same numbers each run.

    ``seed`` is an integer in ``[0, 2**32 - 1]`` (NumPy's range); it is checked before anything is
    seeded, so a bad seed leaves every random state as it was.
    """
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
