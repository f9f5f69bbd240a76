"""Bad input to the public API outside the solvers: each gets a clear error (what is wrong, how to fix it),
never a traceback from inside torch, a silent wrong result or a hang.

Plain tests for each kind of error, and Hypothesis properties where they fit: for any valid parameters the
data are finite and of the promised shape, for any non-finite parameter a ValueError names it, for any
positive layer sizes (Python or NumPy ints) a model builds and maps to the promised shape.
"""
from __future__ import annotations

import gzip
import os
import random
import re
import struct
import subprocess
import sys
from pathlib import Path
from unittest import mock

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402

from nodecourse import config, data  # noqa: E402
from nodecourse.data import (  # noqa: E402
    MNISTData,
    cubic_regression,
    irregular_time_series,
    load_mnist,
    lotka_volterra,
    lotka_volterra_field,
    nested_circles,
    pendulum,
    pendulum_field,
    reflection_1d,
    spirals,
    split_holdout,
    write_idx,
)
from nodecourse.models import (  # noqa: E402
    CNF,
    MLP,
    AugmentedNODE,
    CNFField,
    ConcatMLP,
    DataControlledField,
    DataControlledODE,
    GalerkinMLP,
    GRUEncoder,
    LatentODE,
    NeuralODE,
    ODEBlock,
    ODEFunc,
    RegularisedClassifier,
    ResNet,
    SecondOrderNODE,
)
from nodecourse.plotting import convergence_plot, pca_project, trajectories, vector_field  # noqa: E402
from nodecourse.train import accuracy, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None)
"""Every Hypothesis test here: few examples, no deadline (the first call warms torch up), reproducible."""

INF, NAN = float("inf"), float("nan")
NON_FINITE = [INF, -INF, NAN]


# --------------------------------------------------------------------------------------------------
# toy data: every numeric parameter
# --------------------------------------------------------------------------------------------------

SHORT_T = torch.linspace(0.0, 0.5, 6)

# generator name -> (call with keyword overrides, the real-valued parameters it takes)
GENERATORS = {
    "spirals": (lambda **kw: spirals(20, **kw), ["noise", "turns"]),
    "nested_circles": (lambda **kw: nested_circles(20, **kw), ["inner_radius"]),
    "reflection_1d": (lambda **kw: reflection_1d(20, **kw), ["x_max"]),
    "lotka_volterra": (lambda **kw: lotka_volterra(t=SHORT_T, **kw),
                       ["alpha", "beta", "delta", "gamma", "max_step"]),
    "pendulum": (lambda **kw: pendulum(t=SHORT_T, **kw), ["g_over_l", "damping", "max_step"]),
    "irregular_time_series": (lambda **kw: irregular_time_series(3, 5, **kw),
                              ["t_max", "noise", "decay", "frequency"]),
}
REAL_PARAMETERS = [(name, param) for name, (_, params) in GENERATORS.items() for param in params]


@pytest.mark.parametrize("name, param", REAL_PARAMETERS)
@pytest.mark.parametrize("value", NON_FINITE, ids=["inf", "-inf", "nan"])
def test_non_finite_parameters_are_named_in_a_value_error(name, param, value):
    make, _ = GENERATORS[name]
    with pytest.raises(ValueError, match=rf"{param}.*(finite|standard deviation)"):
        make(**{param: value})


@pytest.mark.parametrize("name, param", REAL_PARAMETERS)
def test_parameters_that_are_not_numbers_are_a_type_error(name, param):
    make, _ = GENERATORS[name]
    with pytest.raises(TypeError, match=rf"{param} must be a real number, got str"):
        make(**{param: "1.0"})


@pytest.mark.parametrize("call, match", [
    (lambda: spirals(10, turns=-1.0), "turns must be > 0"),
    (lambda: pendulum(damping=-0.5), "damping must be >= 0"),
    (lambda: irregular_time_series(decay=-0.1), "decay must be >= 0"),
    (lambda: irregular_time_series(t_max=-1.0), "t_max must be > 0"),
    (lambda: lotka_volterra(max_step=0.0), "max_step must be > 0"),
    (lambda: nested_circles(10, inner_radius=-0.5), "need 0 < inner_radius"),
])
def test_parameters_of_the_wrong_sign_are_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call, param", [
    (lambda: nested_circles(10, outer_radii=(1.0, INF)), "outer_radii"),
    (lambda: nested_circles(10, outer_radii=(NAN, 2.0)), "outer_radii"),
    (lambda: nested_circles(10, outer_radii="12"), "outer_radii"),
    (lambda: irregular_time_series(radius_range=(0.5, INF)), "radius_range"),
    (lambda: irregular_time_series(radius_range=(0.5,)), "radius_range"),
])
def test_pairs_must_hold_two_finite_numbers(call, param):
    with pytest.raises(ValueError, match=rf"{param} must be a pair \(low, high\) of finite numbers"):
        call()


