"""Checkers for notebook 06 (MNIST): batched accuracy, the ODE-Net classifier with an MLP vector field,
the test-time tolerance sweep, the PCA projection of a hidden-state path, its turning angles, a confusion
matrix to repair and a prediction of a parameter count.

Each ``check_*`` runs the learner's function against the reference below on labelled cases, one per
requirement of the exercise's statement, prints a report with a staged hint and returns the function to
go on with (the learner's when every case passed, else the reference). The references are public so a
notebook can also call them directly. Checkers leave the global random state as they found it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable, Optional

import torch
from torch import nn

from nodecourse.models import MLP, ODEBlock, ODEFunc
from nodecourse.plotting import pca_project

from .checking import (Case, answers_for, as_number, check_function, check_prediction, close, focused,
                       keep_random_state, one_thread,
                       prediction, require_callable)

__all__ = [
    "show_answer",
    "accuracy",
    "ode_classifier",
    "evaluate_at_tolerances",
    "pca_2d",
    "turning_angles",
    "confusion_counts",
    "buggy_confusion_counts",
    "check_accuracy",
    "check_ode_classifier",
    "check_evaluate_at_tolerances",
    "check_pca_2d",
    "check_turning_angles",
    "check_confusion_counts",
    "check_mlp_parameters_prediction",
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


def confusion_counts(pred: torch.Tensor, y: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """``counts [n_classes, n_classes]``: ``counts[i, j]`` is how many samples of true class ``i`` were
    predicted ``j``."""
    counts = torch.zeros(n_classes, n_classes, dtype=torch.long)
    counts.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    return counts


def buggy_confusion_counts(pred: torch.Tensor, y: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """Exercise 6 ships this broken :func:`confusion_counts` for the learner to repair."""
    counts = torch.zeros(n_classes, n_classes, dtype=torch.long)
    counts[y, pred] += 1
    return counts


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


def _small_ode_model(seed: int) -> nn.Sequential:
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


class _ModeShift(nn.Module):
    """Scores pass through unchanged in eval mode; in train mode (like dropout, it behaves differently
    there) every sample votes for class 0."""

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return scores
        bonus = torch.zeros_like(scores)
        bonus[:, 0] = 1e3
        return scores + bonus


class _GradsOff(nn.Module):
    """The identity, for a model that must be evaluated with gradients off."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise RuntimeError("the model was called with gradients on, so a graph is built for nothing; "
                               "evaluate with gradients off")
        return x


class _BatchLimit(nn.Module):
    """The identity, for a model that takes at most ``limit`` samples at a time."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise ValueError(f"the model was fed {x.shape[0]} samples at once, more than batch_size = {self.limit}")
        return x


class _Halfway(RuntimeError):
    """Raised by :class:`_FailsOnCall` part-way through a sweep."""


class _FailsOnCall(nn.Module):
    """The identity, except that its ``k``-th call raises :class:`_Halfway`."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k, self.calls = k, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.k:
            raise _Halfway(f"this model fails on its call number {self.k}, part-way through the sweep")
        return x


def _mode(training: bool) -> str:
    return "train" if training else "eval"


# --------------------------------------------------------------------------------------------------
# exercise 1: accuracy in batches
# --------------------------------------------------------------------------------------------------


