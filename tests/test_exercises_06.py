"""Checkers of notebook 06: the references are right; every requirement of an exercise's statement has a
labelled case, and the plausible wrong answers fail on the case that names their mistake; answers written
differently from the reference pass; hints come in stages that never show the answer's code; bad input gets
a clear error."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from nodecourse import solve
from nodecourse.exercises import ex06
from nodecourse.exercises import checking
from nodecourse.models import MLP, ODEBlock, ODEFunc

from helpers import failing_answer, hint_stages, answer_lines

F64 = torch.float64


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_checker_contract.py."""
    checking.reset_hints(already_failed=10)
    yield
    checking.reset_hints(already_failed=0)


def _small_ode_net(seed: int = 0, tol: float = 1e-3) -> nn.Sequential:
    torch.manual_seed(seed)
    field = MLP([4, 16, 4], nn.Tanh)
    with torch.no_grad():
        for layer in field:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(2.0)
    return nn.Sequential(nn.Linear(3, 4), ODEBlock(ODEFunc(field), rtol=tol, atol=tol), nn.Linear(4, 3))


# --------------------------------------------------------------------------------------------------
# the references against independent computations
# --------------------------------------------------------------------------------------------------


def test_accuracy_matches_a_full_batch_count_and_restores_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 5)).train()
    X, y = torch.randn(23, 4), torch.randint(0, 5, (23,))
    model.eval()
    with torch.no_grad():
        expected = float(np.mean(model(X).numpy().argmax(axis=1) == y.numpy()))
    model.train()
    for batch_size in (1, 5, 23, 100):
        got = ex06.accuracy(model, X, y, batch_size=batch_size)
        assert isinstance(got, float) and got == pytest.approx(expected, abs=1e-12)
        assert model.training, "accuracy must put the model back in train mode"


def test_accuracy_rejects_bad_input():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ex06.accuracy(model, torch.randn(3, 2), torch.zeros(3, dtype=torch.long), batch_size=0)
    with pytest.raises(ValueError, match=r"labels \[N\]"):
        ex06.accuracy(model, torch.randn(3, 2), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("hidden, classes", [(8, 10), (32, 4)])
def test_ode_classifier_has_the_parameter_count_of_its_formula(hidden, classes):
    model = ex06.ode_classifier(hidden, n_classes=classes, tol=1e-4)
    formula = (784 * hidden + hidden) + 2 * (hidden * hidden + hidden) + (hidden * classes + classes)
    assert sum(p.numel() for p in model.parameters()) == formula
    block = [m for m in model.modules() if isinstance(m, ODEBlock)]
    assert len(block) == 1 and block[0].method == "dopri5" and block[0].rtol == block[0].atol == 1e-4
    assert block[0].t1 == 1.0
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, classes)
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        ex06.ode_classifier(0)


def test_tolerance_sweep_matches_direct_solves_and_restores_the_block():
    model = _small_ode_net(tol=1e-3).train()
    torch.manual_seed(1)
    X = torch.randn(30, 3)
    y = torch.randint(0, 3, (30,))
    tols = [1e-1, 1e-3, 1e-6]
    results = ex06.evaluate_at_tolerances(model, X, y, tols, batch_size=30)
    block = model[1]
    assert (block.rtol, block.atol) == (1e-3, 1e-3) and model.training
    assert [r[0] for r in results] == tols
    with torch.no_grad():
        h0 = model[0](X)
        for tol, acc, nfe in results:
            sol = solve(block.func, h0, torch.tensor([0.0, 1.0]), rtol=tol, atol=tol, method="dopri5")
            assert nfe == sol.stats.nfe
            pred = model[2](sol.ys[-1]).argmax(-1)
            assert acc == pytest.approx((pred == y).sum().item() / len(y), abs=1e-12)
    nfes = [r[2] for r in results]
    assert nfes[0] < nfes[-1], "tighter tolerances need more evaluations"


def test_tolerance_sweep_averages_the_nfe_over_batches():
    model = _small_ode_net(seed=2)
    torch.manual_seed(3)
    X, y = torch.randn(25, 3), torch.randint(0, 3, (25,))
    (_, acc, nfe), = ex06.evaluate_at_tolerances(model, X, y, [1e-4], batch_size=10)
    per_batch = [ex06.evaluate_at_tolerances(model, X[s:s + 10], y[s:s + 10], [1e-4])[0][2] for s in (0, 10, 20)]
    assert nfe == pytest.approx(sum(per_batch) / 3)
    assert acc == pytest.approx(ex06.accuracy(model, X, y))  # the block's own tol is 1e-3, but ...
    model[1].rtol = model[1].atol = 1e-4
    assert acc == pytest.approx(ex06.accuracy(model, X, y))  # ... the sweep used 1e-4


