"""Checkers for notebook 06 (MNIST): batched accuracy, the ODE-Net classifier with an MLP vector field,
the test-time tolerance sweep, the PCA projection of a hidden-state path and its turning angles.

Each ``check_*`` runs the learner's function against the reference below on several cases, prints a
report and returns the function to go on with (the learner's when every case passed, else the
reference). The references are public so a notebook can also call them directly.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable, Optional

import torch
from torch import nn

from nodecourse.models import MLP, ODEBlock, ODEFunc
from nodecourse.plotting import pca_project

from .checking import Case, check_function, close, keep_random_state, require_callable
from .checking import answers_for, check_function, check_prediction, keep_random_state, one_thread, prediction

__all__ = ["show_answer", "confusion_counts", "buggy_confusion_counts", "check_confusion_counts", "check_mlp_parameters_prediction", 
    "accuracy",
    "ode_classifier",
    "evaluate_at_tolerances",
    "pca_2d",
    "turning_angles",
    "check_accuracy",
    "check_ode_classifier",
    "check_evaluate_at_tolerances",
    "check_pca_2d",
    "check_turning_angles",
]


# --------------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------------


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """The fraction of the ``N`` samples ``X [N, ...]`` whose arg-max output equals the label ``y [N]``.

    Runs ``model`` in eval mode without gradients on batches of ``batch_size`` (the last one may be
    smaller) and restores the model's train/eval mode afterwards. Returns a Python float in [0, 1].
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if y.dim() != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ValueError(f"accuracy needs inputs [N, ...] and labels [N] with N >= 1, got {tuple(X.shape)} "
                         f"and {tuple(y.shape)}.")
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, X.shape[0], batch_size):
                logits = model(X[start:start + batch_size])
                correct += int((logits.argmax(dim=-1) == y[start:start + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / X.shape[0]


def ode_classifier(hidden_size: int, n_classes: int = 10, tol: float = 1e-3) -> nn.Module:
    """The MNIST ODE-Net whose dynamics are a small MLP: ``[B, 1, 28, 28] -> [B, n_classes]``.

    Flatten -> Linear(784, hidden) -> ODEBlock over [0, 1] of dh/dt = MLP([hidden, hidden, hidden], Tanh)(h)
    with dopri5 at rtol = atol = ``tol`` -> Linear(hidden, n_classes).
    """
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive integer, got {hidden_size!r}.")
    field = ODEFunc(MLP([hidden_size, hidden_size, hidden_size], nn.Tanh))
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, hidden_size),
        ODEBlock(field, t1=1.0, method="dopri5", rtol=tol, atol=tol),
        nn.Linear(hidden_size, n_classes),
    )


def _the_ode_block(model: nn.Module) -> ODEBlock:
    blocks = [m for m in model.modules() if isinstance(m, ODEBlock)]
    if len(blocks) != 1:
        raise ValueError(f"the model must contain exactly one ODEBlock, found {len(blocks)}.")
    return blocks[0]


def evaluate_at_tolerances(model: nn.Module, X: torch.Tensor, y: torch.Tensor, tols: Sequence[float],
                           batch_size: int = 1000) -> list[tuple[float, float, float]]:
    """Evaluate the model's one ODEBlock at ``rtol = atol = tol`` for each ``tol`` in ``tols``.

    Returns ``[(tol, accuracy, nfe), ...]`` in the order of ``tols``: the accuracy over all of ``X [N, ...]``
    (batches of ``batch_size``, eval mode, no gradients) and the mean forward NFE per batch. The
    block's own rtol and atol are restored afterwards.
    """
    block = _the_ode_block(model)
    saved = (block.rtol, block.atol)
    was_training = model.training
    model.eval()
    results = []
    try:
        with torch.no_grad():
            for tol in tols:
                block.rtol = block.atol = tol
                correct, nfes = 0, []
                for start in range(0, X.shape[0], batch_size):
                    logits = model(X[start:start + batch_size])
                    nfes.append(block.nfe_forward)
                    correct += int((logits.argmax(dim=-1) == y[start:start + batch_size]).sum())
                results.append((float(tol), correct / X.shape[0], sum(nfes) / len(nfes)))
    finally:
        block.rtol, block.atol = saved
        model.train(was_training)
    return results


def pca_2d(states: torch.Tensor) -> torch.Tensor:
    """The states ``[T, D]`` projected onto their first two principal components: ``[T, 2]``.

    Centre the rows on their mean and project onto the two leading right singular vectors of the
    centred matrix. Each component's sign is arbitrary (checkers compare up to sign).
    """
    if states.dim() != 2 or min(states.shape) < 2:
        raise ValueError(f"states must be [T, D] with T, D >= 2, got {tuple(states.shape)}.")
    return pca_project(states, 2)[0]


def turning_angles(path: torch.Tensor) -> torch.Tensor:
    """The angle in degrees, in [0, 180], between each pair of consecutive segments of ``path [T, k]``: ``[T - 2]``.

    Segment i is ``path[i + 1] - path[i]``; 0 means going straight on, 180 turning right back.
    """
    if path.dim() != 2 or path.shape[0] < 3:
        raise ValueError(f"path must be [T, k] with at least 3 points, got {tuple(path.shape)}.")
    seg = path[1:] - path[:-1]
    cos = (seg[:-1] * seg[1:]).sum(-1) / (seg[:-1].norm(dim=-1) * seg[1:].norm(dim=-1))
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


# --------------------------------------------------------------------------------------------------
# helpers of the checkers
# --------------------------------------------------------------------------------------------------


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A module built under a fixed seed, leaving the notebook's random state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _classifier_data(model: nn.Module, n: int, n_features: int, seed: int, noise: float = 0.3):
    """Inputs [n, n_features] and labels that agree with ``model`` on most samples but not all."""
    g = _generator(seed)
    X = torch.randn(n, n_features, generator=g)
    with torch.no_grad():
        y = model(X).argmax(dim=-1)
    flip = torch.rand(n, generator=g) < noise
    y = torch.where(flip, torch.randint(0, 3, (n,), generator=g), y)
    return X, y


def _small_ode_model(seed: int) -> nn.Module:
    """A fixed small ODE-Net [B, 6] -> [B, 3] whose dynamics are lively enough for the NFE to depend on tol."""
    def build() -> nn.Module:
        field = MLP([8, 32, 8], nn.Tanh)
        with torch.no_grad():
            for layer in field:
                if isinstance(layer, nn.Linear):
                    layer.weight.mul_(2.5)
        return nn.Sequential(nn.Linear(6, 8), ODEBlock(ODEFunc(field), t1=1.0, method="dopri5", rtol=1e-3,
                                                       atol=1e-3), nn.Linear(8, 3))
    return _seeded(build, seed)


# --------------------------------------------------------------------------------------------------
# the checkers
# --------------------------------------------------------------------------------------------------


def check_accuracy(fn: Callable[..., float], verbose: bool = True) -> Callable[..., float]:
    """Exercise 1: batched arg-max accuracy, in eval mode, counting the last partial batch."""
    require_callable("check_accuracy", fn)
    linear = _seeded(lambda: nn.Linear(5, 3), 0)
    X, y = _classifier_data(linear, 50, 5, seed=1)
    dropout = _seeded(lambda: nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)), 2)
    dropout.train()  # left in train mode on purpose: accuracy must evaluate in eval mode
    Xd, yd = _classifier_data(dropout.eval(), 64, 5, seed=3, noise=0.0)
    dropout.train()
    X10 = torch.randn(37, 12, generator=_generator(4))
    linear10 = _seeded(lambda: nn.Linear(12, 10), 5)
    y10 = torch.randint(0, 10, (37,), generator=_generator(6))
    cases = [
        Case("50 samples, batch_size=10 (batches divide N)", (linear, X, y), {"batch_size": 10}),
        Case("50 samples, batch_size=16 (last batch of 2)", (linear, X, y), {"batch_size": 16}),
        Case("batch_size larger than N", (linear, X, y), {"batch_size": 500}),
        Case("batch_size=1", (linear, X[:7], y[:7]), {"batch_size": 1}),
        Case("10 classes, 37 samples, batch_size=8", (linear10, X10, y10), {"batch_size": 8}),
        Case("a model with dropout, left in train mode", (dropout, Xd, yd), {"batch_size": 20}),
    ]
    hint = ("predict with model(X[start:start + batch_size]).argmax(dim=-1) for start in range(0, N, batch_size) "
            "so the last, smaller batch counts too; add up the correct predictions and divide by N (not the mean "
            "of per-batch accuracies); call model.eval() first (dropout!) and return a Python float.")

    def compare(expected: float, got: Any) -> Optional[str]:
        if torch.is_tensor(got):
            return "return a Python float (use .item() or float(...)), not a tensor"
        return close(expected, got, rtol=0.0, atol=1e-9)

    result, _ = check_function("Exercise 1 (batched accuracy)", fn, accuracy, cases, hint=hint,
                               compare=compare, verbose=verbose)
    return result