class _AccuracyRun:
    """Calls an accuracy function and also returns the model's mode afterwards."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, focus: str, model: nn.Module, X: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> tuple:
        return focus, self.fn(model, X, y, **kwargs), model.training


def _accuracy_reference(focus: str, model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                        batch_size: int = 256) -> tuple:
    """``(focus, accuracy, the mode afterwards, {mistake: the value it gives})``."""
    value = accuracy(model, X, y, batch_size)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        hits = [(model(X[s:s + batch_size]).argmax(-1) == y[s:s + batch_size]) for s in range(0, len(y), batch_size)]
    model.train(was_training)
    full = [h for h in hits if len(h) == batch_size] or hits
    variants = {"the mean of the per-batch accuracies, which weighs the small last batch too much":
                sum(h.double().mean().item() for h in hits) / len(hits),
                "the accuracy without the last, smaller batch": torch.cat(full).double().mean().item()}
    return focus, value, model.training, variants


def _accuracy_compare(expected: tuple, got: tuple) -> Optional[str]:
    focus, want, want_mode, variants = expected
    _, have, have_mode = got
    if focus == "float":
        return None if type(have) is float else f"got a {type(have).__name__}; return a Python float"
    if focus == "mode":
        if have_mode != want_mode:
            return f"the model is left in {_mode(have_mode)} mode; it came in {_mode(want_mode)} mode"
        return None
    value = as_number(have)
    if value is None:
        return f"expected a number, got {type(have).__name__}"
    if abs(value - want) <= 1e-9:
        return None
    for mistake, v in variants.items():
        if abs(value - v) <= 1e-9:
            return f"expected {want:.6g}, got {value:.6g}: {mistake}"
    return f"expected {want:.6g}, got {value:.6g}"


def check_accuracy(fn: Callable[..., float], verbose: bool = True) -> Callable[..., float]:
    """Exercise 1: batched arg-max accuracy, in eval mode, counting the last partial batch."""
    require_callable("check_accuracy", fn)
    linear = _seeded(lambda: nn.Linear(5, 3), 0)
    X, y = _classifier_data(linear, 50, 5, seed=1)
    X10 = torch.randn(37, 12, generator=_generator(4))
    linear10 = _seeded(lambda: nn.Linear(12, 10), 5)
    y10 = torch.randint(0, 10, (37,), generator=_generator(6))
    Xm, ym = _classifier_data(linear, 40, 5, seed=3, noise=0.1)

    def shifted(training: bool) -> nn.Module:
        return nn.Sequential(linear, _ModeShift()).train(training)

    cases = [
        Case("the fraction of correct arg-max predictions (50 samples, batches of 10)", ("value", linear, X, y),
             {"batch_size": 10}),
        Case("the last, smaller batch counts (50 samples, batches of 16: the last holds 2)", ("value", linear, X, y),
             {"batch_size": 16}),
        Case("the correct predictions divided by N (37 samples, batches of 8, 10 classes)",
             ("value", linear10, X10, y10), {"batch_size": 8}),
        Case("batch_size larger than N", ("value", linear, X, y), {"batch_size": 500}),
        Case("batch_size = 1", ("value", linear, X[:7], y[:7]), {"batch_size": 1}),
        Case("feeds the model batch_size samples at a time, never more",
             ("value", nn.Sequential(_BatchLimit(12), linear), X, y), {"batch_size": 12}),
        Case("evaluates without gradients (no graph)", ("value", nn.Sequential(linear, _GradsOff()), X, y),
             {"batch_size": 25}),
        Case("evaluates in eval mode (this model, like dropout, predicts differently in train mode)",
             ("value", shifted(True), Xm, ym), {"batch_size": 20}),
        Case("puts a model that came in train mode back in train mode", ("mode", shifted(True), Xm, ym),
             {"batch_size": 20}),
        Case("leaves a model that came in eval mode in eval mode", ("mode", shifted(False), Xm, ym),
             {"batch_size": 20}),
        Case("returns a Python float", ("float", linear, X, y), {"batch_size": 16}),
    ]
    hint = ["the failed case names the requirement: which batches count, how the fraction is formed, how many "
            "samples the model sees at once, gradients, the model's mode during and after the evaluation, or the "
            "type returned.",
            "count the correct predictions over every batch, the last smaller one included, and divide once by N; "
            "switch to eval mode for the evaluation and afterwards restore the mode the model came in (the model "
            "knows whether it is training); predicting needs no gradients; a tensor is not a Python float."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 1 (batched accuracy)", _AccuracyRun(fn), _accuracy_reference, cases,
                                   hint=hint, compare=_accuracy_compare, verbose=verbose, answer=accuracy)
    return fn if report.ok else accuracy


# --------------------------------------------------------------------------------------------------
# exercise 2: an ODE-Net whose dynamics are an MLP
# --------------------------------------------------------------------------------------------------

_LAYOUT = ("Flatten", "Linear", "ODEBlock", "Linear")


def _linear_sizes(module: Any) -> Optional[tuple[int, int]]:
    return (module.in_features, module.out_features) if isinstance(module, nn.Linear) else None


def _classifier_requirement(expected: tuple[str, nn.Sequential], got: tuple[str, Any]) -> Optional[str]:
    """The one requirement the case names (``expected[0]``), checked on the learner's model."""
    focus, ref = expected
    model = got[1]
    if not isinstance(model, nn.Module):
        return f"expected an nn.Module, got {type(model).__name__}"
    if focus == "layout":
        if not isinstance(model, nn.Sequential):
            return f"expected an nn.Sequential, got {type(model).__name__}"
        have = tuple(type(m).__name__ for m in model)
        return None if have == _LAYOUT else f"the modules are {have}, expected {_LAYOUT}"
    if focus == "output":
        try:
            with torch.no_grad():
                out = model.eval()(torch.rand(3, 1, 28, 28, generator=_generator(0)))
        except Exception as exc:  # noqa: BLE001 - the learner's model fails on a batch of images
            return f"the model does not run on a [3, 1, 28, 28] batch of images: {type(exc).__name__}: {exc}"
        want = (3, ref[3].out_features)
        return None if tuple(getattr(out, "shape", ())) == want else \
            f"output shape {tuple(getattr(out, 'shape', ()))}, expected {want}"
    if focus in ("projection", "readout"):
        where, want = (1, _linear_sizes(ref[1])) if focus == "projection" else (3, _linear_sizes(ref[3]))
        if not isinstance(model, nn.Sequential) or len(model) != 4:
            return "expected an nn.Sequential of four modules, so that the parts can be found by position"
        have = _linear_sizes(model[where])
        if have != want:
            part = "the projection model[1]" if focus == "projection" else "the readout model[3]"
            shown = f"Linear{have}" if have else type(model[where]).__name__
            return f"{part} is {shown}, expected Linear{want}"
        return None
    blocks = [m for m in model.modules() if isinstance(m, ODEBlock)]
    if len(blocks) != 1:
        return f"the model must contain exactly one ODEBlock, found {len(blocks)}"
    block, ref_block = blocks[0], ref[2]
    if focus == "dynamics":
        want = [tuple(p.shape) for p in ref_block.func.parameters()]
        have = [tuple(p.shape) for p in block.func.parameters()]
        if have != want:
            h = ref[1].out_features
            return (f"the dynamics have {sum(math.prod(s) for s in have)} parameters shaped {have}, expected "
                    f"2h(h + 1) = {2 * h * (h + 1)} for h = {h}, shaped {want}")
        return None
    if focus == "tanh":
        def leaves(f: nn.Module) -> tuple:
            return tuple(type(m).__name__ for m in f.modules() if not list(m.children()))
        have, want = leaves(block.func), leaves(ref_block.func)
        return None if have == want else f"the dynamics' layers are {have}, expected {want}"
    if focus == "solver":
        have, want = (block.t1, block.method), (ref_block.t1, ref_block.method)
        return None if have == want else f"(t1, method) is {have}, expected {want}"
    have, want = (block.rtol, block.atol), (ref_block.rtol, ref_block.atol)
    return None if have == want else f"(rtol, atol) is {have}, expected {want}"


