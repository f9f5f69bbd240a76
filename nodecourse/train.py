"""A small, general training loop with a progress bar, loss history and NFE tracking of ODE blocks."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from nodecourse.models import ODEBlock

__all__ = ["History", "train", "accuracy", "count_parameters"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class History:
    """What happened during training, one entry per iteration.

    ``nfe_forward``/``nfe_backward`` sum the evaluations over every ODEBlock in the model; they stay
    empty for models without one.
    """

    loss: list[float] = field(default_factory=list)
    nfe_forward: list[int] = field(default_factory=list)
    nfe_backward: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.loss)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """The number of scalar parameters in ``model`` (only those with ``requires_grad`` by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _model_device(model: nn.Module) -> torch.device | None:
    param = next(model.parameters(), None)
    return None if param is None else param.device


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}.")
    return value


def _check_pair(data: object) -> Batch | None:
    """``data`` as an ``(X, y)`` pair of tensors, or None when it is some other iterable of batches."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        X, y = data
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"inputs and targets must have the same number of samples, got {X.shape[0]} and {y.shape[0]}."
            )
        return X, y
    return None


def _batches(data: object, batch_size: int | None, generator: torch.Generator | None) -> Iterator[Batch]:
    """An endless stream of ``(X, y)`` batches: random minibatches of a tensor pair, or a cycled loader."""
    pair = _check_pair(data)
    if pair is not None:
        X, y = pair
        if batch_size is None or batch_size >= X.shape[0]:
            while True:
                yield X, y
        while True:  # epochs of a fresh random permutation, sliced into minibatches
            perm = torch.randperm(X.shape[0], generator=generator).to(X.device)
            for start in range(0, X.shape[0] - batch_size + 1, batch_size):
                idx = perm[start : start + batch_size]
                yield X[idx], y[idx]
    if batch_size is not None:
        raise ValueError("batch_size only applies to data given as an (inputs, targets) pair; "
                         "a DataLoader already sets its own batch size.")
    if not isinstance(data, Iterable) or isinstance(data, torch.Tensor):
        raise TypeError(
            f"data must be an (inputs, targets) pair of tensors or an iterable of such pairs (e.g. a "
            f"DataLoader), got {type(data).__name__}."
        )
    for batch in _repeat(data):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(f"each batch must be an (inputs, targets) pair, got {type(batch).__name__}.")
        yield batch[0], batch[1]


def _repeat(loader: Iterable) -> Iterator:
    """Iterate over ``loader`` again and again (a DataLoader reshuffles on each pass)."""
    while True:
        empty = True
        for item in loader:
            empty = False
            yield item
        if empty:
            raise ValueError("data yielded no batches; check that the dataset is not empty.")


def _make_optimizer(model: nn.Module, optimizer: str | torch.optim.Optimizer, lr: float) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite positive number, got lr={lr!r}.")
    choices = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    if not isinstance(optimizer, str) or optimizer.lower() not in choices:
        raise ValueError(
            f"unknown optimizer {optimizer!r}; use 'adam', 'sgd' or pass a torch.optim.Optimizer instance."
        )
    return choices[optimizer.lower()](model.parameters(), lr=lr)


def train(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Batch | Iterable[Batch],
    n_iters: int,
    lr: float = 1e-2,
    optimizer: str | torch.optim.Optimizer = "adam",
    batch_size: int | None = None,
    log_every: int = 10,
    progress: bool = True,
    desc: str | None = None,
    generator: torch.Generator | None = None,
) -> History:
    """Minimise ``loss_fn(model(X), y)`` for ``n_iters`` optimizer steps and return the ``History``.

    ``data`` is an ``(X, y)`` pair (full batch, or random minibatches of ``batch_size`` drawn without
    replacement epoch by epoch, using ``generator``) or an iterable of ``(X, y)`` batches such as a
    DataLoader, cycled as needed. Batches are moved to the model's device. ``optimizer`` is "adam",
    "sgd" (with learning rate ``lr``) or a ready optimizer. The progress bar shows the loss and NFE
    every ``log_every`` iterations.
    """
    n_iters = _positive_int("n_iters", n_iters)
    log_every = _positive_int("log_every", log_every)
    if batch_size is not None:
        batch_size = _positive_int("batch_size", batch_size)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
    opt = _make_optimizer(model, optimizer, lr)
    blocks = [m for m in model.modules() if isinstance(m, ODEBlock)]
    device = _model_device(model)
    batches = _batches(data, batch_size, generator)
    history = History()

    model.train()
    bar = tqdm(range(n_iters), desc=desc, disable=not progress)
    for it in bar:
        X, y = next(batches)
        if device is not None:
            X, y = X.to(device), y.to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(X), y)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar, got a tensor of shape {tuple(loss.shape)}; "
                             "reduce it with .mean().")
        value = loss.item()
        if not math.isfinite(value):
            raise ValueError(
                f"the loss became {value} at iteration {it}; lower the learning rate (lr={lr}) "
                "or tighten the solver tolerances."
            )
        loss.backward()
        opt.step()
        history.loss.append(value)
        if blocks:
            history.nfe_forward.append(sum(b.nfe_forward for b in blocks))
            history.nfe_backward.append(sum(b.nfe_backward for b in blocks))
        if it % log_every == 0 or it == n_iters - 1:
            postfix = {"loss": f"{value:.4g}"}
            if blocks:
                postfix["nfe_f"] = history.nfe_forward[-1]
                postfix["nfe_b"] = history.nfe_backward[-1]
            bar.set_postfix(postfix, refresh=False)
    bar.close()
    return history


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """The fraction of samples whose arg-max output equals the integer label: ``X [N, ...]``, ``y [N]``."""
    batch_size = _positive_int("batch_size", batch_size)
    if y.dim() != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"accuracy needs inputs [N, ...] and integer labels [N], got {tuple(X.shape)} and {tuple(y.shape)}."
        )
    if X.shape[0] == 0:
        raise ValueError("accuracy needs at least one sample, got an empty batch.")
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for start in range(0, X.shape[0], batch_size):
            xb, yb = X[start : start + batch_size], y[start : start + batch_size]
            if device is not None:
                xb, yb = xb.to(device), yb.to(device)
            correct += (model(xb).argmax(dim=-1) == yb).sum().item()
    finally:
        model.train(was_training)
    return correct / X.shape[0]
