"""A small, general training loop with a progress bar, loss history and NFE tracking of ODE blocks."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from nodecourse._validation import check_count, is_real
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


def _check_pair(data: object) -> Batch | None:
    """``data`` as an ``(X, y)`` pair of tensors, or None when it is some other iterable of batches."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        X, y = data
        if X.dim() == 0 or y.dim() == 0:
            raise ValueError(f"inputs and targets must be batches [N, ...] with one row per sample, got shapes "
                             f"{tuple(X.shape)} and {tuple(y.shape)}; add a batch dimension with x.unsqueeze(0).")
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"inputs and targets must have the same number of samples, got {X.shape[0]} and {y.shape[0]}."
            )
        if X.shape[0] == 0:
            raise ValueError(f"the data is empty: the inputs {tuple(X.shape)} hold 0 samples; pass at least one "
                             "(input, target) sample to train on.")
        return X, y
    return None


def _batches(data: object, batch_size: int | None, generator: torch.Generator | None) -> Iterator[Batch]:
    """An endless stream of ``(X, y)`` batches: random minibatches of a tensor pair, or a cycled loader.

    The data are checked here, before training starts; the stream itself is lazy.
    """
    pair = _check_pair(data)
    if pair is not None:
        return _pair_batches(*pair, batch_size, generator)
    if isinstance(data, (tuple, list)) and len(data) == 2 and any(isinstance(d, np.ndarray) for d in data):
        raise TypeError("inputs and targets must be torch tensors, got NumPy arrays; convert them with "
                        "torch.as_tensor(x, dtype=torch.float32) (and torch.as_tensor(labels) for class labels).")
    if batch_size is not None:
        raise ValueError("batch_size only applies to data given as an (inputs, targets) pair; "
                         "a DataLoader already sets its own batch size.")
    if not isinstance(data, Iterable) or isinstance(data, torch.Tensor):
        raise TypeError(
            f"data must be an (inputs, targets) pair of tensors or an iterable of such pairs (e.g. a "
            f"DataLoader), got {type(data).__name__}."
        )
    return _loader_batches(data)


def _pair_batches(X: torch.Tensor, y: torch.Tensor, batch_size: int | None,
                  generator: torch.Generator | None) -> Iterator[Batch]:
    if batch_size is None or batch_size >= X.shape[0]:
        while True:
            yield X, y
    while True:  # epochs of a fresh random permutation, sliced into minibatches
        perm = torch.randperm(X.shape[0], generator=generator).to(X.device)
        for start in range(0, X.shape[0] - batch_size + 1, batch_size):
            idx = perm[start : start + batch_size]
            yield X[idx], y[idx]


def _loader_batches(loader: Iterable) -> Iterator[Batch]:
    for batch in _repeat(loader):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(f"each batch must be an (inputs, targets) pair, got {type(batch).__name__}.")
        X = batch[0]
        if isinstance(X, torch.Tensor) and (X.dim() == 0 or X.shape[0] == 0):
            raise ValueError(f"a batch of the data holds no samples (inputs of shape {tuple(X.shape)}); "
                             "the dataset or one of its batches is empty.")
        yield batch[0], batch[1]


def _repeat(loader: Iterable) -> Iterator:
    """Iterate over ``loader`` again and again (a DataLoader reshuffles on each pass).

    A one-shot iterator (a generator, ``iter(list)``, ``zip(...)``) is used up by its first pass, so
    needing more from it is an error that says to pass something re-iterable instead.
    """
    one_shot = isinstance(loader, Iterator)
    first_pass = True
    while True:
        count = 0
        for item in loader:
            count += 1
            yield item
        if count == 0 and first_pass:
            raise ValueError("the data yielded no batches: the dataset is empty (e.g. a DataLoader over 0 samples, "
                             "or drop_last=True with fewer samples than batch_size); check that the dataset is not "
                             "empty.")
        if one_shot:
            raise ValueError(
                f"the data is a one-shot iterator (a {type(loader).__name__}), used up after {count} batches, but "
                "n_iters asks for more; pass a re-iterable instead (a DataLoader, a list of (inputs, targets) "
                "batches, or one (inputs, targets) pair), or lower n_iters."
            )
        if count == 0:
            raise ValueError(f"the data ({type(loader).__name__}) yielded no batches on a second pass; its "
                             "__iter__ must start afresh each time, as a DataLoader's or a list's does.")
        first_pass = False