def check_ode_classifier(fn: Callable[..., nn.Module], verbose: bool = True) -> Callable[..., nn.Module]:
    """Exercise 2: build the ODE-Net classifier with an MLP vector field of the given sizes."""
    require_callable("check_ode_classifier", fn)
    cases = [
        Case("an nn.Sequential of four modules: Flatten, Linear, ODEBlock, Linear (hidden_size=32)", ("layout", 32)),
        Case("maps images [B, 1, 28, 28] to scores [B, n_classes] (hidden_size=7, n_classes=4)", ("output", 7),
             {"n_classes": 4}),
        Case("the projection is nn.Linear(784, hidden_size) (hidden_size=64)", ("projection", 64)),
        Case("the dynamics are an MLP [h, h, h]: 2h(h + 1) parameters (hidden_size=16)", ("dynamics", 16)),
        Case("tanh between the layers of the dynamics", ("tanh", 8)),
        Case("the ODE block solves on [0, 1] with dopri5", ("solver", 8)),
        Case("rtol = atol = tol (hidden_size=16, tol=1e-5)", ("tol", 16), {"tol": 1e-5}),
        Case("the readout is nn.Linear(hidden_size, n_classes) (n_classes=4)", ("readout", 8), {"n_classes": 4}),
    ]
    hint = ["the failed case names the part: the list of modules, the output shape, the projection, the dynamics "
            "(sizes, activation), the solver settings or the readout. Print your model and count each part's "
            "parameters by hand.",
            "an MLP with sizes [h, h, h] has two linear layers of h x h weights and h biases each, with the "
            "activation between them; the four modules go into one nn.Sequential in the order of the statement, "
            "the images are flattened first, and the tolerance sets both rtol and atol."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 2 (ODE-Net classifier)", focused(fn), focused(ode_classifier), cases,
                                   hint=hint, compare=_classifier_requirement, verbose=verbose, answer=ode_classifier)
    return fn if report.ok else ode_classifier