def _describe(model: Any) -> dict:
    """What the checker compares of an ODE classifier: parameter counts, output shape, the block's settings."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    blocks = [m for m in model.modules() if isinstance(m, ODEBlock)]
    if len(blocks) != 1:
        return {"ODEBlocks": len(blocks)}
    block = blocks[0]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        out = model.eval()(torch.rand(3, 1, 28, 28))
    layout = tuple(type(m).__name__ for m in model) if isinstance(model, nn.Sequential) else type(model).__name__
    return {
        "layout": layout,
        "ODEBlocks": 1,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dynamics parameters": sum(p.numel() for p in block.func.parameters()),
        "dynamics layers": tuple(type(m).__name__ for m in block.func.modules() if not list(m.children())),
        "output shape": tuple(out.shape),
        "method": block.method,
        "t1": block.t1,
        "rtol": block.rtol,
        "atol": block.atol,
        "adjoint": block.adjoint,
    }


@keep_random_state()
def check_ode_classifier(fn: Callable[..., nn.Module], verbose: bool = True) -> Callable[..., nn.Module]:
    """Exercise 2: build the ODE-Net classifier with an MLP vector field of the given sizes."""
    require_callable("check_ode_classifier", fn)
    cases = [
        Case("hidden_size=32", (32,)),
        Case("hidden_size=64", (64,)),
        Case("hidden_size=7, n_classes=4", (7,), {"n_classes": 4}),
        Case("hidden_size=16, tol=1e-5", (16,), {"tol": 1e-5}),
    ]
    hint = ("nn.Sequential(nn.Flatten(), nn.Linear(784, hidden_size), ODEBlock(ODEFunc(MLP([hidden_size, "
            "hidden_size, hidden_size], nn.Tanh)), t1=1.0, method='dopri5', rtol=tol, atol=tol), "
            "nn.Linear(hidden_size, n_classes)); the dynamics have 2 * hidden * (hidden + 1) parameters.")

    def compare(expected: nn.Module, got: Any) -> Optional[str]:
        want = _describe(expected)
        try:
            have = _describe(got)
        except Exception as exc:  # noqa: BLE001 - the learner's model fails on a [3, 1, 28, 28] batch
            return f"the model does not run on a [3, 1, 28, 28] batch of images: {type(exc).__name__}: {exc}"
        if have.get("ODEBlocks") != 1:
            return f"the model must contain exactly one ODEBlock, found {have.get('ODEBlocks')}"
        wrong = [f"{key} {have[key]!r} (expected {value!r})" for key, value in want.items() if have[key] != value]
        return "; ".join(wrong) if wrong else None

    result, _ = check_function("Exercise 2 (ODE-Net classifier)", fn, ode_classifier, cases, hint=hint,
                               compare=compare, verbose=verbose)
    return result


class _ReportsTolerances:
    """Calls a sweep function and also returns the block's (rtol, atol) afterwards, to check they were restored."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, model: nn.Module, *args: Any, **kwargs: Any) -> tuple:
        result = self.fn(model, *args, **kwargs)
        block = _the_ode_block(model)
        return result, (block.rtol, block.atol), model.training