def test_tolerance_sweep_restores_the_block_after_an_error_and_needs_one_block():
    model = _small_ode_net()
    with pytest.raises(RuntimeError):
        ex06.evaluate_at_tolerances(model, torch.randn(4, 7), torch.zeros(4, dtype=torch.long), [1e-5])
    assert (model[1].rtol, model[1].atol) == (1e-3, 1e-3)
    with pytest.raises(ValueError, match="exactly one ODEBlock"):
        ex06.evaluate_at_tolerances(nn.Linear(3, 3), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), [1e-3])


def test_pca_2d_matches_the_covariance_eigenvectors_up_to_sign():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(30, 6)) * np.array([4.0, 2.0, 1.0, 0.5, 0.2, 0.1]) + 7.0
    centred = states - states.mean(axis=0)
    eigval, eigvec = np.linalg.eigh(centred.T @ centred)
    expected = centred @ eigvec[:, ::-1][:, :2]
    got = ex06.pca_2d(torch.tensor(states)).numpy()
    for j in range(2):
        assert min(np.abs(got[:, j] - expected[:, j]).max(), np.abs(got[:, j] + expected[:, j]).max()) < 1e-9
    assert got[:, 0].var() >= got[:, 1].var()
    with pytest.raises(ValueError, match=r"states must be \[T, D\]"):
        ex06.pca_2d(torch.randn(5))


def test_turning_angles_of_known_paths_and_against_atan2():
    square = torch.tensor([[0.0, 0], [1, 0], [1, 1], [0, 1]], dtype=F64)
    assert torch.allclose(ex06.turning_angles(square), torch.tensor([90.0, 90.0], dtype=F64))
    back = torch.tensor([[0.0, 0], [1, 0], [0, 0]], dtype=F64)
    assert ex06.turning_angles(back).item() == pytest.approx(180.0)
    n = 13  # a regular polygon turns by 360/n at every corner
    k = torch.arange(n + 1, dtype=F64) * 2 * math.pi / n
    polygon = torch.stack([torch.cos(k), torch.sin(k)], dim=1)
    assert torch.allclose(ex06.turning_angles(polygon), torch.full((n - 1,), 360.0 / n, dtype=F64))
    torch.manual_seed(0)
    walk = torch.randn(20, 2, dtype=F64).cumsum(0)
    d = walk[1:] - walk[:-1]
    cross = d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0]
    dot = (d[:-1] * d[1:]).sum(-1)
    assert torch.allclose(ex06.turning_angles(walk), torch.rad2deg(torch.atan2(cross.abs(), dot)), atol=1e-9)
    with pytest.raises(ValueError, match="at least 3 points"):
        ex06.turning_angles(torch.randn(2, 2))


# --------------------------------------------------------------------------------------------------
# staged hints that never give the answer away
# --------------------------------------------------------------------------------------------------

CHECKERS = [ex06.check_accuracy, ex06.check_ode_classifier, ex06.check_evaluate_at_tolerances, ex06.check_pca_2d,
            ex06.check_turning_angles, ex06.check_confusion_counts]


@pytest.mark.parametrize("checker", CHECKERS, ids=[c.__name__ for c in CHECKERS])
def test_hints_come_in_two_or_three_stages_without_the_answers_code(checker, capsys):
    seen, _ = hint_stages(checker, capsys)
    stages = [text for _, _, text in seen[:seen[0][1]]]
    assert 2 <= len(stages) <= 3 and len(set(stages)) == len(stages)
    answer = answer_lines("06_mnist_exercises.py", (ex06.accuracy, ex06.ode_classifier, ex06.evaluate_at_tolerances, ex06.turning_angles,
                      ex06.confusion_counts))
    for stage in stages:
        leaked = [ln for ln in answer if ln in stage]
        assert not leaked, f"hint stage shows the answer's code: {leaked}"
        for code in ("model.eval()", "torch.no_grad()", "Vh[:2]", "accumulate=True", "rad2deg(", "nn.Sequential(nn."):
            assert code not in stage


