"""Tests of nodecourse.data: toy sets, true trajectories, IDX files and the MNIST sources."""
from __future__ import annotations

import gzip
import math
import struct
import sys
import types

import numpy as np
import pytest
import torch

from nodecourse import config, data
from nodecourse.data import (
    MNISTData,
    cubic_regression,
    irregular_time_series,
    load_mnist,
    lotka_volterra,
    lotka_volterra_field,
    nested_circles,
    pendulum,
    pendulum_field,
    read_idx,
    reflection_1d,
    spirals,
    split_holdout,
    write_idx,
)

F64 = torch.float64


# --------------------------------------------------------------------------------------------------
# toy sets
# --------------------------------------------------------------------------------------------------


def test_cubic_regression_matches_formula():
    x, y = cubic_regression()
    assert x.shape == (10, 1) and y.shape == (10, 1)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    expected_x = np.linspace(-2.0, 2.0, 10)
    np.testing.assert_allclose(x.squeeze(1).numpy(), expected_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y.squeeze(1).numpy(), expected_x**3 + 0.1 * expected_x, rtol=1e-6, atol=1e-6)
    x64, _ = cubic_regression(dtype=F64)
    assert x64.dtype == F64


def _times_and_values(ts):
    return ts.times, ts.values


SEEDED = {
    "spirals": lambda seed: spirals(200, 0.1, seed=seed),
    "nested_circles": lambda seed: nested_circles(200, seed=seed),
    "reflection_1d": lambda seed: reflection_1d(50, seed=seed),
    "irregular_time_series": lambda seed: _times_and_values(irregular_time_series(4, 9, seed=seed)),
}


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_seeded_sets_are_deterministic(name):
    make = SEEDED[name]
    a, b, c = make(0), make(0), make(1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_seeded_sets_leave_global_rng_alone(name):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    SEEDED[name](0)
    assert torch.equal(torch.rand(3), expected)


def test_spirals_shapes_balance_and_geometry():
    X, labels = spirals(101, noise=0.0, seed=3, turns=1.5)
    assert X.shape == (101, 2) and X.dtype == torch.float32
    assert labels.shape == (101,) and labels.dtype == torch.long
    assert torch.bincount(labels).tolist() == [51, 50]
    X = X.double()
    r = X.norm(dim=1)
    assert r.max() <= 1.0 + 1e-6
    # noise-free points lie on the spiral: angle = 2 pi turns r (+ pi for class 1), mod 2 pi
    angle = torch.atan2(X[:, 1], X[:, 0])
    expected = 2 * math.pi * 1.5 * r + math.pi * labels.double()
    diff = torch.remainder(angle - expected + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-4
    # and the labels are shuffled, not in two blocks
    assert (labels[1:] != labels[:-1]).sum() > 10


def test_nested_circles_disk_and_annulus():
    X, labels = nested_circles(2000, inner_radius=0.5, outer_radii=(1.0, 1.5), seed=0)
    assert X.shape == (2000, 2) and labels.dtype == torch.long
    assert torch.bincount(labels).tolist() == [1000, 1000]
    r = X.double().norm(dim=1)
    inner, outer = r[labels == 0], r[labels == 1]
    assert inner.max() <= 0.5 + 1e-6
    assert outer.min() >= 1.0 - 1e-6 and outer.max() <= 1.5 + 1e-6
    # uniform in area: half of the disk's points lie within radius 0.5 / sqrt(2)
    assert abs((inner < 0.5 / math.sqrt(2)).double().mean().item() - 0.5) < 0.05


def test_reflection_1d():
    x, y = reflection_1d(64, seed=2, x_max=2.0)
    assert x.shape == (64, 1) and y.shape == (64, 1) and x.dtype == torch.float32
    assert torch.equal(y, -x)
    assert x.abs().max() <= 2.0 and (x > 0).any() and (x < 0).any()


# --------------------------------------------------------------------------------------------------
# true trajectories
# --------------------------------------------------------------------------------------------------


def test_lotka_volterra_conserves_its_invariant():
    alpha, beta, delta, gamma = 1.5, 1.0, 1.0, 3.0
    y0 = torch.tensor([[1.0, 1.0], [2.0, 0.5], [4.0, 2.0]], dtype=F64)
    t = torch.linspace(0.0, 10.0, 101, dtype=F64)
    ys = lotka_volterra(y0, t, alpha, beta, delta, gamma)
    assert ys.shape == (101, 3, 2) and ys.dtype == F64
    assert torch.equal(ys[0], y0)
    x, p = ys[..., 0], ys[..., 1]
    V = delta * x - gamma * x.log() + beta * p - alpha * p.log()
    assert (V - V[0]).abs().max() < 1e-6
    # it really moves around a cycle (not a trivially constant trajectory)
    assert (x.max(0).values - x.min(0).values).min() > 0.5


def test_lotka_volterra_defaults_are_float32_and_cycle():
    ys = lotka_volterra()
    assert ys.shape == (201, 2) and ys.dtype == torch.float32
    x, p = ys[:, 0].double(), ys[:, 1].double()
    V = 1.0 * x - 3.0 * x.log() + 1.0 * p - 1.5 * p.log()
    assert (V - V[0]).abs().max() < 1e-5


def test_lotka_volterra_field_matches_formula():
    y = torch.tensor([[2.0, 3.0]], dtype=F64)
    f = lotka_volterra_field(0.0, y, alpha=1.5, beta=1.0, delta=1.0, gamma=3.0)
    assert torch.allclose(f, torch.tensor([[1.5 * 2 - 2 * 3, 2 * 3 - 3.0 * 3]], dtype=F64))


def test_pendulum_conserves_energy_without_damping():
    y0 = torch.tensor([[1.0, 0.0], [2.5, 0.3]], dtype=F64)
    t = torch.linspace(0.0, 20.0, 201, dtype=F64)
    ys = pendulum(y0, t, g_over_l=2.0)
    energy = 0.5 * ys[..., 1] ** 2 - 2.0 * torch.cos(ys[..., 0])
    assert (energy - energy[0]).abs().max() < 1e-8


def test_pendulum_small_angle_matches_cosine():
    theta0 = 0.01
    t = torch.linspace(0.0, 10.0, 101)
    ys = pendulum(torch.tensor([theta0, 0.0]), t, g_over_l=4.0)
    assert ys.dtype == torch.float32
    exact = theta0 * torch.cos(2.0 * t.double())
    assert (ys[:, 0].double() - exact).abs().max() < 1e-3 * theta0


def test_damped_pendulum_small_angle_matches_exact_and_loses_energy():
    theta0, k, c = 0.01, 4.0, 0.4
    t = torch.linspace(0.0, 10.0, 101, dtype=F64)
    ys = pendulum(torch.tensor([theta0, 0.0], dtype=F64), t, g_over_l=k, damping=c)
    wd = math.sqrt(k - c**2 / 4)
    exact = theta0 * torch.exp(-c * t / 2) * (torch.cos(wd * t) + (c / 2) / wd * torch.sin(wd * t))
    assert (ys[:, 0] - exact).abs().max() < 1e-3 * theta0
    energy = 0.5 * ys[:, 1] ** 2 + k * (1 - torch.cos(ys[:, 0]))
    assert (energy[1:] <= energy[:-1] + 1e-15).all()


def test_pendulum_field_matches_formula():
    f = pendulum_field(0.0, torch.tensor([0.5, -1.0], dtype=F64), g_over_l=3.0, damping=0.2)
    assert torch.allclose(f, torch.tensor([-1.0, -3.0 * math.sin(0.5) + 0.2], dtype=F64))


def test_trajectories_backward_in_time_return_to_start():
    y0 = torch.tensor([1.0, 1.0], dtype=F64)
    forward = lotka_volterra(y0, torch.tensor([0.0, 3.0], dtype=F64))
    back = lotka_volterra(forward[-1], torch.tensor([3.0, 0.0], dtype=F64))
    assert torch.allclose(back[-1], y0, atol=1e-7)


# --------------------------------------------------------------------------------------------------
# irregular time series
# --------------------------------------------------------------------------------------------------


def test_irregular_time_series_layout_and_noise():
    ts = irregular_time_series(n_series=30, n_points=40, t_max=5.0, noise=0.1, seed=0)
    assert ts.times.shape == (30, 40) and ts.values.shape == (30, 40, 2) and ts.clean.shape == (30, 40, 2)
    assert ts.times.dtype == torch.float32 and ts.values.dtype == torch.float32
    assert (ts.times.diff(dim=1) > 0).all()
    assert ts.times.min() > 0 and ts.times.max() < 5.0
    # irregular: the gaps differ within a series and the grids differ between series
    assert ts.times.diff(dim=1).std(dim=1).min() > 0
    assert not torch.equal(ts.times[0], ts.times[1])
    residual = (ts.values - ts.clean).double()
    assert abs(residual.std().item() - 0.1) < 0.01


def test_irregular_time_series_follows_the_spiral_ode():
    ts = irregular_time_series(n_series=5, n_points=10, noise=0.0, decay=0.2, frequency=1.5, dtype=F64)
    assert torch.equal(ts.values, ts.clean)
    # clean values are the dense truth at the observation times; the dense truth starts at y0
    assert torch.allclose(ts.dense(ts.times), ts.clean)
    assert torch.allclose(ts.dense(torch.zeros(1, dtype=F64))[:, 0], ts.y0)
    # and it solves dy/dt = A y: central finite differences against the field
    t = torch.linspace(0.5, 8.0, 16, dtype=F64)
    h = 1e-5
    derivative = (ts.dense(t + h) - ts.dense(t - h)) / (2 * h)
    assert torch.allclose(derivative, ts.field(t, ts.dense(t)), atol=1e-8)
    # the radius decays as exp(-decay t)
    r = ts.dense(t).norm(dim=-1)
    assert torch.allclose(r, ts.y0.norm(dim=-1, keepdim=True) * torch.exp(-0.2 * t))


# --------------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------------


def test_write_idx_writes_the_standard_header(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = write_idx(tmp_path / "a-idx3-ubyte", arr).read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">3I", raw[4:16]) == (2, 3, 4)
    assert raw[16:] == arr.tobytes()
    gz = write_idx(tmp_path / "a-idx3-ubyte.gz", torch.from_numpy(arr))
    assert gzip.decompress(gz.read_bytes()) == raw


def test_read_idx_parses_big_endian_types(tmp_path):
    values = np.array([[1, -2, 70000], [3, 4, -5]], dtype=np.int64)
    blob = b"\x00\x00\x0c\x02" + struct.pack(">2I", 2, 3) + struct.pack(">6i", *values.ravel().tolist())
    (tmp_path / "ints").write_bytes(blob)
    out = read_idx(tmp_path / "ints")
    assert out.shape == (2, 3) and out.dtype == np.int32 and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


# --------------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No IDX folder, no default cache, and torchvision unimportable: nothing can reach the network."""
    monkeypatch.delenv("NODECOURSE_DATA", raising=False)
    monkeypatch.setattr(data, "_DEFAULT_CACHE", tmp_path / "no-cache-here")
    monkeypatch.setitem(sys.modules, "torchvision", None)


def _fake_mnist(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


def _write_pair(folder, images, labels, prefix="train", gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_reads_idx_files_from_root(tmp_path, offline, capsys, layout, gz):
    images, labels = _fake_mnist(7)
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    _write_pair(folder, images, labels, gz=gz)
    mnist = load_mnist(root=tmp_path)
    assert isinstance(mnist, MNISTData) and mnist.source == "idx" and len(mnist) == 7
    assert mnist.images.shape == (7, 1, 28, 28) and mnist.images.dtype == torch.float32
    assert mnist.labels.dtype == torch.int64
    np.testing.assert_allclose(mnist.images[:, 0].numpy(), images / 255.0, atol=1e-7)
    np.testing.assert_array_equal(mnist.labels.numpy(), labels)
    printed = capsys.readouterr().out
    assert "IDX files" in printed and str(folder) in printed and printed.count("\n") == 1


def test_load_mnist_reads_idx_files_from_env(tmp_path, offline, monkeypatch, capsys):
    images, labels = _fake_mnist(5, seed=1)
    _write_pair(tmp_path, images, labels, prefix="t10k", gz=True)
    monkeypatch.setenv("NODECOURSE_DATA", str(tmp_path))
    mnist = load_mnist(train=False, flatten=True, verbose=False)
    assert mnist.source == "idx" and mnist.images.shape == (5, 784)
    np.testing.assert_allclose(mnist.images.numpy(), images.reshape(5, -1) / 255.0, atol=1e-7)
    np.testing.assert_array_equal(mnist.labels.numpy(), labels)
    assert "IDX" in mnist.description and capsys.readouterr().out == ""


def test_load_mnist_root_overrides_env(tmp_path, offline, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    _write_pair(a, *_fake_mnist(3))
    _write_pair(b, *_fake_mnist(4))
    monkeypatch.setenv("NODECOURSE_DATA", str(a))
    assert len(load_mnist(verbose=False)) == 3
    assert len(load_mnist(root=b, verbose=False)) == 4


def test_shipped_subset_loads_5000_digits(tmp_path, offline, monkeypatch, capsys):
    monkeypatch.setattr(config, "FAST", False)  # reach the downloader step, which finds no torchvision
    monkeypatch.delenv("NODECOURSE_FAST", raising=False)
    mnist = load_mnist(root=tmp_path)
    assert mnist.source == "subset"
    assert mnist.images.shape == (5000, 1, 28, 28) and mnist.images.dtype == torch.float32
    assert mnist.labels.shape == (5000,) and mnist.labels.dtype == torch.int64
    assert torch.bincount(mnist.labels).tolist() == [500] * 10
    assert mnist.images.min() >= 0 and mnist.images.max() <= 1
    # real MNIST digits: mostly black background, mean intensity about 0.13
    assert 0.10 < mnist.images.mean().item() < 0.16
    printed = capsys.readouterr().out
    assert "5,000 digits from the subset shipped with nodecourse" in printed
    assert f"no IDX files found under root {tmp_path}" in printed
    assert "torchvision not installed" in printed


def test_shipped_subset_for_test_split_says_to_split(offline, capsys):
    mnist = load_mnist(train=False, flatten=True)
    assert mnist.source == "subset" and mnist.images.shape == (5000, 784)
    assert "split_holdout" in capsys.readouterr().out


def test_fast_mode_never_downloads(offline, monkeypatch):
    monkeypatch.setattr(config, "FAST", True)

    def no_network(*args, **kwargs):
        raise AssertionError("the downloader was called in fast mode")

    monkeypatch.setattr(data, "_torchvision_mnist", no_network)
    mnist = load_mnist(verbose=False)
    assert mnist.source == "subset" and "fast mode" in mnist.description


def test_download_false_skips_torchvision(offline, monkeypatch):
    monkeypatch.setattr(config, "FAST", False)
    monkeypatch.delenv("NODECOURSE_FAST", raising=False)
    monkeypatch.setattr(data, "_torchvision_mnist", lambda *a: pytest.fail("downloader called"))
    mnist = load_mnist(download=False, verbose=False)
    assert mnist.source == "subset" and "download=False" in mnist.description


def _fake_torchvision(monkeypatch, mnist_class):
    """Install a stand-in torchvision whose datasets.MNIST is ``mnist_class`` (no network)."""
    tv = types.ModuleType("torchvision")
    tv.datasets = types.SimpleNamespace(MNIST=mnist_class)
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setattr(config, "FAST", False)
    monkeypatch.delenv("NODECOURSE_FAST", raising=False)


def test_torchvision_source_when_available(tmp_path, offline, monkeypatch):
    images, labels = _fake_mnist(6, seed=4)
    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            self.data, self.targets = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

    _fake_torchvision(monkeypatch, FakeMNIST)
    mnist = load_mnist(root=tmp_path, train=False, verbose=False)
    assert calls == [(str(tmp_path), False, True)]
    assert mnist.source == "torchvision" and "torchvision" in mnist.description
    np.testing.assert_array_equal(mnist.labels.numpy(), labels)
    np.testing.assert_allclose(mnist.images[:, 0].numpy(), images / 255.0, atol=1e-7)


def test_torchvision_failure_falls_back_quietly(tmp_path, offline, monkeypatch):
    class BrokenMNIST:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("no route to host")

    _fake_torchvision(monkeypatch, BrokenMNIST)
    mnist = load_mnist(root=tmp_path, verbose=False)
    assert mnist.source == "subset"
    assert "torchvision download failed: RuntimeError: no route to host" in mnist.description


def test_split_holdout_is_stratified_and_disjoint(offline):
    mnist = load_mnist(verbose=False)
    train, test = split_holdout(mnist, n_test=1000, seed=0)
    assert len(train) == 4000 and len(test) == 1000
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert torch.bincount(train.labels).tolist() == [400] * 10
    # disjoint and complete: tag every sample with its index and split the tags
    tagged = MNISTData(torch.arange(5000.0).unsqueeze(1), mnist.labels, "subset", "tagged")
    tr, te = split_holdout(tagged, n_test=1000, seed=0)
    ids_tr, ids_te = set(tr.images.squeeze(1).tolist()), set(te.images.squeeze(1).tolist())
    assert not ids_tr & ids_te and len(ids_tr | ids_te) == 5000
    assert torch.equal(te.labels, mnist.labels[te.images.squeeze(1).long()])
    # deterministic in the seed
    assert torch.equal(split_holdout(tagged, 1000, seed=0)[1].images, te.images)
    assert not torch.equal(split_holdout(tagged, 1000, seed=1)[1].images, te.images)


def test_split_holdout_keeps_class_proportions():
    labels = torch.tensor([0] * 30 + [1] * 10 + [2] * 5)
    d = MNISTData(torch.arange(45.0).unsqueeze(1), labels, "idx", "toy")
    _, test = split_holdout(d, n_test=9, seed=0)
    assert torch.bincount(test.labels).tolist() == [6, 2, 1]


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: spirals(0), "n_samples must be at least 2"),
        (lambda: spirals(10, noise=-0.1), "noise is a standard deviation"),
        (lambda: spirals(10, seed=1.5), "seed must be an int"),
        (lambda: spirals(10, turns=0), "turns must be > 0"),
        (lambda: nested_circles(1), "n_samples must be at least 2"),
        (lambda: nested_circles(10, inner_radius=1.2), "need 0 < inner_radius < outer_radii"),
        (lambda: nested_circles(10, outer_radii=(1.5, 1.0)), "need 0 < inner_radius < outer_radii"),
        (lambda: nested_circles(10, outer_radii=3.0), "outer_radii must be a pair"),
        (lambda: reflection_1d(0), "n_samples must be at least 1"),
        (lambda: reflection_1d(10, x_max=0), "x_max must be > 0"),
        (lambda: lotka_volterra([1.0, 1.0, 1.0]), "y0 must have last dimension 2"),
        (lambda: lotka_volterra([1.0, -1.0]), "populations in y0 must be positive"),
        (lambda: lotka_volterra([1.0, float("nan")]), "finite initial state"),
        (lambda: lotka_volterra([1.0, 1.0], alpha=0.0), "alpha must be > 0"),
        (lambda: lotka_volterra([1.0, 1.0], torch.zeros(2, 2)), "t must be a non-empty 1-D"),
        (lambda: lotka_volterra([1.0, 1.0], [0.0, 1.0, 1.0]), "strictly increasing or strictly decreasing"),
        (lambda: pendulum([1.0, 0.0], [0.0, 2.0, 1.0]), "strictly increasing or strictly decreasing"),
        (lambda: pendulum([1.0, 0.0], g_over_l=-1.0), "g_over_l must be > 0"),
        (lambda: pendulum([1.0, 0.0], damping=-0.1), "damping must be >= 0"),
        (lambda: pendulum([1.0, 0.0], max_step=0.0), "max_step must be > 0"),
        (lambda: irregular_time_series(n_series=0), "n_series must be at least 1"),
        (lambda: irregular_time_series(n_points=0), "n_points must be at least 1"),
        (lambda: irregular_time_series(t_max=0.0), "t_max must be > 0"),
        (lambda: irregular_time_series(noise=-1.0), "noise is a standard deviation"),
        (lambda: irregular_time_series(radius_range=(1.0, 0.5)), "radius_range must satisfy"),
        (
            lambda: irregular_time_series(n_series=2).dense(torch.zeros(3, 4)),
            r"t must be \[m\] or \[n_series=2, m\]",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_n_samples_must_be_an_int():
    with pytest.raises(TypeError, match="n_samples must be an int"):
        reflection_1d(2.5)


def test_bad_root_and_env_folder(tmp_path, monkeypatch):
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    with pytest.raises(ValueError, match="is not a directory; pass the folder"):
        load_mnist(root=not_a_dir, verbose=False)
    monkeypatch.setenv("NODECOURSE_DATA", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="NODECOURSE_DATA=.* is not a directory"):
        load_mnist(verbose=False)


@pytest.mark.parametrize(
    "blob, match",
    [
        (b"\x00", "shorter than the 4-byte magic number"),
        (b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic number 0x01020801"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "bad magic number"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00\x01\x02", "size mismatch"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x00\x01", "size mismatch"),
        (b"\x1f\x8bnot really gzip", "cannot be decompressed"),
    ],
)
def test_malformed_idx_files(tmp_path, blob, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=match):
        read_idx(path)


def test_malformed_mnist_folder(tmp_path, offline):
    images, labels = _fake_mnist(4)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    with pytest.raises(ValueError, match="no train-labels-idx1-ubyte"):
        load_mnist(root=tmp_path, verbose=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels[:3])
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        load_mnist(root=tmp_path, verbose=False)
    write_idx(tmp_path / "train-images-idx3-ubyte", images.reshape(4, -1)[:3])
    with pytest.raises(ValueError, match=r"images must be \[n, height, width\]"):
        load_mnist(root=tmp_path, verbose=False)


def test_write_idx_rejects_bad_arrays(tmp_path):
    with pytest.raises(TypeError, match="write_idx writes uint8 data; got dtype float"):
        write_idx(tmp_path / "x", np.zeros(3))
    with pytest.raises(ValueError, match="values must lie in 0..255"):
        write_idx(tmp_path / "x", np.array([0, 256]))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))


def test_split_holdout_bad_sizes():
    d = MNISTData(torch.zeros(10, 1), torch.arange(10) % 2, "idx", "toy")
    with pytest.raises(ValueError, match="n_test must be smaller than the 10 samples"):
        split_holdout(d, n_test=10)
    with pytest.raises(ValueError, match="n_test must be at least 1"):
        split_holdout(d, n_test=0)