@pytest.mark.parametrize("call, exc, match", [
    (lambda: spirals(10.0), TypeError, "n_samples must be an int"),
    (lambda: spirals(True), TypeError, "n_samples must be an int"),
    (lambda: nested_circles(1), ValueError, "n_samples must be at least 2"),
    (lambda: irregular_time_series(n_series=2.0), TypeError, "n_series must be an int"),
    (lambda: irregular_time_series(n_points=0), ValueError, "n_points must be at least 1"),
    (lambda: split_holdout(MNISTData(torch.zeros(4, 1), torch.arange(4), "idx", "toy"), n_test=1.5), TypeError,
     "n_test must be an int"),
])
def test_counts_must_be_integers_at_least_the_minimum(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_numpy_integers_and_floats_are_accepted():
    X, labels = spirals(np.int64(12), np.float32(0.1), np.int32(3), turns=np.float64(1.5))
    assert X.shape == (12, 2) and labels.shape == (12,)
    series = irregular_time_series(np.int64(2), np.int16(4), t_max=np.float32(5.0))
    assert series.values.shape == (2, 4, 2)


@pytest.mark.parametrize("seed, exc", [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), ("0", TypeError),
                                       (True, TypeError)])
def test_seeds_must_be_integers_in_range(seed, exc):
    with pytest.raises(exc, match=r"seed must be an integer in \[0, 2\*\*32 - 1\]"):
        spirals(10, seed=seed)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(dtype=torch.int64), TypeError, "dtype must be a floating-point torch dtype"),
    (dict(dtype="float32"), TypeError, "dtype must be a floating-point torch dtype"),
    (dict(device="gpu"), ValueError, r"unknown device 'gpu'; use 'cpu', 'cuda'"),
    (dict(device=3), TypeError, "device name must be a string"),
])
@pytest.mark.parametrize("make", [cubic_regression, lambda **kw: spirals(10, **kw), lambda **kw: pendulum(**kw),
                                  lambda **kw: irregular_time_series(2, 3, **kw)],
                         ids=["cubic_regression", "spirals", "pendulum", "irregular_time_series"])