def test_the_answer_comes_only_on_request(capsys):
    checking.reset_hints(already_failed=0)
    ex06.check_confusion_counts(ex06.buggy_confusion_counts)
    out = capsys.readouterr().out
    assert "[stage 1 of 3]" in out and "accumulate" not in out and "show_answer('06.6')" in out
    ex06.show_answer(6)
    assert "accumulate=True" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 1: accuracy in batches
# --------------------------------------------------------------------------------------------------

REFERENCES = {
    "check_accuracy": ex06.accuracy,
    "check_ode_classifier": ex06.ode_classifier,
    "check_evaluate_at_tolerances": ex06.evaluate_at_tolerances,
    "check_pca_2d": ex06.pca_2d,
    "check_turning_angles": ex06.turning_angles,
    "check_confusion_counts": ex06.confusion_counts,
}


def _assert_fails(checker, fn, capsys, *phrases):
    assert getattr(ex06, checker)(fn) is REFERENCES[checker]
    out = capsys.readouterr().out
    assert "FAILED" in out and "hint:" in out
    for phrase in phrases:
        assert phrase in out, out
    return out


def _assert_passes(checker, fn, capsys, n):
    assert getattr(ex06, checker)(fn) is fn
    out = capsys.readouterr().out
    assert f"passed {n}/{n}" in out, out


def _accuracy(last_batch=True, mean_of_batches=False, eval_mode=True, restore=True, always_train=False,
              batches=True, grads=False, as_tensor=False):
    """An accuracy function with one deliberate difference from the statement."""
    def fn(model, X, y, batch_size=256):
        was_training = model.training
        if eval_mode:
            model.eval()
        starts = range(0, X.shape[0], batch_size) if batches else [0]
        size = batch_size if batches else X.shape[0]
        hits, accs = torch.tensor(0), []
        with torch.enable_grad() if grads else torch.no_grad():
            for s in starts:
                xb, yb = X[s:s + size], y[s:s + size]
                if not last_batch and len(yb) < size and s > 0:
                    continue
                right = (model(xb).argmax(-1) == yb)
                hits, accs = hits + right.sum(), accs + [right.float().mean()]
        counted = sum(len(y[s:s + size]) for s in starts if last_batch or len(y[s:s + size]) == size or s == 0)
        value = sum(accs) / len(accs) if mean_of_batches else hits / counted
        if always_train:
            model.train()
        elif restore:
            model.train(was_training)
        return value if as_tensor else float(value)
    return fn


def test_accuracy_checker_names_each_mistake(capsys):
    _assert_fails("check_accuracy", _accuracy(last_batch=False), capsys,
                  "wrong the last, smaller batch counts (50 samples, batches of 16: the last holds 2): expected",
                  "the accuracy without the last, smaller batch")
    _assert_fails("check_accuracy", _accuracy(mean_of_batches=True), capsys,
                  "wrong the correct predictions divided by N (37 samples, batches of 8, 10 classes)",
                  "the mean of the per-batch accuracies")
    _assert_fails("check_accuracy", _accuracy(eval_mode=False), capsys,
                  "wrong evaluates in eval mode (this model, like dropout, predicts differently in train mode)")
    _assert_fails("check_accuracy", _accuracy(as_tensor=True), capsys, "wrong returns a Python float: got a Tensor")
    _assert_fails("check_accuracy", _accuracy(batches=False), capsys,
                  "wrong feeds the model batch_size samples at a time, never more: raised ValueError")
    _assert_fails("check_accuracy", _accuracy(grads=True), capsys,
                  "wrong evaluates without gradients (no graph): raised RuntimeError")
    out = _assert_fails("check_accuracy", _accuracy(restore=False), capsys,
                        "wrong puts a model that came in train mode back in train mode: the model is left in eval "
                        "mode")
    assert "ok    leaves a model that came in eval mode in eval mode" in out
    out = _assert_fails("check_accuracy", _accuracy(always_train=True), capsys,
                        "wrong leaves a model that came in eval mode in eval mode: the model is left in train mode")
    assert "ok    puts a model that came in train mode back in train mode" in out


def test_accuracy_written_another_way_passes(capsys):
    def other(model, X, y, batch_size=256):
        mode = model.training
        model.train(False)
        with torch.inference_mode():
            predicted = torch.cat([model(chunk).argmax(dim=1) for chunk in torch.split(X, batch_size)])
        model.train(mode)
        return (predicted == y).double().mean().item()

    _assert_passes("check_accuracy", other, capsys, 11)


# --------------------------------------------------------------------------------------------------
# exercise 2: the ODE-Net classifier
# --------------------------------------------------------------------------------------------------


