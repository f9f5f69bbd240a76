"""Checkers of notebook 06: the references are right, wrong answers fail with a hint, unattempted ones
hand back the reference, and bad input gets a clear error."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nodecourse import solve
from nodecourse.exercises import ex06
from nodecourse.exercises import checking
from nodecourse.models import MLP, ODEBlock, ODEFunc

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
# the checkers
# --------------------------------------------------------------------------------------------------

REFERENCES = {
    "check_accuracy": ex06.accuracy,
    "check_ode_classifier": ex06.ode_classifier,
    "check_evaluate_at_tolerances": ex06.evaluate_at_tolerances,
    "check_pca_2d": ex06.pca_2d,
    "check_turning_angles": ex06.turning_angles,
}


def _assert_fails(checker, fn, capsys, *phrases):
    assert getattr(ex06, checker)(fn) is REFERENCES[checker]
    out = capsys.readouterr().out
    assert "FAILED" in out and "hint:" in out
    for phrase in phrases:
        assert phrase in out, out


def _accuracy_without_last_batch(model, X, y, batch_size=256):
    model.eval()
    with torch.no_grad():
        n = (X.shape[0] // batch_size) * batch_size or X.shape[0]
        return float((model(X[:n]).argmax(-1) == y[:n]).float().mean())


def _accuracy_mean_of_batches(model, X, y, batch_size=256):
    model.eval()
    with torch.no_grad():
        accs = [float((model(X[s:s + batch_size]).argmax(-1) == y[s:s + batch_size]).float().mean())
                for s in range(0, X.shape[0], batch_size)]
    return sum(accs) / len(accs)


def _accuracy_in_train_mode(model, X, y, batch_size=256):
    with torch.no_grad():
        return float((model(X).argmax(-1) == y).float().mean())


def _accuracy_as_tensor(model, X, y, batch_size=256):
    model.eval()
    with torch.no_grad():
        return (model(X).argmax(-1) == y).float().mean()


def test_accuracy_checker_catches_common_mistakes(capsys):
    _assert_fails("check_accuracy", _accuracy_without_last_batch, capsys, "last batch of 2", "last, smaller batch")
    _assert_fails("check_accuracy", _accuracy_mean_of_batches, capsys, "last batch of 2", "not the mean")
    _assert_fails("check_accuracy", _accuracy_in_train_mode, capsys, "dropout, left in train mode", "model.eval()")
    _assert_fails("check_accuracy", _accuracy_as_tensor, capsys, "return a Python float")


def _classifier_one_hidden_layer(hidden_size, n_classes=10, tol=1e-3):
    field = ODEFunc(MLP([hidden_size, hidden_size], nn.Tanh))
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden_size), ODEBlock(field, rtol=tol, atol=tol),
                         nn.Linear(hidden_size, n_classes))


def _classifier_ignoring_tol(hidden_size, n_classes=10, tol=1e-3):
    return ex06.ode_classifier(hidden_size, n_classes)


def _classifier_with_relu(hidden_size, n_classes=10, tol=1e-3):
    field = ODEFunc(MLP([hidden_size, hidden_size, hidden_size], nn.ReLU))
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden_size), ODEBlock(field, rtol=tol, atol=tol),
                         nn.Linear(hidden_size, n_classes))


def _classifier_without_flatten(hidden_size, n_classes=10, tol=1e-3):
    return nn.Sequential(*list(ex06.ode_classifier(hidden_size, n_classes, tol))[1:])


def _mlp_without_ode(hidden_size, n_classes=10, tol=1e-3):
    return nn.Sequential(nn.Flatten(), MLP([784, hidden_size, hidden_size, n_classes]))


class _Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def _classifier_in_a_custom_module(hidden_size, n_classes=10, tol=1e-3):
    return _Wrapper(ex06.ode_classifier(hidden_size, n_classes, tol))


def test_ode_classifier_checker_catches_common_mistakes(capsys):
    _assert_fails("check_ode_classifier", _classifier_in_a_custom_module, capsys, "layout '_Wrapper'")
    _assert_fails("check_ode_classifier", _classifier_one_hidden_layer, capsys, "dynamics parameters")
    _assert_fails("check_ode_classifier", _classifier_ignoring_tol, capsys, "tol=1e-5", "rtol 0.001 (expected 1e-05)")
    _assert_fails("check_ode_classifier", _classifier_with_relu, capsys, "dynamics layers")
    _assert_fails("check_ode_classifier", _classifier_without_flatten, capsys, "does not run on a [3, 1, 28, 28]")
    _assert_fails("check_ode_classifier", _mlp_without_ode, capsys, "exactly one ODEBlock, found 0")


def _sweep_without_restoring(model, X, y, tols, batch_size=1000):
    block = [m for m in model.modules() if isinstance(m, ODEBlock)][0]
    saved_mode = model.training
    out = []
    for tol in tols:
        block.rtol = block.atol = tol
        out.append(ex06.evaluate_at_tolerances(model, X, y, [tol], batch_size)[0])
        block.rtol = block.atol = tol  # the reference call restored it; undo that, as a naive loop would
    model.train(saved_mode)
    return out


def _sweep_last_batch_nfe(model, X, y, tols, batch_size=1000):
    block = [m for m in model.modules() if isinstance(m, ODEBlock)][0]
    out = []
    for tol, acc, _ in ex06.evaluate_at_tolerances(model, X, y, tols, batch_size):
        saved = (block.rtol, block.atol)
        block.rtol = block.atol = tol
        with torch.no_grad():
            model.eval()(X[((X.shape[0] - 1) // batch_size) * batch_size:])
        block.rtol, block.atol = saved
        out.append((tol, acc, block.nfe_forward))
    return out


def _sweep_only_rtol(model, X, y, tols, batch_size=1000):
    block = [m for m in model.modules() if isinstance(m, ODEBlock)][0]
    saved, mode = block.rtol, model.training
    out = []
    model.eval()
    for tol in tols:
        block.rtol = tol  # atol stays at its old value
        with torch.no_grad():
            acc = float((model(X).argmax(-1) == y).float().mean())
        out.append((tol, acc, float(block.nfe_forward)))
    block.rtol = saved
    model.train(mode)
    return out


def test_tolerance_checker_catches_common_mistakes(capsys):
    _assert_fails("check_evaluate_at_tolerances", _sweep_without_restoring, capsys, "not restored")
    _assert_fails("check_evaluate_at_tolerances", _sweep_last_batch_nfe, capsys, "batches of 20", "NFE:")
    _assert_fails("check_evaluate_at_tolerances", _sweep_only_rtol, capsys, "one batch")


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


def test_pca_checker_catches_common_mistakes(capsys):
    _assert_fails("check_pca_2d", _pca_uncentred, capsys, "centre it first", "subtract the mean")
    _assert_fails("check_pca_2d", _pca_without_singular_values, capsys, "component 1 differs")
    _assert_fails("check_pca_2d", _pca_with_columns_of_vh, capsys, "differs from the reference")


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


def test_turning_angle_checker_catches_common_mistakes(capsys):
    _assert_fails("check_turning_angles", _angles_in_radians, capsys, "all 90", "degrees")
    _assert_fails("check_turning_angles", _signed_angles, capsys, "both positive")
    _assert_fails("check_turning_angles", _angles_of_points, capsys, "segments d = path[1:] - path[:-1]")


# --- exercise 6 (find the bug) and exercise 7 (predict) -------------------------------------------


def test_the_shipped_confusion_counts_bug_fails_on_repeated_pairs(capsys):
    assert ex06.check_confusion_counts(ex06.buggy_confusion_counts) is ex06.confusion_counts
    out = capsys.readouterr().out
    assert "ok    every (true, predicted) pair occurs once" in out
    assert "wrong a pair that occurs twice counts twice: the counts add up to 2, not to the 3 samples" in out
    assert "accumulate" in out


def test_confusion_counts_with_bincount_passes(capsys):
    def other(pred, y, n_classes=10):
        return torch.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)

    assert ex06.check_confusion_counts(other) is other
    assert "passed 4/4" in capsys.readouterr().out


def test_confusion_counts_transposed_fails(capsys):
    def transposed(pred, y, n_classes=10):
        return ex06.confusion_counts(y, pred, n_classes)

    assert ex06.check_confusion_counts(transposed) is ex06.confusion_counts
    assert "wrong every (true, predicted) pair occurs once: some counts differ" in capsys.readouterr().out


def test_parameter_count_prediction(capsys):
    assert ex06.check_mlp_parameters_prediction(None, verbose=False) == 79510
    ex06.check_mlp_parameters_prediction(79400)  # weights only, biases forgotten
    out = capsys.readouterr().out
    assert "FAILED" in out and "m biases" in out
    ex06.check_mlp_parameters_prediction(79510)
    assert "passed" in capsys.readouterr().out