# --------------------------------------------------------------------------------------------------
# exercise 3: accuracy and NFE against the test-time tolerance
# --------------------------------------------------------------------------------------------------


class _SweepRun:
    """Calls a sweep function and also returns the block's (rtol, atol) and the model's mode afterwards; in the
    case of a model that fails part-way, the failure is what is expected."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, focus: str, model: nn.Module, X: torch.Tensor, y: torch.Tensor, tols: list,
                 **kwargs: Any) -> tuple:
        for m in model.modules():
            if isinstance(m, _FailsOnCall):
                m.calls = 0
        block = _the_ode_block(model)
        try:
            result: Any = self.fn(model, X, y, tols, **kwargs)
        except _Halfway:
            if focus != "finally":
                raise
            result = None
        return focus, result, (block.rtol, block.atol), model.training


def _sweep_compare(expected: tuple, got: tuple) -> Optional[str]:
    focus, want, want_tols, want_mode = expected
    _, have, have_tols, have_mode = got
    after = " after the model failed part-way" if focus == "finally" else ""
    if focus in ("restore", "finally") and have_tols != want_tols:
        return f"the block's (rtol, atol) are {have_tols}{after}, not restored to {want_tols}"
    if focus in ("mode", "finally") and have_mode != want_mode:
        return f"the model is left in {_mode(have_mode)} mode{after}, not restored to {_mode(want_mode)} mode"
    if focus in ("restore", "mode", "finally"):
        return None
    if not isinstance(have, (list, tuple)) or len(have) != len(want):
        return f"expected a list of {len(want)} triples (one per tol), got {type(have).__name__} {have!r:.60}"
    for (tol, acc, nfe), row in zip(want, have):
        if not isinstance(row, (tuple, list)) or len(row) != 3:
            return f"each result must be a triple (tol, accuracy, NFE), got {row!r:.60}"
        for name, e, g in (("tol", tol, row[0]), ("accuracy", acc, row[1]), ("mean NFE", nfe, row[2])):
            why = close(e, g, rtol=1e-9, atol=1e-9)
            if why:
                return f"at tol = {tol:g}, the {name}: {why}"
    return None


def check_evaluate_at_tolerances(fn: Callable[..., list], verbose: bool = True) -> Callable[..., list]:
    """Exercise 3: accuracy and NFE of an ODE-Net at each test-time tolerance; tolerances restored."""
    require_callable("check_evaluate_at_tolerances", fn)

    def case(label: str, focus: str, seed: int, n: int, tols: list, wrap: Optional[Callable] = None,
             growing: bool = False, training: bool = False, **kwargs: Any) -> Case:
        model = _small_ode_model(seed)
        X, y = _classifier_data(model.eval(), n, 6, seed=seed + 100)
        if growing:  # later batches have larger inputs, so their NFE differs
            X = X * torch.linspace(0.2, 4.0, n).unsqueeze(1)
        if wrap is not None:
            model = wrap(model)
        return Case(label, (focus, model.train(training), X, y, tols), kwargs)

    cases = [
        case("one (tol, accuracy, NFE) per tol, in the order given (1e-1, 1e-3, 1e-5)", "values", 0, 40,
             [1e-1, 1e-3, 1e-5]),
        case("tols in increasing order", "values", 2, 40, [1e-6, 1e-4, 1e-2]),
        case("rtol AND atol set to each tol (the block starts at 1e-3)", "values", 1, 30, [1e-6]),
        case("finds the ODEBlock among model.modules() (here inside a sub-module)", "values", 5, 30, [1e-2, 1e-4],
             wrap=lambda m: nn.Sequential(m[0], nn.Sequential(m[1]), m[2])),
        case("batches of batch_size: accuracy over all of X, NFE the mean over the 3 batches (50 samples, "
             "batch_size=20)", "values", 3, 50, [1e-2, 1e-5], growing=True, batch_size=20),
        case("evaluates in eval mode (this model, like dropout, predicts differently in train mode)", "values", 6, 40,
             [1e-3], wrap=lambda m: nn.Sequential(*m, _ModeShift()), training=True),
        case("evaluates without gradients (no graph)", "values", 7, 20, [1e-3],
             wrap=lambda m: nn.Sequential(*m, _GradsOff())),
        case("restores the block's rtol and atol afterwards", "restore", 4, 25, [1e-2, 1e-6]),
        case("restores the model's train mode afterwards", "mode", 4, 25, [1e-2, 1e-6], training=True),
        case("restores both even when the model fails part-way (it raises at the second tol)", "finally", 8, 20,
             [1e-2, 1e-5], wrap=lambda m: nn.Sequential(*m, _FailsOnCall(2)), training=True),
    ]
    hint = ["the failed case names the requirement: the values per tol (accuracy over all of X, NFE averaged over "
            "the batches), finding the block, the mode or gradients during the sweep, or what must be restored "
            "afterwards, even after an error.",
            "search the model's modules for the block rather than indexing the model; set both tolerances; read "
            "the block's forward counter after every batch and average those counts; note the two tolerances and "
            "the model's mode before the loop, and put them back in a block that runs however the loop ends."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 3 (tolerance sweep)", _SweepRun(fn), _SweepRun(evaluate_at_tolerances),
                                   cases, hint=hint, compare=_sweep_compare, verbose=verbose,
                                   answer=evaluate_at_tolerances)
    return fn if report.ok else evaluate_at_tolerances


# --------------------------------------------------------------------------------------------------
# exercise 4: the first two principal components
# --------------------------------------------------------------------------------------------------


def _up_to_sign(expected: torch.Tensor, got: Any) -> Optional[str]:
    """``got [T, 2]`` equals ``expected`` up to the sign of each column (principal axes have no sign)."""
    if not torch.is_tensor(got):
        return f"expected a tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    got = got.detach().to(expected.dtype)
    tol = 1e-6 if expected.dtype == torch.float64 else 1e-3
    scale = float(expected.abs().max()) or 1.0
    for j in range(expected.shape[1]):
        err = min(float((got[:, j] - expected[:, j]).abs().max()), float((got[:, j] + expected[:, j]).abs().max()))
        if err > tol * scale:
            return f"component {j + 1} differs from the reference (even after flipping its sign) by {err:.3g}"
    return None


def _pca_compare(expected: torch.Tensor, got: Any) -> Optional[str]:
    why = _up_to_sign(expected, got)
    if why is None or not torch.is_tensor(got) or got.shape != expected.shape:
        return why
    g = got.detach().to(expected.dtype)
    if _up_to_sign(expected.flip(1), g) is None:
        return "the two components come in the wrong order: the first one has the larger spread"
    norms = g.norm(dim=0) * expected.norm(dim=0)
    if bool((norms > 0).all()):
        cosines = (g * expected).sum(0).abs() / norms
        if bool((cosines > 1 - 1e-4).all()):
            return ("each column points the right way but has the wrong length: these are unit vectors, not the "
                    "coordinates of the centred states")
    return why


def check_pca_2d(fn: Callable[[torch.Tensor], torch.Tensor], verbose: bool = True
                 ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Exercise 4: project a hidden-state sequence [T, D] onto its first two principal components."""
    require_callable("check_pca_2d", fn)
    g = _generator(0)
    blob = torch.randn(20, 5, generator=g) * torch.tensor([5.0, 2.0, 0.5, 0.2, 0.1])
    rising = torch.randn(30, 4, generator=g) * torch.tensor([0.1, 0.3, 1.0, 4.0])
    s = torch.linspace(0, 3, 40).unsqueeze(1)
    mixing = torch.randn(3, 30, generator=g)
    curve = torch.cat([torch.cos(s), torch.sin(2 * s), 0.1 * s], dim=1) @ mixing
    cases = [
        Case("[T, 2] coordinates on the first two principal components (20 points in 5-D)", (blob,)),
        Case("centres the rows on their mean first (a cloud far from the origin)", (blob + 100.0,)),
        Case("the two LEADING components, the larger spread first (spreads 0.1, 0.3, 1, 4)", (rising,)),
        Case("coordinates of the centred states, not unit vectors (they keep the states' scale)", (3.0 * blob,)),
        Case("the components are the rows of Vh (a smooth curve [40, 30])", (curve,)),
        Case("float64 [40, 30]", (curve.double(),)),
        Case("three points (two components left after centring)",
             (torch.tensor([[0.0, 1, 2, 3], [1, 0, 3, 1], [2, 2, 0, 5]]),)),
        Case("many features [6, 784] (a few MLP layers)", (torch.randn(6, 784, generator=g),)),
    ]
    hint = ["compare the failed cases: a cloud far from the origin, the order of the components, the scale of the "
            "coordinates, rows against columns of Vh.",
            "the principal directions are those of the CENTRED states; torch.linalg.svd returns them as the rows "
            "of Vh, the largest singular value first; the coordinates are the centred states projected on those "
            "directions, so they keep the states' scale."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 4 (PCA to two components)", fn, pca_2d, cases, hint=hint,
                                   compare=_pca_compare, verbose=verbose)
    return fn if report.ok else pca_2d