def _classifier(hidden_layers=1, activation=nn.Tanh, use_tol=True, flatten=True, method="dopri5", wrap=False):
    """An ode_classifier with one deliberate difference from the statement."""
    def fn(hidden_size, n_classes=10, tol=1e-3):
        sizes = [hidden_size] * (hidden_layers + 2)
        tol_used = tol if use_tol else 1e-3
        block = ODEBlock(ODEFunc(MLP(sizes, activation)), method=method, rtol=tol_used, atol=tol_used)
        parts = [nn.Flatten()] if flatten else []
        model = nn.Sequential(*parts, nn.Linear(784, hidden_size), block, nn.Linear(hidden_size, n_classes))
        return _Wrapper(model) if wrap else model
    return fn


class _Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def test_ode_classifier_checker_names_each_mistake(capsys):
    _assert_fails("check_ode_classifier", _classifier(hidden_layers=0), capsys,
                  "wrong the dynamics are an MLP [h, h, h]: 2h(h + 1) parameters (hidden_size=16): the dynamics have "
                  "272 parameters")
    out = _assert_fails("check_ode_classifier", _classifier(use_tol=False), capsys,
                        "wrong rtol = atol = tol (hidden_size=16, tol=1e-5): (rtol, atol) is (0.001, 0.001), "
                        "expected (1e-05, 1e-05)")
    assert "FAILED 7/8" in out
    _assert_fails("check_ode_classifier", _classifier(activation=nn.ReLU), capsys,
                  "wrong tanh between the layers of the dynamics: the dynamics' layers are ('Linear', 'ReLU', "
                  "'Linear')")
    _assert_fails("check_ode_classifier", _classifier(flatten=False), capsys,
                  "wrong an nn.Sequential of four modules", "wrong maps images [B, 1, 28, 28] to scores",
                  "does not run on a [3, 1, 28, 28] batch")
    _assert_fails("check_ode_classifier", _classifier(method="rk4"), capsys,
                  "wrong the ODE block solves on [0, 1] with dopri5: (t1, method) is (1.0, 'rk4')")
    _assert_fails("check_ode_classifier", _classifier(wrap=True), capsys,
                  "wrong an nn.Sequential of four modules: Flatten, Linear, ODEBlock, Linear (hidden_size=32): "
                  "expected an nn.Sequential, got _Wrapper")
    _assert_fails("check_ode_classifier", lambda h, n_classes=10, tol=1e-3: nn.Sequential(
        nn.Flatten(), MLP([784, h, h, n_classes])), capsys, "exactly one ODEBlock, found 0")


def test_an_ode_classifier_built_another_way_passes(capsys):
    def other(hidden_size, n_classes=10, tol=1e-3):
        net = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, hidden_size))
        return nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("project", nn.Linear(784, hidden_size)),
            ("ode", ODEBlock(ODEFunc(net), 1, "dopri5", tol, tol)),
            ("readout", nn.Linear(hidden_size, n_classes)),
        ]))

    _assert_passes("check_ode_classifier", other, capsys, 8)


# --------------------------------------------------------------------------------------------------
# exercise 3: the tolerance sweep
# --------------------------------------------------------------------------------------------------


def _sweep(find=True, both=True, eval_mode=True, grads=False, mean_nfe=True, restore=True, finally_=True):
    """An evaluate_at_tolerances with one deliberate difference from the statement."""
    def fn(model, X, y, tols, batch_size=1000):
        block = next(m for m in model.modules() if isinstance(m, ODEBlock)) if find else model[1]
        saved, mode = (block.rtol, block.atol), model.training

        def put_back():
            if restore:
                block.rtol, block.atol = saved
                model.train(mode)

        if eval_mode:
            model.eval()
        results = []
        try:
            for tol in tols:
                block.rtol = tol
                if both:
                    block.atol = tol
                right, nfes = 0, []
                with torch.enable_grad() if grads else torch.no_grad():
                    for s in range(0, X.shape[0], batch_size):
                        right += int((model(X[s:s + batch_size]).argmax(-1) == y[s:s + batch_size]).sum())
                        nfes.append(block.nfe_forward)
                results.append((tol, right / X.shape[0], sum(nfes) / len(nfes) if mean_nfe else nfes[-1]))
        except Exception:
            if finally_:
                put_back()
            raise
        put_back()
        return results
    return fn