def _make_optimizer(model: nn.Module, optimizer: str | torch.optim.Optimizer, lr: float) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if not (is_real(lr) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite positive number, got lr={lr!r}.")
    choices = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    if not isinstance(optimizer, str) or optimizer.lower() not in choices:
        raise ValueError(
            f"unknown optimizer {optimizer!r}; use 'adam', 'sgd' or pass a torch.optim.Optimizer instance."
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"the model ({type(model).__name__}) has no trainable parameters, so there is nothing "
                         "to train; check that its layers are registered as submodules and not frozen "
                         "(requires_grad=False).")
    return choices[optimizer.lower()](model.parameters(), lr=float(lr))


def _non_finite_values(batch: Batch) -> str | None:
    """Which part of the batch holds NaN or inf, if any (only looked at once the loss has gone bad)."""
    for name, part in zip(("inputs", "targets"), batch):
        if isinstance(part, torch.Tensor) and part.is_floating_point() and not torch.isfinite(part).all():
            return name
    return None


def _bad_loss_error(value: float, it: int, n_iters: int, lr: object, batch: Batch) -> ValueError:
    """The error for a NaN or inf loss: where it happened and the likely causes."""
    bad_part = _non_finite_values(batch)
    if bad_part is not None:
        advice = (f"the {bad_part} of that batch hold NaN or inf values: clean the data (drop those samples or "
                  "replace them with torch.nan_to_num) before training")
    else:
        advice = (f"likely causes: a learning rate too high (lower the learning rate, lr={lr}), an ODE solve "
                  "that blew up (tighten the solver tolerances, shorten t1 or use a smaller step_size), or a "
                  "loss_fn that takes log(0) or divides by zero")
    return ValueError(f"the loss became {value} at iteration {it} (of n_iters={n_iters}); {advice}.")


def _step(model: nn.Module, loss_fn: Callable, opt: torch.optim.Optimizer, batch: Batch,
          device: torch.device | None, it: int, n_iters: int, lr: object) -> float:
    """One optimizer step on ``batch``; returns the loss, or raises a clear error when it is unusable."""
    X, y = batch
    if device is not None:
        X, y = X.to(device), y.to(device)
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(X), y)
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn must return a 0-d tensor (so it can be backpropagated), got "
                        f"{type(loss).__name__}; don't call .item() or float() inside loss_fn.")
    if loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar, got a tensor of shape {tuple(loss.shape)}; "
                         "reduce it with .mean().")
    value = loss.item()
    if not math.isfinite(value):
        raise _bad_loss_error(value, it, n_iters, lr, (X, y))
    if not loss.requires_grad:
        raise ValueError("the loss does not depend on any trainable parameter (it has no gradient); compute "
                         "it from model(X) without .detach(), torch.no_grad() or a detour through NumPy.")
    loss.backward()
    opt.step()
    return value


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
    replacement epoch by epoch, using ``generator``) or a re-iterable of ``(X, y)`` batches such as a
    DataLoader or a list, cycled as needed (a one-shot generator is used up after one pass). Batches
    are moved to the model's device. ``optimizer`` is "adam", "sgd" (with learning rate ``lr``) or a
    ready optimizer. The progress bar shows the loss and NFE every ``log_every`` iterations.

    Every argument is checked before the first step; a loss that becomes NaN or inf stops training
    with an error that names the iteration and the likely cause.
    """
    n_iters = check_count("n_iters", n_iters)
    log_every = check_count("log_every", log_every)
    if batch_size is not None:
        batch_size = check_count("batch_size", batch_size)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets), got {type(loss_fn).__name__}; "
                        "e.g. nn.functional.mse_loss.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (or None), got {type(generator).__name__}; "
                        "e.g. torch.Generator().manual_seed(0).")
    opt = _make_optimizer(model, optimizer, lr)
    blocks = [m for m in model.modules() if isinstance(m, ODEBlock)]
    device = _model_device(model)
    batches = _batches(data, batch_size, generator)
    history = History()

    model.train()
    bar = tqdm(range(n_iters), desc=desc, disable=not progress)
    try:
        for it in bar:
            value = _step(model, loss_fn, opt, next(batches), device, it, n_iters, lr)
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
    finally:
        bar.close()
    return history


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """The fraction of samples whose arg-max output equals the integer label: ``X [N, ...]``, ``y [N]``."""
    batch_size = check_count("batch_size", batch_size)
    if not (isinstance(X, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise TypeError(f"accuracy needs tensors X [N, ...] and y [N], got {type(X).__name__} and "
                        f"{type(y).__name__}; convert them with torch.as_tensor.")
    if y.dim() != 1 or X.dim() == 0 or X.shape[0] != y.shape[0]:
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