def check_evaluate_at_tolerances(fn: Callable[..., list], verbose: bool = True) -> Callable[..., list]:
    """Exercise 3: accuracy and NFE of an ODE-Net at each test-time tolerance; tolerances restored."""
    require_callable("check_evaluate_at_tolerances", fn)

    def case(label: str, seed: int, n: int, tols: list, **kwargs: Any) -> Case:
        model = _small_ode_model(seed)
        X, y = _classifier_data(model, n, 6, seed=seed + 100)
        if kwargs.pop("growing", False):  # later batches have larger inputs, so their NFE differs
            X = X * torch.linspace(0.2, 4.0, n).unsqueeze(1)
        if kwargs.pop("train_mode", False):
            model.train()
        else:
            model.eval()
        return Case(label, (model, X, y, tols), kwargs)

    cases = [
        case("one batch, tols 1e-1, 1e-3, 1e-5", 0, 40, [1e-1, 1e-3, 1e-5]),
        case("one tolerance", 1, 30, [1e-4]),
        case("tols in increasing order", 2, 40, [1e-6, 1e-4, 1e-2]),
        case("50 samples in batches of 20 (NFE is the mean over 3 batches)", 3, 50, [1e-2, 1e-5], batch_size=20,
             growing=True),
        case("model left in train mode (restore it)", 4, 25, [1e-3, 1e-6], train_mode=True),
    ]
    hint = ("find the block with [m for m in model.modules() if isinstance(m, ODEBlock)][0]; save (block.rtol, "
            "block.atol); for each tol set both to tol, run the batches in eval mode under torch.no_grad(), read "
            "block.nfe_forward after each batch and average it; return (tol, accuracy, mean NFE) per tol; at the "
            "end (in a finally:) restore rtol, atol and the model's train/eval mode.")

    def compare(expected: tuple, got: Any) -> Optional[str]:
        (want, want_tols, want_mode), (have, have_tols, have_mode) = expected, got
        why = close(want, have, rtol=1e-9, atol=1e-9)
        if why:
            return why.replace("item 0", "first tol").replace("item 1:", "accuracy:").replace("item 2:", "NFE:")
        if have_tols != want_tols:
            return f"the block's (rtol, atol) are {have_tols} after your function, not restored to {want_tols}"
        if have_mode != want_mode:
            return "the model's train/eval mode was not restored (save model.training and call model.train(it))"
        return None

    result, _ = check_function("Exercise 3 (tolerance sweep)", _ReportsTolerances(fn),
                               _ReportsTolerances(evaluate_at_tolerances), cases, hint=hint, compare=compare,
                               verbose=verbose)
    return result.fn