def test_tolerance_checker_names_each_mistake(capsys):
    out = _assert_fails("check_evaluate_at_tolerances", _sweep(restore=False), capsys,
                        "wrong restores the block's rtol and atol afterwards: the block's (rtol, atol) are (1e-06, "
                        "1e-06), not restored to (0.001, 0.001)",
                        "wrong restores the model's train mode afterwards: the model is left in eval mode")
    assert "ok    one (tol, accuracy, NFE) per tol" in out
    _assert_fails("check_evaluate_at_tolerances", _sweep(mean_nfe=False), capsys,
                  "wrong batches of batch_size: accuracy over all of X, NFE the mean over the 3 batches", "mean NFE")
    _assert_fails("check_evaluate_at_tolerances", _sweep(both=False), capsys,
                  "wrong rtol AND atol set to each tol (the block starts at 1e-3): at tol = 1e-06")
    _assert_fails("check_evaluate_at_tolerances", _sweep(find=False), capsys,
                  "wrong finds the ODEBlock among model.modules() (here inside a sub-module): raised")
    out = _assert_fails("check_evaluate_at_tolerances", _sweep(finally_=False), capsys,
                        "wrong restores both even when the model fails part-way (it raises at the second tol): the "
                        "block's (rtol, atol) are (1e-05, 1e-05) after the model failed part-way")
    assert "FAILED 9/10" in out
    _assert_fails("check_evaluate_at_tolerances", _sweep(eval_mode=False), capsys,
                  "wrong evaluates in eval mode (this model, like dropout, predicts differently in train mode): at "
                  "tol = 0.001, the accuracy")
    _assert_fails("check_evaluate_at_tolerances", _sweep(grads=True), capsys,
                  "wrong evaluates without gradients (no graph): raised RuntimeError")


def test_a_tolerance_sweep_written_another_way_passes(capsys):
    from contextlib import ExitStack

    def other(model, X, y, tols, batch_size=1000):
        (block,) = [m for m in model.modules() if isinstance(m, ODEBlock)]
        with ExitStack() as stack:
            old = block.rtol, block.atol, model.training
            stack.callback(lambda: (setattr(block, "rtol", old[0]), setattr(block, "atol", old[1]),
                                    model.train(old[2])))
            model.eval()
            out = []
            for tol in tols:
                block.rtol, block.atol = tol, tol
                with torch.inference_mode():
                    runs = [(model(xb).argmax(1), block.nfe_forward) for xb in torch.split(X, batch_size)]
                predicted = torch.cat([p for p, _ in runs])
                out.append([tol, (predicted == y).sum().item() / len(y),
                            float(np.mean([n for _, n in runs]))])
            return out

    _assert_passes("check_evaluate_at_tolerances", other, capsys, 10)


# --------------------------------------------------------------------------------------------------
# exercise 4: PCA
# --------------------------------------------------------------------------------------------------


def _pca_uncentred(states):
    _, _, vh = torch.linalg.svd(states, full_matrices=False)
    return states @ vh[:2].T


def _pca_without_singular_values(states):
    centred = states - states.mean(0)
    u, _, _ = torch.linalg.svd(centred, full_matrices=False)
    return u[:, :2]


def _pca_with_columns_of_vh(states):
    centred = states - states.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vh[:, :2]


def _pca_eigh_last_two(states):
    centred = states - states.mean(0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    return centred @ vectors[:, -2:]


def test_pca_checker_names_each_mistake(capsys):
    _assert_fails("check_pca_2d", _pca_uncentred, capsys,
                  "wrong centres the rows on their mean first (a cloud far from the origin)")
    _assert_fails("check_pca_2d", _pca_without_singular_values, capsys,
                  "wrong coordinates of the centred states, not unit vectors (they keep the states' scale): each "
                  "column points the right way but has the wrong length")
    _assert_fails("check_pca_2d", _pca_with_columns_of_vh, capsys,
                  "wrong the components are the rows of Vh (a smooth curve [40, 30])")
    _assert_fails("check_pca_2d", _pca_eigh_last_two, capsys,
                  "wrong the two LEADING components, the larger spread first (spreads 0.1, 0.3, 1, 4): the two "
                  "components come in the wrong order")


def test_pca_from_the_covariance_eigenvectors_passes(capsys):
    def other(states):
        centred = (states - states.mean(dim=0, keepdim=True)).double()
        _, vectors = torch.linalg.eigh(centred.T @ centred)
        return (centred @ vectors[:, [-1, -2]]).to(states.dtype)

    _assert_passes("check_pca_2d", other, capsys, 8)


# --------------------------------------------------------------------------------------------------
# exercise 5: turning angles
# --------------------------------------------------------------------------------------------------


def _angles_in_radians(path):
    return torch.deg2rad(ex06.turning_angles(path))


def _signed_angles(path):
    d = path[1:] - path[:-1]
    cross = d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0]
    return torch.rad2deg(torch.atan2(cross, (d[:-1] * d[1:]).sum(-1)))