# --------------------------------------------------------------------------------------------------
# exercise 5: how much does a path turn?
# --------------------------------------------------------------------------------------------------


def _angles_compare(expected: torch.Tensor, got: Any) -> Optional[str]:
    if not torch.is_tensor(got):
        return f"expected a tensor of angles, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"expected {expected.shape[0]} angles (T - 2 for T points), got shape {tuple(got.shape)}"
    g = got.detach().to(expected.dtype)
    if bool(torch.isnan(g).any()):
        return "the result contains NaN: a cosine just past 1 (rounding) has no arccos"
    why = close(expected, g, rtol=1e-4, atol=0.05)  # degrees; arccos near 0 amplifies rounding
    if why is None:
        return None
    if close(torch.deg2rad(expected), g, rtol=1e-4, atol=1e-3) is None:
        return "these are radians; the statement asks for degrees"
    if bool((g < 0).any()) and close(expected, g.abs(), rtol=1e-4, atol=0.05) is None:
        return "some angles are negative: a turning angle here has no sign, it lies in [0, 180]"
    return why


def check_turning_angles(fn: Callable[[torch.Tensor], torch.Tensor], verbose: bool = True
                         ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Exercise 5: the turning angle (degrees) between consecutive segments of a path."""
    require_callable("check_turning_angles", fn)
    g = _generator(1)
    theta = torch.linspace(0, math.pi, 30)
    a, b = 1.1, 1.3  # in float32, the cosine between these collinear segments rounds to just above 1
    straight32 = torch.tensor([[0.0, 0.0], [a, b], [2 * a, 2 * b], [3 * a, 3 * b], [5 * a, 5 * b], [6 * a, 6 * b]])
    cases = [
        Case("in degrees: the corners of a square turn by 90", (torch.tensor([[0.0, 0], [1, 0], [1, 1], [0, 1],
                                                                             [0, 0]]),)),
        Case("0 for going straight on", (torch.tensor([[0.0, 0], [1, 0], [3, 0], [3.5, 0]]),)),
        Case("180 for going straight back", (torch.tensor([[0.0, 0], [2, 0], [1, 0]]),)),
        Case("between consecutive SEGMENTS, not between the points (a half circle around (5, 5))",
             (torch.stack([5 + torch.cos(theta), 5 + torch.sin(theta)], dim=1),)),
        Case("unsigned: right and left turns are both positive", (torch.tensor([[0.0, 0], [1, 0], [2, 1], [3, 0]]),)),
        Case("T - 2 angles for T points (7 points)", (torch.randn(7, 2, generator=g),)),
        Case("no NaN where rounding pushes the cosine past 1 (a straight float32 path)", (straight32,)),
        Case("any dimension k: a random walk in 3-D, float64",
             (torch.randn(12, 3, generator=g, dtype=torch.float64).cumsum(0),)),
    ]
    hint = ["the failed case names the property: degrees, straight on (0) and straight back (180), segments "
            "rather than points, unsigned angles, the number of angles, or NaN.",
            "the angles are between the differences of consecutive points, not between the points; the cosine of "
            "the angle between two vectors is their dot product over the product of their lengths, and rounding "
            "can push it just past 1, where arccos is undefined; convert radians to degrees at the end."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 5 (turning angles)", fn, turning_angles, cases, hint=hint,
                                   compare=_angles_compare, verbose=verbose)
    return fn if report.ok else turning_angles


# --------------------------------------------------------------------------------------------------
# exercise 6 (find the bug): a confusion matrix
# --------------------------------------------------------------------------------------------------


def _counts_compare(expected: torch.Tensor, got: Any) -> Optional[str]:
    if not torch.is_tensor(got) or got.shape != expected.shape:
        return f"expected a [{expected.shape[0]}, {expected.shape[1]}] tensor, got {getattr(got, 'shape', got)}"
    if got.is_floating_point() or got.is_complex() or got.dtype == torch.bool:
        return f"expected an integer tensor, got {got.dtype}"
    if int(got.sum()) != int(expected.sum()):
        return f"the counts add up to {int(got.sum())}, not to the {int(expected.sum())} samples"
    if torch.equal(got.long(), expected):
        return None
    if torch.equal(got.long(), expected.T):
        return "the matrix is transposed: row i holds the samples of TRUE class i"
    return "some counts differ from the reference"


def check_confusion_counts(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 6 (find the bug): the repaired :func:`buggy_confusion_counts`."""
    require_callable("check_confusion_counts", fn)
    g = torch.Generator().manual_seed(6)
    y_many = torch.randint(0, 10, (200,), generator=g)
    pred_many = torch.where(torch.rand(200, generator=g) < 0.7, y_many, torch.randint(0, 10, (200,), generator=g))
    cases = [
        Case("every (true, predicted) pair occurs once (the author's test)",
             (torch.tensor([1, 2, 0]), torch.tensor([0, 1, 2]), 3)),
        Case("a pair that occurs twice counts twice", (torch.tensor([1, 1, 0]), torch.tensor([1, 1, 0]), 2)),
        Case("the counts add up to the number of samples (200 samples, 10 classes)", (pred_many, y_many, 10)),
        Case("rows are the TRUE classes, columns the PREDICTED ones", (torch.tensor([3, 2]), torch.tensor([0, 1]), 4)),
        Case("a class that never occurs has a row of zeros", (torch.tensor([0, 0]), torch.tensor([0, 2]), 4)),
        Case("an integer tensor [n_classes, n_classes], also for classes nobody predicts (n_classes = 5)",
             (torch.tensor([0, 1]), torch.tensor([1, 0]), 5)),
    ]
    hint = ["it is right while every (true, predicted) pair is new and wrong once a pair repeats: does the sum of "
            "the counts equal the number of samples?",
            "an in-place += through an index tensor writes a repeated index once instead of adding up; use an "
            "operation that accumulates over repeated indices.",
            "index_put_ has a flag that makes it accumulate, and torch.bincount counts the integers of a 1-D tensor "
            "once each (pairs can be numbered as single integers)."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 6 (find the bug: a confusion matrix)", fn, confusion_counts, cases,
                                   hint=hint, compare=_counts_compare, verbose=verbose)
    return fn if report.ok else confusion_counts


# --------------------------------------------------------------------------------------------------
# exercise 7 (predict, then check): a parameter count
# --------------------------------------------------------------------------------------------------


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
