"""Tests of the training loop, its NFE history, and the plotting helpers (on the Agg backend)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402
from torch import nn  # noqa: E402

from nodecourse.models import MLP, NeuralODE, ODEBlock, ODEFunc  # noqa: E402
from nodecourse.plotting import (  # noqa: E402
    convergence_plot,
    pca_project,
    pca_trajectories,
    phase_portrait,
    trajectories,
    vector_field,
)
from nodecourse.train import History, accuracy, count_parameters, train  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _cubic():
    x = torch.linspace(-2.0, 2.0, 10).reshape(10, 1)
    return x, x**3 + 0.1 * x


# ----------------------------------------------------------------------------- train


def test_train_neural_ode_loss_falls_and_nfe_is_recorded():
    torch.manual_seed(0)
    model = NeuralODE(1, hidden_size=16, num_steps=5, step_size=0.2, output_size=1)
    history = train(model, nn.functional.mse_loss, _cubic(), n_iters=150, lr=1e-2, progress=False)
    assert isinstance(history, History) and len(history) == 150
    assert min(history.loss[-10:]) < 0.1 * history.loss[0]
    assert history.nfe_forward == [5] * 150  # Euler: one evaluation per step
    assert history.nfe_backward == [0] * 150


def test_train_records_adjoint_backward_nfe():
    torch.manual_seed(0)
    model = nn.Sequential(ODEBlock(ODEFunc(MLP([1, 16, 1])), method="dopri5", adjoint=True))
    history = train(model, nn.functional.mse_loss, _cubic(), n_iters=5, lr=1e-2, progress=False)
    assert len(history.nfe_forward) == len(history.nfe_backward) == 5
    assert all(n > 0 for n in history.nfe_forward) and all(n > 0 for n in history.nfe_backward)


def test_train_without_ode_blocks_leaves_nfe_empty_and_sgd_works():
    torch.manual_seed(0)
    model = MLP([1, 16, 1])
    history = train(model, nn.functional.mse_loss, _cubic(), n_iters=100, lr=1e-2, optimizer="sgd",
                    progress=False)
    assert history.nfe_forward == [] and history.nfe_backward == []
    assert history.loss[-1] < history.loss[0]


def test_minibatches_cover_every_sample_once_per_epoch():
    X = torch.arange(12.0).reshape(12, 1)
    seen: list[torch.Tensor] = []

    def loss_fn(out, target):
        seen.append(target.clone())
        return out.sum() * 0.0

    model = nn.Linear(1, 1)
    train(model, loss_fn, (X, X.squeeze(1)), n_iters=6, batch_size=4, progress=False,
          generator=torch.Generator().manual_seed(0))
    assert all(s.shape == (4,) for s in seen)
    for epoch in (seen[:3], seen[3:]):
        assert sorted(torch.cat(epoch).tolist()) == list(range(12))


def test_train_accepts_an_iterable_of_batches_and_an_optimizer():
    model = nn.Linear(1, 1)
    batches = [(torch.ones(2, 1), torch.zeros(2, 1)), (torch.ones(3, 1), torch.zeros(3, 1))]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    history = train(model, nn.functional.mse_loss, batches, n_iters=5, optimizer=opt, progress=False)
    assert len(history.loss) == 5 and history.loss[-1] < history.loss[0]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(n_iters=0), ValueError, "n_iters must be a positive integer"),
        (dict(optimizer="rmsprop"), ValueError, "unknown optimizer 'rmsprop'"),
        (dict(lr=-1.0), ValueError, "lr must be a finite positive"),
        (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
        (dict(data=5), TypeError, "data must be an"),
        (dict(data=[torch.ones(2, 1)]), TypeError, r"each batch must be an \(inputs, targets\) pair"),
        (dict(data=(torch.ones(3, 1), torch.ones(2, 1))), ValueError, "same number of samples"),
        (dict(data=[], ), ValueError, "no batches"),
        (dict(data=[(torch.ones(2, 1), torch.ones(2, 1))], batch_size=1), ValueError, "batch_size only applies"),
        (dict(loss_fn=lambda o, y: (o - y) ** 2), ValueError, "must return a scalar"),
        (dict(loss_fn=lambda o, y: o.sum() * float("nan")), ValueError, "lower the learning rate"),
    ],
)
def test_train_rejects_bad_input(kwargs, exc, match):
    args = dict(model=nn.Linear(1, 1), loss_fn=nn.functional.mse_loss, data=(torch.ones(4, 1), torch.ones(4, 1)),
                n_iters=3, progress=False)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        train(**args)


def test_accuracy_counts_argmax_matches_over_uneven_batches():
    predicted = torch.tensor([0, 1, 2, 3, 1, 0, 2])
    labels = torch.tensor([0, 1, 2, 0, 1, 3, 2])  # 5 of 7 agree
    X = nn.functional.one_hot(predicted, 4).double()
    model = nn.Identity()
    assert accuracy(model, X, labels, batch_size=3) == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match=r"integer labels \[N\]"):
        accuracy(model, X, labels[:, None])


def test_accuracy_restores_training_mode():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    accuracy(model, torch.randn(5, 2), torch.zeros(5, dtype=torch.long))
    assert model.training


def test_count_parameters():
    mlp = MLP([3, 5, 2])
    assert count_parameters(mlp) == 3 * 5 + 5 + 5 * 2 + 2
    mlp[0].weight.requires_grad_(False)
    assert count_parameters(mlp) == 5 + 5 * 2 + 2
    assert count_parameters(mlp, trainable_only=False) == 32


# ----------------------------------------------------------------------------- plotting


def rotation(t, y):
    """dy/dt = (-y2, y1): circles around the origin, the exact solution is a rotation."""
    return torch.stack([-y[:, 1], y[:, 0]], dim=-1)


def test_vector_field_quiver_samples_the_field_on_the_grid():
    fig, ax = plt.subplots()
    assert vector_field(ax, rotation, (-1, 1), (-2, 2), n=5) is ax
    quivers = [c for c in ax.collections if isinstance(c, Quiver)]
    assert len(quivers) == 1
    q = quivers[0]
    assert q.N == 25
    np.testing.assert_allclose(q.U, -q.Y, atol=1e-6)
    np.testing.assert_allclose(q.V, q.X, atol=1e-6)
    assert ax.get_xlim() == (-1, 1)


def test_vector_field_stream_and_module_field():
    fig, ax = plt.subplots()
    field = ODEFunc(MLP([3, 8, 2]).double(), time_dependent=True)  # called in its own dtype
    vector_field(ax, field, (-1, 1), (-1, 1), n=6, t=0.5, kind="stream")
    assert len(ax.collections) >= 1 and field.nfe == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(xlim=(1, -1)), "xlim must be"),
        (dict(n=1), "n must be an integer >= 2"),
        (dict(kind="contour"), "kind must be 'quiver' or 'stream'"),
        (dict(field=lambda t, y: y[:, :1]), r"\[N, 2\] velocities"),
    ],
)
def test_vector_field_rejects_bad_input(kwargs, match):
    args = dict(field=rotation, xlim=(-1, 1), ylim=(-1, 1))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        vector_field(plt.subplots()[1], **args)


def test_phase_portrait_draws_exact_circles():
    fig, ax = plt.subplots()
    y0 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]], dtype=torch.float64)
    t = torch.linspace(0, 2 * np.pi, 50, dtype=torch.float64)
    phase_portrait(ax, rotation, y0, t, n=7)
    assert len(ax.lines) == 3
    assert sum(isinstance(c, Quiver) for c in ax.collections) == 1
    for line, r in zip(ax.lines, y0.norm(dim=1).tolist()):
        x, y = line.get_data()
        np.testing.assert_allclose(np.hypot(x, y), r, rtol=1e-5)
        np.testing.assert_allclose([x[-1], y[-1]], [x[0], y[0]], atol=1e-5)  # a full turn
    xlo, xhi = ax.get_xlim()
    assert xlo < -2 and xhi > 2


def test_phase_portrait_rejects_non_planar_states():
    with pytest.raises(ValueError, match=r"\[B, 2\] tensor"):
        phase_portrait(plt.subplots()[1], rotation, torch.zeros(3), torch.linspace(0, 1, 5))


def test_trajectories_one_line_per_sample():
    fig, ax = plt.subplots()
    ys = torch.randn(10, 4, 2)
    trajectories(ax, ys, label="paths")
    assert len(ax.lines) == 4 and len(ax.collections) == 1
    np.testing.assert_allclose(ax.lines[2].get_xydata(), ys[:, 2].numpy())
    assert ax.lines[0].get_label() == "paths"
    trajectories(ax, np.zeros((5, 2)), start_markers=False)
    assert len(ax.lines) == 5
    with pytest.raises(ValueError, match=r"\[T, B, 2\]"):
        trajectories(ax, torch.zeros(5, 3, 4))


def test_convergence_plot_lines_and_reference_slopes():
    fig, ax = plt.subplots()
    h = np.array([0.1, 0.05, 0.025, 0.0125])
    errors = [2 * h, 3 * h**4]
    convergence_plot(ax, h, errors, orders=[1, 4], labels=["euler", "rk4"])
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.lines) == 4
    for line, p in zip(ax.lines[2:], [1, 4]):
        x, y = line.get_data()
        slope = np.polyfit(np.log(x), np.log(y), 1)[0]
        assert slope == pytest.approx(p)
        assert line.get_label() == f"O(h^{p})"
    # each reference passes through its method's curve, which has the same slope here
    np.testing.assert_allclose(ax.lines[3].get_ydata(), np.sort(3 * h**4))
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["euler", "rk4"]


def test_convergence_plot_single_method_and_errors():
    fig, ax = plt.subplots()
    convergence_plot(ax, torch.tensor([0.1, 0.2]), torch.tensor([1e-2, 4e-2]))
    assert len(ax.lines) == 1
    with pytest.raises(ValueError, match="one value per step size"):
        convergence_plot(ax, [0.1, 0.2, 0.4], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive step sizes"):
        convergence_plot(ax, [0.1, -0.2], [1.0, 2.0])
    with pytest.raises(ValueError, match="labels must name each"):
        convergence_plot(ax, [0.1, 0.2], [1.0, 2.0], labels=["a", "b"])
    with pytest.raises(ValueError, match="one error per step size"):
        convergence_plot(ax, [0.1, 0.2], [[1.0, 2.0], [1.0]])


def _numpy_pca(x: np.ndarray, k: int = 2) -> np.ndarray:
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:k].T


def _same_up_to_sign(a: np.ndarray, b: np.ndarray) -> None:
    for j in range(a.shape[1]):
        sign = np.sign(a[:, j] @ b[:, j])
        np.testing.assert_allclose(a[:, j], sign * b[:, j], atol=1e-10)


def test_pca_project_matches_numpy_svd():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    proj, comps, mean = pca_project(torch.from_numpy(x))
    _same_up_to_sign(proj.numpy(), _numpy_pca(x))
    np.testing.assert_allclose(comps.T @ comps, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(mean.numpy(), x.mean(axis=0))
    largest = comps.abs().argmax(dim=0)
    assert (comps[largest, torch.arange(2)] > 0).all()  # deterministic signs


def test_pca_project_rejects_bad_input():
    with pytest.raises(ValueError, match="pick one sample"):
        pca_project(torch.zeros(5, 2, 3))
    with pytest.raises(ValueError, match="k must be between 1 and"):
        pca_project(torch.zeros(5, 1), k=2)


def test_pca_trajectories_separate_and_joint_bases():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(12, 5)), rng.normal(size=(20, 8))
    fig, ax = plt.subplots()
    pca_trajectories(ax, [torch.from_numpy(a), b], labels=["MLP", "ODE"])
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    _same_up_to_sign(ax.lines[0].get_xydata(), _numpy_pca(a))
    _same_up_to_sign(ax.lines[1].get_xydata(), _numpy_pca(b))

    c = rng.normal(size=(9, 5))
    fig, ax = plt.subplots()
    pca_trajectories(ax, [a, c], joint=True, markers=False)
    both = np.concatenate([a, c])
    centred = both - both.mean(axis=0)
    vt = np.linalg.svd(centred, full_matrices=False)[2][:2]
    _same_up_to_sign(np.concatenate([ax.lines[0].get_xydata(), ax.lines[1].get_xydata()]), centred @ vt.T)

    with pytest.raises(ValueError, match="same state size"):
        pca_trajectories(ax, [a, b], joint=True)
    with pytest.raises(ValueError, match="states_list is empty"):
        pca_trajectories(ax, [])


def test_train_shows_a_progress_bar(capsys):
    model = NeuralODE(1, hidden_size=4, num_steps=2, step_size=0.5, output_size=1)
    train(model, nn.functional.mse_loss, _cubic(), n_iters=3, progress=True, desc="fitting", log_every=1)
    err = capsys.readouterr().err
    assert "fitting" in err and "3/3" in err and "nfe_f=2" in err