def _up_to_sign(expected: torch.Tensor, got: Any) -> Optional[str]:
    """``got [T, 2]`` equals ``expected`` up to the sign of each column (principal axes have no sign)."""
    if not torch.is_tensor(got):
        return f"expected a tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    got = got.to(expected.dtype)
    tol = 1e-6 if expected.dtype == torch.float64 else 1e-3
    scale = float(expected.abs().max()) or 1.0
    for j in range(expected.shape[1]):
        err = min(float((got[:, j] - expected[:, j]).abs().max()), float((got[:, j] + expected[:, j]).abs().max()))
        if err > tol * scale:
            return f"component {j + 1} differs from the reference (even after flipping its sign) by {err:.3g}"
    return None


def check_pca_2d(fn: Callable[[torch.Tensor], torch.Tensor], verbose: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """Exercise 4: project a hidden-state sequence [T, D] onto its first two principal components."""
    require_callable("check_pca_2d", fn)
    g = _generator(0)
    scales = torch.tensor([5.0, 2.0, 0.5, 0.2, 0.1])
    blob = torch.randn(20, 5, generator=g) * scales
    s = torch.linspace(0, 3, 40).unsqueeze(1)
    mixing = torch.randn(3, 30, generator=g)
    curve = torch.cat([torch.cos(s), torch.sin(2 * s), 0.1 * s], dim=1) @ mixing
    cases = [
        Case("20 points in 5-D with decreasing spread", (blob,)),
        Case("a far-from-origin cloud (centre it first)", (blob + 100.0,)),
        Case("a smooth curve [40, 30]", (curve,)),
        Case("float64 [40, 30]", (curve.double(),)),
        Case("three points (two components left after centring)", (torch.tensor([[0.0, 1, 2, 3], [1, 0, 3, 1],
                                                                                 [2, 2, 0, 5]]),)),
        Case("many features [6, 784] (a few MLP layers)", (torch.randn(6, 784, generator=g),)),
    ]
    hint = ("subtract the mean over time (dim 0), take U, S, Vh = torch.linalg.svd(centred, full_matrices=False) "
            "and return centred @ Vh[:2].T (the two leading right singular vectors), shape [T, 2].")
    result, _ = check_function("Exercise 4 (PCA to two components)", fn, pca_2d, cases, hint=hint,
                               compare=_up_to_sign, verbose=verbose)
    return result


def check_turning_angles(fn: Callable[[torch.Tensor], torch.Tensor], verbose: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """Exercise 5: the turning angle (degrees) between consecutive segments of a path."""
    require_callable("check_turning_angles", fn)
    g = _generator(1)
    theta = torch.linspace(0, math.pi, 30)
    cases = [
        Case("a straight line (all 0)", (torch.linspace(0, 1, 6).unsqueeze(1) * torch.tensor([[3.0, -1.0]]),)),
        Case("the corners of a square (all 90)", (torch.tensor([[0.0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]),)),
        Case("going back (180)", (torch.tensor([[0.0, 0], [2, 0], [1, 0]]),)),
        Case("a half circle of 30 points", (torch.stack([torch.cos(theta), torch.sin(theta)], dim=1),)),
        Case("right and left turns (both positive)", (torch.tensor([[0.0, 0], [1, 0], [2, 1], [3, 0]]),)),
        Case("a random walk in 3-D, float64", (torch.randn(12, 3, generator=g, dtype=torch.float64).cumsum(0),)),
    ]
    hint = ("segments d = path[1:] - path[:-1]; cos = (d[:-1] * d[1:]).sum(-1) / (norms of both); clamp cos to "
            "[-1, 1] (rounding can push it past 1 and give NaN) and return torch.rad2deg(torch.arccos(cos)), "
            "T - 2 angles in degrees between 0 and 180.")

    def compare(expected: torch.Tensor, got: Any) -> Optional[str]:
        if torch.is_tensor(got) and torch.isnan(got).any():
            return "the result contains NaN: clamp the cosine to [-1, 1] before arccos"
        return close(expected, got, rtol=1e-4, atol=0.05)  # degrees; arccos near 0 amplifies rounding

    result, _ = check_function("Exercise 5 (turning angles)", fn, turning_angles, cases, hint=hint,
                               compare=compare, verbose=verbose)
    return result


# --- exercise 6 (find the bug) and exercise 7 (predict, then check) ------------------------------

def confusion_counts(pred: torch.Tensor, y: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """``counts [n_classes, n_classes]``: ``counts[i, j]`` is how many samples of true class ``i`` were predicted ``j``."""
    counts = torch.zeros(n_classes, n_classes, dtype=torch.long)
    counts.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    return counts


def buggy_confusion_counts(pred: torch.Tensor, y: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """Exercise 6 ships this broken :func:`confusion_counts` for the learner to repair."""
    counts = torch.zeros(n_classes, n_classes, dtype=torch.long)
    counts[y, pred] += 1
    return counts


def check_confusion_counts(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 6 (find the bug): the repaired :func:`buggy_confusion_counts`."""
    require_callable("check_confusion_counts", fn)
    g = torch.Generator().manual_seed(6)
    y_many = torch.randint(0, 10, (200,), generator=g)
    pred_many = torch.where(torch.rand(200, generator=g) < 0.7, y_many, torch.randint(0, 10, (200,), generator=g))
    cases = [
        Case("every (true, predicted) pair occurs once", (torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0]), 3)),
        Case("a pair that occurs twice counts twice", (torch.tensor([1, 1, 0]), torch.tensor([1, 1, 0]), 2)),
        Case("200 samples, 10 classes: the counts add up to 200", (pred_many, y_many, 10)),
        Case("a class that never occurs has a row of zeros", (torch.tensor([0, 0]), torch.tensor([0, 2]), 4)),
    ]
    hint = ["it is right while every (true, predicted) pair is new and wrong once a pair repeats: does "
            "counts.sum() equal the number of samples?",
            "an in-place += through an index tensor writes each repeated index once, it does not accumulate; "
            "use an operation that accumulates (index_put_ with accumulate=True, or torch.bincount on "
            "y * n_classes + pred)."]

    def compare(expected: torch.Tensor, got: Any) -> Optional[str]:
        if not torch.is_tensor(got) or got.shape != expected.shape:
            return f"expected a [{expected.shape[0]}, {expected.shape[1]}] tensor, got {getattr(got, 'shape', got)}"
        if int(got.sum()) != int(expected.sum()):
            return f"the counts add up to {int(got.sum())}, not to the {int(expected.sum())} samples"
        return None if torch.equal(got.long(), expected) else "some counts differ from the reference"

    return check_function("Exercise 6 (find the bug: a confusion matrix)", fn, confusion_counts, cases, hint=hint,
                          compare=compare, verbose=verbose)[0]


@prediction
@keep_random_state()
def check_mlp_parameters_prediction(guess: Optional[float], verbose: bool = True) -> int:
    """Exercise 7 (predict, then check): the number of parameters of ``MLP([784, 100, 10])``."""
    truth = sum(p.numel() for p in MLP([784, 100, 10]).parameters())
    check_prediction("Exercise 7 (predict: a parameter count)", guess, truth, notebook="06",
                     variable="predicted_parameters", atol=0.5,
                     explanation="a linear layer from n to m inputs has n m weights and m biases: "
                                 "784 x 100 + 100 + 100 x 10 + 10 = 79510.", verbose=verbose)
    return truth


show_answer = answers_for("06")