def _angles_of_points(path):
    norms = path.norm(dim=-1)
    cos = (path[:-1] * path[1:]).sum(-1) / (norms[:-1] * norms[1:])
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))[:-1]


def _angles_unclamped(path):
    d = path[1:] - path[:-1]
    cos = (d[:-1] * d[1:]).sum(-1) / (d[:-1].norm(dim=-1) * d[1:].norm(dim=-1))
    return torch.rad2deg(torch.arccos(cos))


def test_turning_angle_checker_names_each_mistake(capsys):
    _assert_fails("check_turning_angles", _angles_in_radians, capsys,
                  "wrong in degrees: the corners of a square turn by 90: these are radians")
    _assert_fails("check_turning_angles", _signed_angles, capsys,
                  "wrong unsigned: right and left turns are both positive: some angles are negative")
    _assert_fails("check_turning_angles", _angles_of_points, capsys,
                  "wrong between consecutive SEGMENTS, not between the points (a half circle around (5, 5))")
    out = _assert_fails("check_turning_angles", _angles_unclamped, capsys,
                        "wrong no NaN where rounding pushes the cosine past 1 (a straight float32 path): the result "
                        "contains NaN")
    assert "ok    in degrees" in out


def test_turning_angles_from_the_half_angle_formula_pass(capsys):
    def other(path):
        d = path[1:] - path[:-1]
        u = d / d.norm(dim=-1, keepdim=True)
        a, b = u[:-1], u[1:]
        return 2 * torch.atan2((a - b).norm(dim=-1), (a + b).norm(dim=-1)) * 180 / math.pi

    _assert_passes("check_turning_angles", other, capsys, 8)


# --------------------------------------------------------------------------------------------------
# exercise 6 (find the bug) and exercise 7 (predict)
# --------------------------------------------------------------------------------------------------


def test_the_shipped_confusion_counts_bug_fails_on_repeated_pairs(capsys):
    out = _assert_fails("check_confusion_counts", ex06.buggy_confusion_counts, capsys,
                        "wrong a pair that occurs twice counts twice: the counts add up to 2, not to the 3 samples")
    assert "ok    every (true, predicted) pair occurs once (the author's test)" in out


def test_confusion_counts_transposed_or_float_fail(capsys):
    _assert_fails("check_confusion_counts", lambda pred, y, n_classes=10: ex06.confusion_counts(y, pred, n_classes),
                  capsys, "wrong rows are the TRUE classes, columns the PREDICTED ones: the matrix is transposed")

    def float_counts(pred, y, n_classes=10):
        counts = torch.zeros(n_classes, n_classes)
        counts.index_put_((y, pred), torch.ones(len(y)), accumulate=True)
        return counts

    _assert_fails("check_confusion_counts", float_counts, capsys,
                  "wrong an integer tensor [n_classes, n_classes], also for classes nobody predicts (n_classes = 5): "
                  "expected an integer tensor, got torch.float32")


@pytest.mark.parametrize("other", [
    lambda pred, y, n_classes=10: torch.bincount(y * n_classes + pred, minlength=n_classes**2).reshape(n_classes, -1),
    lambda pred, y, n_classes=10: torch.tensor([[int(((y == i) & (pred == j)).sum()) for j in range(n_classes)]
                                                for i in range(n_classes)]),
], ids=["bincount", "loops"])
def test_confusion_counts_repaired_another_way_pass(other, capsys):
    _assert_passes("check_confusion_counts", other, capsys, 6)


def test_parameter_count_prediction(capsys):
    assert ex06.check_mlp_parameters_prediction(None, verbose=False) == 79510
    for wrong in (79400, 78500):  # weights only, biases forgotten; the first layer alone
        ex06.check_mlp_parameters_prediction(wrong)
        out = capsys.readouterr().out
        assert "FAILED, wrong prediction: you predicted" in out and "m biases" in out
    ex06.check_mlp_parameters_prediction(79510)
    assert "passed" in capsys.readouterr().out