def test_dtype_and_device_are_checked(make, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make(**kwargs)


@pytest.mark.parametrize("call, match", [
    (lambda: spirals(10, noise=1e300), r"spirals\(noise=1e\+300.*came out as inf or NaN"),
    (lambda: irregular_time_series(noise=1e39), r"noise=1e\+39.*came out as inf or NaN in torch.float32"),
    (lambda: nested_circles(10, outer_radii=(1.0, 1e200)), "came out as inf or NaN"),
    (lambda: irregular_time_series(t_max=1e-300), "t_max=1e-300 is too small to give 50 distinct"),
])
def test_extreme_finite_parameters_never_give_non_finite_data(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_huge_parameters_are_fine_in_float64():
    X, _ = nested_circles(10, outer_radii=(1.0, 1e200), dtype=torch.float64)
    assert torch.isfinite(X).all() and (X.abs() <= 1e200 * (1 + 1e-12)).all()


def test_a_trajectory_that_would_take_hours_is_refused_at_once():
    with pytest.raises(ValueError, match=r"about 1e\+11 RK4 substeps.*raise max_step or shorten the time span"):
        lotka_volterra(t=[0.0, 1e9])
    with pytest.raises(ValueError, match="RK4 substeps"):
        pendulum(max_step=5e-324)  # 10 / 5e-324 is inf


@pytest.mark.parametrize("t", [[0.0, INF], [0.0, NAN, 1.0], [NAN]])
def test_non_finite_times_are_rejected(t):
    with pytest.raises(ValueError, match="t contains NaN or infinite times"):
        pendulum(t=t)
    with pytest.raises(ValueError, match="t contains NaN or infinite times"):
        irregular_time_series(2, 3).dense(t)


def test_a_state_that_is_not_numbers_is_a_type_error():
    with pytest.raises(TypeError, match="y0 must be a tensor or a sequence of numbers"):
        pendulum(y0=("a", "b"))


@pytest.mark.parametrize("field, names", [(lotka_volterra_field, r"\(prey, predator\)"),
                                          (pendulum_field, r"\(theta, omega\)")])
def test_fields_check_the_state_width(field, names):
    with pytest.raises(ValueError, match=rf"needs states of shape \[\.\.\., 2\] {names}, got shape \(4, 3\)"):
        field(0.0, torch.zeros(4, 3))
    with pytest.raises(TypeError, match="needs the state as a tensor"):
        field(0.0, [1.0, 2.0])


def test_dense_says_when_the_closed_form_overflows():
    series = irregular_time_series(2, 3, decay=5.0, dtype=torch.float64)
    with pytest.raises(ValueError, match="the states overflow at these times"):
        series.dense([-1000.0, 0.0])


def test_split_holdout_needs_mnist_data():
    with pytest.raises(TypeError, match="split_holdout splits an MNISTData"):
        split_holdout((torch.zeros(4, 1), torch.arange(4)))


positive = st.floats(1e-3, 10.0)
seeds = st.integers(0, 2**32 - 1)


@PROPERTY
@given(n=st.integers(2, 40), noise=st.floats(0.0, 10.0), turns=positive, seed=seeds)
def test_spirals_are_finite_and_shaped_for_any_valid_parameters(n, noise, turns, seed):
    X, labels = spirals(n, noise, seed, turns=turns)
    assert X.shape == (n, 2) and labels.shape == (n,) and torch.isfinite(X).all()
    assert int((labels == 0).sum()) == (n + 1) // 2


@PROPERTY
@given(n=st.integers(2, 40), r_in=positive, gap=positive, width=positive, seed=seeds)
def test_nested_circles_are_finite_and_in_their_rings(n, r_in, gap, width, seed):
    X, labels = nested_circles(n, r_in, (r_in + gap, r_in + gap + width), seed, dtype=torch.float64)
    radius = X.norm(dim=1)
    assert X.shape == (n, 2) and torch.isfinite(X).all()
    assert (radius[labels == 0] <= r_in * (1 + 1e-9)).all()
    assert (radius[labels == 1] >= (r_in + gap) * (1 - 1e-9)).all()


@PROPERTY
@given(n=st.integers(1, 40), x_max=st.floats(1e-6, 1e6), seed=seeds)
def test_reflection_is_finite_and_within_x_max(n, x_max, seed):
    x, y = reflection_1d(n, seed, x_max=x_max, dtype=torch.float64)
    assert x.shape == (n, 1) and torch.isfinite(x).all() and (x.abs() <= x_max).all() and torch.equal(y, -x)


@PROPERTY
@given(rates=st.lists(st.floats(0.1, 3.0), min_size=4, max_size=4), y0=st.tuples(st.floats(0.1, 3.0),
       st.floats(0.1, 3.0)), t_end=st.floats(0.05, 1.0))
def test_lotka_volterra_is_finite_and_shaped(rates, y0, t_end):
    ys = lotka_volterra(y0, torch.linspace(0.0, t_end, 4), *rates, max_step=0.02)
    assert ys.shape == (4, 2) and torch.isfinite(ys).all() and (ys > 0).all()


@PROPERTY
@given(g_over_l=positive, damping=st.floats(0.0, 5.0), y0=st.tuples(st.floats(-3, 3), st.floats(-3, 3)))
def test_pendulum_is_finite_and_shaped(g_over_l, damping, y0):
    ys = pendulum(y0, torch.linspace(0.0, 1.0, 5), g_over_l, damping, max_step=0.05)
    assert ys.shape == (5, 2) and torch.isfinite(ys).all()


@PROPERTY
@given(n_series=st.integers(1, 4), n_points=st.integers(1, 12), t_max=st.floats(1e-2, 1e3),
       noise=st.floats(0.0, 10.0), decay=st.floats(0.0, 10.0), frequency=st.floats(-10.0, 10.0),
       radii=st.tuples(positive, positive).map(sorted), seed=seeds)
def test_irregular_time_series_is_finite_sorted_and_shaped(n_series, n_points, t_max, noise, decay, frequency,
                                                          radii, seed):
    series = irregular_time_series(n_series, n_points, t_max, noise, seed, decay=decay, frequency=frequency,
                                   radius_range=tuple(radii))
    assert series.times.shape == (n_series, n_points) and series.values.shape == (n_series, n_points, 2)
    assert all(torch.isfinite(x).all() for x in (series.times, series.values, series.clean, series.y0))
    assert (series.times > 0).all() and (series.times.diff(dim=1) > 0).all() and (series.times <= t_max).all()


@PROPERTY
@given(st.sampled_from(REAL_PARAMETERS), st.floats(allow_nan=False, allow_infinity=False))
def test_any_finite_value_gives_finite_data_or_a_clear_error(name_param, value):
    """Whatever finite number is passed, the data are never silently inf or NaN."""
    name, param = name_param
    make, _ = GENERATORS[name]
    try:
        out = make(**{param: value})
    except ValueError as err:
        assert param in str(err) or "came out as inf or NaN" in str(err) or "RK4 substeps" in str(err), err
        return
    tensors = [out.times, out.values, out.clean] if name == "irregular_time_series" else \
        [out] if isinstance(out, torch.Tensor) else list(out)
    assert all(torch.isfinite(x.float()).all() for x in tensors)


@PROPERTY
@given(st.sampled_from(REAL_PARAMETERS), st.sampled_from(NON_FINITE))
def test_any_non_finite_value_is_a_value_error_naming_it(name_param, value):
    name, param = name_param
    with pytest.raises(ValueError, match=param):
        GENERATORS[name][0](**{param: value})


# --------------------------------------------------------------------------------------------------
# MNIST IDX files
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No IDX folder, no default cache, and torchvision unimportable: nothing can reach the network."""
    monkeypatch.delenv("NODECOURSE_DATA", raising=False)
    monkeypatch.setattr(data, "_DEFAULT_CACHE", tmp_path / "no-cache-here")
    monkeypatch.setitem(sys.modules, "torchvision", None)


def _digits(n: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, size, size), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


def _write_mnist(folder, images, labels):
    return (write_idx(folder / "train-images-idx3-ubyte", images),
            write_idx(folder / "train-labels-idx1-ubyte", labels))


def _idx_bytes(type_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def test_images_that_are_not_28x28_are_rejected(tmp_path, offline):
    images_file, _ = _write_mnist(tmp_path, *_digits(4, size=10))
    with pytest.raises(ValueError, match=rf"{re.escape(str(images_file))}: MNIST images are 28x28 pixels, got 10x10"):
        load_mnist(root=tmp_path, verbose=False)


def test_labels_outside_0_to_9_are_rejected(tmp_path, offline):
    images, labels = _digits(4)
    labels[2] = 200
    _, labels_file = _write_mnist(tmp_path, images, labels)
    with pytest.raises(ValueError, match=rf"{re.escape(str(labels_file))}: MNIST labels are digits 0-9, found 200 "
                                         r"at index 2"):
        load_mnist(root=tmp_path, verbose=False)


@pytest.mark.parametrize("which, blob, match", [
    ("images", _idx_bytes(0x0B, (2, 28, 28), bytes(2 * 28 * 28 * 2)), r"wrong magic number for MNIST images.*0x00000803"),
    ("images", _idx_bytes(0x08, (4,), bytes(4)), r"wrong magic number for MNIST images.*0x00000803"),
    ("labels", _idx_bytes(0x08, (4, 1), bytes(4)), r"wrong magic number for MNIST labels.*0x00000801"),
    ("labels", b"\x12\x34\x08\x01" + struct.pack(">I", 4) + bytes(4), "bad magic number 0x12340801"),
    ("images", _idx_bytes(0x08, (4, 28, 28), bytes(4 * 28 * 28 - 5)), "size mismatch.*truncated"),
    ("labels", b"\x00\x00", "shorter than the 4-byte magic number"),
])
def test_malformed_mnist_files_are_named_with_the_problem(tmp_path, offline, which, blob, match):
    images_file, labels_file = _write_mnist(tmp_path, *_digits(4))
    bad = images_file if which == "images" else labels_file
    bad.write_bytes(blob)
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*" + match):
        load_mnist(root=tmp_path, verbose=False)


def test_a_truncated_gzip_file_is_named(tmp_path, offline):
    images, labels = _digits(4)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    blob = gzip.compress(_idx_bytes(0x08, images.shape, images.tobytes()))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz looks gzip-compressed but cannot be decompressed"):
        load_mnist(root=tmp_path, verbose=False)


def test_image_and_label_counts_must_match_and_files_are_named(tmp_path, offline):
    images, labels = _digits(4)
    images_file, labels_file = _write_mnist(tmp_path, images, labels[:3])
    with pytest.raises(ValueError, match=rf"4 images but 3 labels \({re.escape(str(images_file))} and "
                                         rf"{re.escape(str(labels_file))}\)"):
        load_mnist(root=tmp_path, verbose=False)


def test_empty_mnist_files_are_rejected(tmp_path, offline):
    images_file, _ = _write_mnist(tmp_path, np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match=rf"{re.escape(str(images_file))} holds no images"):
        load_mnist(root=tmp_path, verbose=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(train="False"), "train must be True or False, got str 'False'"),
    (dict(flatten=1), "flatten must be True or False, got int 1"),
    (dict(root=5), r"root must be a folder path \(a str or pathlib.Path\)"),
    (dict(device="gpu"), "unknown device 'gpu'"),
])
def test_load_mnist_checks_its_arguments(offline, kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        load_mnist(verbose=False, **kwargs)


# --------------------------------------------------------------------------------------------------
# config: fast mode, seeds, devices
# --------------------------------------------------------------------------------------------------

ON, OFF = ["1", "true", "yes", "on"], ["0", "false", "no", "off", ""]


def _fast_mode_with(value: str | None) -> bool:
    env = {k: v for k, v in os.environ.items() if k != "NODECOURSE_FAST"}
    if value is not None:
        env["NODECOURSE_FAST"] = value
    with mock.patch.dict(os.environ, env, clear=True):
        return config.fast_mode()


@PROPERTY
@given(word=st.sampled_from(ON + OFF), upper=st.lists(st.booleans(), min_size=5, max_size=5),
       pad=st.sampled_from(["", " ", "\t", "  \n"]))
def test_fast_mode_accepts_the_documented_words_in_any_case(word, upper, pad):
    spelled = "".join(c.upper() if up else c for c, up in zip(word, upper + [False] * len(word)))
    assert _fast_mode_with(pad + spelled + pad) is (word in ON)


def test_fast_mode_is_off_when_unset():
    assert _fast_mode_with(None) is False


@PROPERTY
@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=6)
       .filter(lambda s: s.strip().lower() not in ON + OFF))
def test_fast_mode_rejects_anything_else_naming_the_variable(value):
    with pytest.raises(ValueError, match=r"NODECOURSE_FAST=.* is not understood; set it to one of 1, true, yes, on"):
        _fast_mode_with(value)


@pytest.mark.parametrize("value", ["2", "y", "1.0", "enable"])
def test_fast_mode_examples_that_used_to_mean_off(value):
    with pytest.raises(ValueError, match=f"NODECOURSE_FAST='{re.escape(value)}' is not understood"):
        _fast_mode_with(value)


def test_a_bad_fast_mode_stops_the_import_with_the_message():
    env = dict(os.environ, NODECOURSE_FAST="2")
    result = subprocess.run([sys.executable, "-c", "import nodecourse.config"], env=env, capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode != 0 and "NODECOURSE_FAST='2' is not understood" in result.stderr


BAD_SEEDS = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32), st.floats(), st.text(max_size=3),
                      st.booleans(), st.none())


@PROPERTY
@given(BAD_SEEDS)
def test_a_bad_seed_fails_before_anything_is_reseeded(seed):
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    with pytest.raises((TypeError, ValueError), match=r"seed must be an integer in \[0, 2\*\*32 - 1\]"):
        config.seed_everything(seed)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


@pytest.mark.parametrize("seed", [0, 2**32 - 1, np.int64(3), np.uint32(5)])
def test_good_seeds_reseed_everything(seed):
    config.seed_everything(seed)
    first = (random.random(), np.random.rand(), torch.rand(1))
    config.seed_everything(seed)
    assert (random.random(), np.random.rand()) == first[:2] and torch.equal(torch.rand(1), first[2])


def test_device_without_a_name_is_the_best_available():
    assert config.device().type in {"cpu", "cuda", "mps"}
    assert config.device("CPU") == torch.device("cpu") and config.device(torch.device("cpu")).type == "cpu"


@pytest.mark.parametrize("name, exc, match", [
    ("tpu", ValueError, r"unknown device 'tpu'; use 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ("cuda:x", ValueError, "unknown device 'cuda:x'"),
    ("meta", ValueError, "unknown device 'meta'"),
    (0, TypeError, "device name must be a string such as 'cpu' or 'cuda'"),
    ("cuda:99", ValueError, r"device 'cuda:99' is not available: this machine has \d+ CUDA device"),
])
def test_unknown_or_unavailable_devices_are_refused(name, exc, match):
    with pytest.raises(exc, match=match):
        config.device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_says_what_is_there():
    with pytest.raises(ValueError, match=r"device 'cuda' is not available.*use one of .*'cpu'"):
        config.device("cuda")


# --------------------------------------------------------------------------------------------------
# models: sizes, input width, device, dtype
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[2, True, 2], [2, 0, 2], [2, -3], [2, 2.0], [2, np.float64(4), 1], [2, "8", 1]])
def test_mlp_rejects_bools_floats_and_non_positive_sizes(sizes):
    with pytest.raises(ValueError, match=r"every MLP size must be a positive integer, got sizes=.*at position 1 is not"):
        MLP(sizes)


@pytest.mark.parametrize("sizes", [3, "2,16,2", torch.tensor([2, 3])])
def test_mlp_needs_a_list_of_widths(sizes):
    with pytest.raises(TypeError, match=r"MLP takes a list of layer widths such as MLP\(\[2, 16, 2\]\)"):
        MLP(sizes)


@pytest.mark.parametrize("build, match", [
    (lambda: NeuralODE(np.float32(3)), "input_size must be a positive integer"),
    (lambda: NeuralODE(3, True), "hidden_size must be a positive integer"),
    (lambda: ResNet(MLP([2, 2]), 2.0), "depth must be a positive integer"),
    (lambda: AugmentedNODE(2, np.int64(-1)), "aug_size must be an integer >= 0"),
    (lambda: CNF(np.int64(0)), "input_size must be an integer >= 1"),
    (lambda: LatentODE(state_size=np.float64(3)), "state_size must be a positive integer"),
    (lambda: RegularisedClassifier(hidden_size=0), "hidden_size must be a positive integer"),
    (lambda: DataControlledField(2, 2, hidden_size=[4, 0]), "every hidden width must be a positive integer"),
    (lambda: ODEFunc(nn.Linear(1, 1), time_dependent=True), "the net needs at least 2 inputs"),
    (lambda: ODEBlock(ODEFunc(MLP([2, 2])), t1="1"), "t1 must be a finite positive end time"),
    (lambda: ResNet(MLP([2, 2]), 2, step_size=INF), "step_size must be a finite positive number"),
])
def test_model_constructors_reject_bad_sizes_and_numbers(build, match):
    with pytest.raises(ValueError, match=match):
        build()


FIELDS = {"ODEFunc", "ConcatMLP", "GalerkinMLP", "CNFField"}  # called as f(t, x); the others as model(x)


def _models(width: int) -> dict[str, nn.Module]:
    """One of each model, mapping a batch ``[batch, width]``, solving with cheap fixed steps."""
    torch.manual_seed(0)
    fixed = dict(method="euler", options={"step_size": 0.5})
    return {
        "MLP": MLP([width, 4, 3]),
        "ResNet": ResNet(MLP([width, 4, width]), 2),
        "ODEBlock": ODEBlock(ODEFunc(MLP([width, 4, width])), **fixed),
        "NeuralODE": NeuralODE(width, 4, num_steps=2, step_size=0.5, output_size=3),
        "AugmentedNODE": AugmentedNODE(width, 1, 4, **fixed),
        "SecondOrderNODE": SecondOrderNODE(width, 4, output_size=3, **fixed),
        "CNF": CNF(width, 4, **fixed),
        "RegularisedClassifier": RegularisedClassifier(width, 3, 2, 4),
        "DataControlledODE": DataControlledODE(DataControlledField(width, width, hidden_size=4), method="rk4", step_size=0.5),
        "ODEFunc": ODEFunc(MLP([width, 4, width])),
        "ConcatMLP": ConcatMLP([width, 4, width]),
        "GalerkinMLP": GalerkinMLP([width, 4, width]),
        "CNFField": CNFField(width, 4),
    }


def _call(name: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(0.0, x) if name in FIELDS else model(x)


MODEL_NAMES = sorted(_models(2))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_wrong_input_width_says_expected_and_got(name):
    model = _models(2)[name]
    with pytest.raises(ValueError, match=r"(expects|must be).*\[(\.\.\.|batch), 2\].*\(5, 3\)"):
        _call(name, model, torch.zeros(5, 3))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_float64_input_to_a_float32_model_says_how_to_convert(name):
    model = _models(2)[name]
    with pytest.raises(TypeError, match=r"torch.float32 parameters but got a torch.float64 input; convert the input "
                                        r"with x.to\(torch.float32\) \(or the model with model.to\(torch.float64\)\)"):
        _call(name, model, torch.zeros(5, 2, dtype=torch.float64))


@pytest.mark.parametrize("name", ["MLP", "NeuralODE", "CNF", "ConcatMLP"])
def test_an_integer_input_is_a_type_error(name):
    model = _models(2)[name]
    with pytest.raises(TypeError, match=r"got a torch.int64 input; convert the input with x.to\(torch.float32\)\.$"):
        _call(name, model, torch.zeros(5, 2, dtype=torch.long))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_an_input_on_another_device_says_to_move_it(name):
    model = _models(2)[name]
    x = torch.zeros(5, 2, device="meta")  # a device other than the parameters' (no GPU needed)
    with pytest.raises(ValueError, match=r"parameters on cpu but got an input on meta; move the input with "
                                         r"x.to\('cpu'\) \(or the model with model.to\(x.device\)\)"):
        _call(name, model, x)


def test_encoder_and_latent_models_check_dtype_and_device():
    encoder = GRUEncoder(2, 4, 3)
    times = torch.linspace(0.1, 1.0, 5).expand(2, 5)
    with pytest.raises(TypeError, match="GRUEncoder has torch.float32 parameters but got a torch.float64 input"):
        encoder(times.double(), torch.zeros(2, 5, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="obs_times, obs_values and obs_mask must be on one device"):
        encoder(times, torch.zeros(2, 5, 2, device="meta"))


def test_non_tensor_inputs_are_a_type_error():
    with pytest.raises(TypeError, match=r"MLP\(\[2, 3\]\) needs a tensor \[\.\.\., 2\], got list"):
        MLP([2, 3])([[1.0, 2.0]])
    with pytest.raises(TypeError, match="NeuralODE needs a tensor of shape"):
        NeuralODE(2, 3)([[1.0, 2.0]])
    with pytest.raises(TypeError, match="ODEBlock needs the initial state as a floating-point tensor, got list"):
        ODEBlock(ODEFunc(MLP([2, 2])))([[1.0, 2.0]])
    with pytest.raises(TypeError, match="ODEBlock needs the initial state as a floating-point tensor, got a torch.int64"):
        ODEBlock(ODEFunc(MLP([2, 2])))(torch.zeros(3, 2, dtype=torch.long))


def test_autocast_mixed_dtypes_are_not_refused():
    mlp = MLP([2, 4, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mlp(torch.zeros(5, 2, dtype=torch.bfloat16))
    assert out.shape == (5, 3)


int_kind = st.sampled_from([int, np.int64, np.int32, np.uint8])


@PROPERTY
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4), kinds=st.lists(int_kind, min_size=4, max_size=4),
       batch=st.lists(st.integers(1, 3), max_size=2))
def test_any_positive_sizes_build_an_mlp_of_the_promised_shape(sizes, kinds, batch):
    widths = [kind(n) for kind, n in zip(kinds, sizes)]
    mlp = MLP(widths)
    assert mlp.sizes == tuple(sizes) and all(type(n) is int for n in mlp.sizes)
    assert mlp(torch.zeros(*batch, sizes[0])).shape == (*batch, sizes[-1])


@PROPERTY
@given(input_size=st.integers(1, 5), hidden=st.integers(1, 5), out=st.integers(1, 5), kind=int_kind,
       batch=st.integers(1, 4))
def test_any_positive_sizes_build_neural_odes_of_the_promised_shape(input_size, hidden, out, kind, batch):
    x = torch.zeros(batch, input_size)
    node = NeuralODE(kind(input_size), kind(hidden), num_steps=kind(2), step_size=0.5, output_size=kind(out))
    assert node(x).shape == (batch, out)
    augmented = AugmentedNODE(kind(input_size), kind(1), kind(hidden), kind(out), method="euler",
                              options={"step_size": 0.5})
    assert augmented(x).shape == (batch, out)


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


def _train(**kwargs):
    args = dict(model=nn.Linear(1, 1), loss_fn=nn.functional.mse_loss, data=(torch.ones(4, 1), torch.ones(4, 1)),
                n_iters=3, progress=False)
    args.update(kwargs)
    return train(**args)


def test_a_used_up_generator_says_to_pass_a_re_iterable():
    def batches():
        for _ in range(2):
            yield torch.ones(4, 1), torch.ones(4, 1)

    with pytest.raises(ValueError, match=r"one-shot iterator \(a generator\), used up after 2 batches, but n_iters "
                                         r"asks for more; pass a re-iterable instead \(a DataLoader, a list"):
        _train(data=batches(), n_iters=5)
    assert len(_train(data=batches(), n_iters=2)) == 2  # enough batches: fine


def test_an_iterator_over_a_list_is_one_shot_too():
    with pytest.raises(ValueError, match=r"one-shot iterator \(a list_iterator\)"):
        _train(data=iter([(torch.ones(2, 1), torch.ones(2, 1))]), n_iters=2)


def test_a_re_iterable_that_comes_back_empty_is_named():
    class Once:
        def __init__(self):
            self.done = False

        def __iter__(self):
            if not self.done:
                self.done = True
                yield torch.ones(2, 1), torch.ones(2, 1)

    with pytest.raises(ValueError, match=r"\(Once\) yielded no batches on a second pass"):
        _train(data=Once(), n_iters=2)


@pytest.mark.parametrize("empty, match", [
    ((torch.ones(0, 1), torch.ones(0, 1)), r"the data is empty: the inputs \(0, 1\) hold 0 samples"),
    ([(torch.ones(0, 1), torch.ones(0, 1))], "a batch of the data holds no samples"),
    (torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(0, 1), torch.ones(0, 1))),
     "the data yielded no batches: the dataset is empty"),
])
def test_empty_data_is_called_empty_not_a_learning_rate_problem(empty, match):
    with pytest.raises(ValueError, match=match) as info:
        _train(data=empty)
    assert "learning rate" not in str(info.value)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(n_iters=0), ValueError, "n_iters must be a positive integer, got n_iters=0"),
    (dict(n_iters=2.0), ValueError, "n_iters must be a positive integer"),
    (dict(n_iters=True), ValueError, "n_iters must be a positive integer"),
    (dict(log_every=0), ValueError, "log_every must be a positive integer"),
    (dict(lr=0.0), ValueError, "lr must be a finite positive number, got lr=0.0"),
    (dict(lr=INF), ValueError, "lr must be a finite positive number, got lr=inf"),
    (dict(lr=NAN), ValueError, "lr must be a finite positive number, got lr=nan"),
    (dict(lr="0.1"), ValueError, "lr must be a finite positive number, got lr='0.1'"),
    (dict(lr=True), ValueError, "lr must be a finite positive number, got lr=True"),
    (dict(loss_fn="mse"), TypeError, "loss_fn must be callable"),
    (dict(generator=0), TypeError, "generator must be a torch.Generator"),
    (dict(model=nn.Tanh()), ValueError, r"the model \(Tanh\) has no trainable parameters"),
    (dict(data=(np.ones((4, 1)), np.ones((4, 1)))), TypeError, "must be torch tensors, got NumPy arrays"),
    (dict(data=(torch.tensor(1.0), torch.tensor(1.0))), ValueError, "add a batch dimension"),
    (dict(loss_fn=lambda o, y: float(((o - y) ** 2).mean().detach())), TypeError,
     r"loss_fn must return a 0-d tensor .*don't call .item\(\)"),
    (dict(loss_fn=lambda o, y: ((o - y) ** 2).mean().detach()), ValueError,
     "the loss does not depend on any trainable parameter"),
])
def test_train_checks_every_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _train(**kwargs)


def test_numpy_counts_and_rates_are_accepted():
    history = _train(n_iters=np.int64(3), lr=np.float32(0.1), batch_size=np.int64(2), log_every=np.int32(1))
    assert len(history) == 3


def test_a_nan_loss_from_the_data_names_the_iteration_and_the_data():
    X = torch.ones(4, 1)
    X[2] = NAN
    with pytest.raises(ValueError, match=r"the loss became nan at iteration 0 \(of n_iters=3\); the inputs of that "
                                         r"batch hold NaN or inf values: clean the data"):
        _train(data=(X, torch.ones(4, 1)))
    with pytest.raises(ValueError, match="the targets of that batch hold NaN or inf"):
        _train(data=[(torch.ones(2, 1), torch.full((2, 1), INF))])


def test_a_diverging_loss_names_the_iteration_and_the_likely_causes():
    with pytest.raises(ValueError, match=r"the loss became (inf|nan) at iteration [1-9]\d* \(of n_iters=50\); likely "
                                         r"causes: a learning rate too high \(lower the learning rate, lr=1e\+30\), "
                                         r"an ODE solve that blew up"):
        _train(data=(torch.full((4, 1), 1e3), torch.ones(4, 1)), n_iters=50, lr=1e30, optimizer="sgd")


def test_accuracy_checks_its_inputs():
    with pytest.raises(TypeError, match="accuracy needs tensors X"):
        accuracy(nn.Identity(), [[1.0]], torch.zeros(1))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        accuracy(nn.Identity(), torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), batch_size=0.5)
    assert accuracy(nn.Identity(), torch.eye(2), torch.arange(2), batch_size=np.int64(1)) == 1.0


# --------------------------------------------------------------------------------------------------
# plotting helpers
# --------------------------------------------------------------------------------------------------


def _rotation(t, y):
    return torch.stack([-y[..., 1], y[..., 0]], dim=-1)


@pytest.fixture
def ax():
    fig, axes = plt.subplots()
    yield axes
    plt.close(fig)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(xlim=(-1, INF)), ValueError, r"xlim must be \(low, high\) with finite low < high"),
    (dict(ylim=(NAN, 1)), ValueError, r"ylim must be \(low, high\) with finite low < high"),
    (dict(xlim=(-1, 0, 1)), ValueError, r"xlim must be a pair \(low, high\) of numbers"),
    (dict(xlim="ab"), ValueError, r"xlim must be a pair \(low, high\) of numbers"),
    (dict(n=2.0), ValueError, "n must be an integer >= 2"),
    (dict(t=NAN), ValueError, "t must be a finite number"),
    (dict(t=[0.0, 1.0]), TypeError, "t must be one number"),
])
def test_vector_field_rejects_bad_limits_grids_and_times(ax, kwargs, exc, match):
    args = dict(field=_rotation, xlim=(-1, 1), ylim=(-1, 1))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        vector_field(ax, **args)


def test_vector_field_takes_numpy_sizes_and_array_limits(ax):
    vector_field(ax, _rotation, np.array([-1.0, 1.0]), torch.tensor([-1.0, 1.0]), n=np.int64(4), t=torch.tensor(0.0))
    assert ax.get_xlim() == (-1.0, 1.0)


def test_trajectories_need_at_least_one_state(ax):
    with pytest.raises(ValueError, match=r"trajectories got no states to draw \(shape \(0, 3, 2\)\)"):
        trajectories(ax, torch.zeros(0, 3, 2))


def test_convergence_plot_rejects_non_finite_step_sizes(ax):
    with pytest.raises(ValueError, match="at least two finite, positive step sizes"):
        convergence_plot(ax, [0.1, INF], [1.0, 2.0])


def test_pca_rejects_non_finite_states_and_takes_numpy_k():
    states = torch.randn(6, 3)
    assert pca_project(states, np.int64(2))[0].shape == (6, 2)
    states[1, 1] = NAN
    with pytest.raises(ValueError, match="the states hold NaN or inf values"):
        pca_project(states)
