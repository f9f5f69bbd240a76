"""The checkers of 07_augmentation: references agree with independent computations; every requirement of
an exercise's statement has a labelled case, and the plausible wrong answers fail on the case that names
their mistake; answers written differently from the reference pass; hints come in stages that never show
the answer's code; bad input gets a clear error."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nodecourse import odeint
from nodecourse.exercises import ex07
from nodecourse.exercises import checking

from helpers import failing_answer, hint_stages, answer_lines


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_checker_contract.py."""
    checking.reset_hints(already_failed=10)
    yield
    checking.reset_hints(already_failed=0)


# --------------------------------------------------------------------------------------------------
# the references against independent computations
# --------------------------------------------------------------------------------------------------


def test_augment_pads_like_numpy_and_keeps_dtype_and_gradients():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    z = ex07.augment(x, 2)
    np.testing.assert_array_equal(z.detach().numpy(), np.pad(x.detach().numpy(), ((0, 0), (0, 2))))
    assert z.dtype == torch.float64 and z.requires_grad
    z.sum().backward()
    assert torch.equal(x.grad, torch.ones(4, 3, dtype=torch.float64))
    assert ex07.augment(torch.ones(2, 5, 1), 3).shape == (2, 5, 4)


def test_second_order_field_of_a_spring_solves_to_a_cosine():
    # x'' = -w^2 x from rest: x(t) = x0 cos(w t), an independent closed form
    w = 3.0
    x0 = torch.tensor([[0.5, -1.0]], dtype=torch.float64)               # two springs at once, d = 2
    z0 = torch.cat([x0, torch.zeros_like(x0)], dim=1)
    t = torch.linspace(0, 2, 9, dtype=torch.float64)
    path = odeint(lambda t, z: ex07.second_order_field(lambda x, v: -w**2 * x, z), z0, t, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(path[:, 0, :2], torch.cos(w * t)[:, None] * x0[0], rtol=0, atol=1e-7)
    torch.testing.assert_close(path[:, 0, 2:], -w * torch.sin(w * t)[:, None] * x0[0], rtol=0, atol=1e-7)


def test_second_order_field_rejects_an_odd_state():
    with pytest.raises(ValueError, match="even last dimension"):
        ex07.second_order_field(lambda x, v: x, torch.zeros(2, 3))


def test_order_preserved_agrees_with_a_pairwise_definition():
    gen = torch.Generator().manual_seed(0)
    for trial in range(30):
        x = torch.randn(12, generator=gen, dtype=torch.float64)
        y = torch.sort(torch.randn(12, generator=gen, dtype=torch.float64)).values[torch.argsort(torch.argsort(x))]
        if trial % 2:          # break the order somewhere in half of the trials
            i, j = torch.randint(0, 12, (2,), generator=gen).tolist()
            y[i], y[j] = y[j].clone(), y[i].clone()
        pairwise = all(bool(y[i] < y[j]) for i in range(12) for j in range(12) if x[i] < x[j])
        assert ex07.order_preserved(x, y) == pairwise
        assert ex07.order_preserved(x[:, None], y[:, None]) == pairwise


def test_order_preserved_rejects_mismatched_samples():
    with pytest.raises(ValueError, match="same number of samples, got 3 and 4"):
        ex07.order_preserved(torch.zeros(3), torch.zeros(4))


@pytest.mark.parametrize("T, d", [(1.0, 1), (0.7, 2), (4.0, 3)])
def test_reflection_matrix_flow_reflects_an_odeint_solve(T, d):
    A = ex07.reflection_matrix(T, d)
    x = torch.randn(6, d, dtype=torch.float64)
    z0 = torch.cat([x, torch.zeros_like(x)], dim=1)
    zT = odeint(lambda t, z: z @ A.T, z0, torch.tensor([0.0, T], dtype=torch.float64), rtol=1e-10, atol=1e-10)[-1]
    torch.testing.assert_close(zT, torch.cat([-x, torch.zeros_like(x)], dim=1), rtol=0, atol=1e-7)


@pytest.mark.parametrize("args, exc, match", [
    ((torch.ones(2, 1), -1), ValueError, "p must be an integer >= 0"),
    (([1.0], 1), TypeError, "x must be a tensor"),
])
def test_augment_reference_rejects_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        ex07.augment(*args)


@pytest.mark.parametrize("args, match", [((0.0, 1), "T must be a finite positive time"),
                                         ((float("inf"), 1), "T must be a finite positive time"),
                                         ((1.0, 0), "d must be a positive integer")])
def test_reflection_matrix_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        ex07.reflection_matrix(*args)


# --------------------------------------------------------------------------------------------------
# staged hints that never give the answer away
# --------------------------------------------------------------------------------------------------

CHECKERS = [
    (ex07.check_augment, ex07.augment),
    (ex07.check_second_order_field, ex07.second_order_field),
    (ex07.check_order_preserved, ex07.order_preserved),
    (ex07.check_reflection_matrix, ex07.reflection_matrix),
    (ex07.check_drop_augmentation, ex07.drop_augmentation),
]


@pytest.mark.parametrize("checker", [c for c, _ in CHECKERS], ids=[c.__name__ for c, _ in CHECKERS])
def test_hints_come_in_two_or_three_stages_without_the_answers_code(checker, capsys):
    seen, _ = hint_stages(checker, capsys)
    stages = [text for _, _, text in seen[:seen[0][1]]]
    assert 2 <= len(stages) <= 3 and len(set(stages)) == len(stages)
    answer = answer_lines("07_augmentation_exercises.py", [reference for _, reference in CHECKERS])
    for stage in stages:
        leaked = [ln for ln in answer if ln in stage]
        assert not leaked, f"hint stage shows the answer's code: {leaked}"
        for code in ("new_zeros", "torch.cat(", "z[..., :d]", "argsort(x", "math.pi / T", "[[0, -I], [I, 0]]"):
            assert code not in stage


def test_checkers_are_quiet_when_asked(capsys):
    for checker, reference in CHECKERS:
        checker(reference, verbose=False)
    assert capsys.readouterr().out == ""


def test_the_answer_comes_only_on_request(capsys):
    checking.reset_hints(already_failed=0)
    ex07.check_augment(lambda x, p: torch.cat([x, torch.zeros(*x.shape[:-1], p)], dim=-1))
    out = capsys.readouterr().out
    assert "[stage 1 of 2]" in out and "new_zeros" not in out and "show_answer('07.1')" in out
    ex07.show_answer(1)
    assert "x.new_zeros" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 1: zero augmentation
# --------------------------------------------------------------------------------------------------


def test_zeros_of_the_default_dtype_fail_on_half_precision(capsys):
    def float32_zeros(x, p):
        return torch.cat([x, torch.zeros(*x.shape[:-1], p, device=x.device)], dim=-1)

    assert ex07.check_augment(float32_zeros) is ex07.augment
    out = capsys.readouterr().out
    assert "wrong the zeros take x's dtype (half precision [3, 2], p = 2): expected dtype torch.float16" in out
    assert "ok    the zeros are made on x's device" in out


def test_zeros_made_on_the_cpu_fail_on_the_device_case(capsys):
    def cpu_zeros(x, p):
        return torch.cat([x, torch.zeros(*x.shape[:-1], p, dtype=x.dtype)], dim=-1)

    assert ex07.check_augment(cpu_zeros) is ex07.augment
    out = capsys.readouterr().out
    assert "wrong the zeros are made on x's device (x on the 'meta' device, which holds shapes but no values): " \
           "raised RuntimeError" in out and "FAILED 7/8" in out


def test_zeros_in_front_fail_with_a_message(capsys):
    ex07.check_augment(lambda x, p: torch.cat([x.new_zeros((*x.shape[:-1], p)), x], dim=-1))
    out = capsys.readouterr().out
    assert "wrong x unchanged in the first d entries, the zeros after it (1-D points [4, 1], p = 3, float64): " \
           "values differ" in out and "the zeros go after x, not before it" in out


def test_a_two_dimensional_only_answer_fails_on_other_shapes(capsys):
    ex07.check_augment(lambda x, p: torch.cat([x, x.new_zeros(x.shape[0], p)], dim=1))
    out = capsys.readouterr().out
    assert "ok    p zeros appended to the last dimension: a batch [5, 2], p = 1" in out
    assert "wrong any leading shape: [2, 3, 4], p = 2" in out
    assert "wrong any leading shape: one point [3] without a batch dimension, p = 2" in out


def test_a_detached_answer_fails_the_gradient_case(capsys):
    ex07.check_augment(lambda x, p: ex07.augment(x, p).detach())
    out = capsys.readouterr().out
    assert "wrong gradients flow back to x: the result is cut off from x's gradient" in out and "FAILED 7/8" in out


def test_padding_the_wrong_dimension_fails(capsys):
    ex07.check_augment(lambda x, p: torch.cat([x, x.new_zeros((p, *x.shape[1:]))], dim=0))
    assert "expected shape (5, 3), got (6, 2)" in capsys.readouterr().out


@pytest.mark.parametrize("other", [
    lambda x, p: torch.nn.functional.pad(x, (0, p)),
    lambda x, p: torch.cat([x, torch.zeros(x.shape[:-1] + (p,), dtype=x.dtype, device=x.device)], -1),
], ids=["pad", "zeros_like_x"])
def test_augment_written_another_way_passes(other, capsys):
    assert ex07.check_augment(other) is other
    assert "passed 8/8" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 2: the second-order field
# --------------------------------------------------------------------------------------------------


def test_swapped_halves_fail_with_a_message(capsys):
    def swapped(accel, z):
        d = z.shape[-1] // 2
        return torch.cat([accel(z[..., :d], z[..., d:]), z[..., d:]], dim=-1)

    assert ex07.check_second_order_field(swapped) is ex07.second_order_field
    out = capsys.readouterr().out
    assert "wrong the first half of dz/dt is the velocity v (a spring x'' = -4x, one point [1, 2])" in out
    assert "the halves are swapped" in out


def test_position_and_velocity_swapped_in_the_call_fail(capsys):
    def wrong_call(accel, z):
        d = z.shape[-1] // 2
        return torch.cat([z[..., d:], accel(z[..., d:], z[..., :d])], dim=-1)

    ex07.check_second_order_field(wrong_call)
    out = capsys.readouterr().out
    assert "wrong the second half is accel(x, v), position first (a damped pendulum, a batch [6, 2])" in out
    assert "accel takes the position first, then the velocity" in out


def test_a_one_dimensional_only_answer_fails_in_2d(capsys):
    def only_1d(accel, z):
        return torch.stack([z[..., 1], accel(z[..., 0], z[..., 1])], dim=-1)

    ex07.check_second_order_field(only_1d)
    out = capsys.readouterr().out
    assert "ok    the first half of dz/dt" in out and "wrong halves of size d for d > 1" in out


def test_a_batch_only_answer_fails_on_one_state(capsys):
    def batch_only(accel, z):
        d = z.shape[1] // 2
        return torch.cat([z[:, d:], accel(z[:, :d], z[:, d:])], dim=1)

    ex07.check_second_order_field(batch_only)
    out = capsys.readouterr().out
    assert "wrong one state [2d] without a batch dimension: raised IndexError" in out
    assert "wrong any leading shape [2, 3, 6]" in out and "ok    halves of size d for d > 1" in out


def test_a_second_order_field_written_with_chunk_passes(capsys):
    def other(accel, z):
        x, v = z.chunk(2, dim=-1)
        return torch.concat((v, accel(x, v)), -1)

    assert ex07.check_second_order_field(other) is other
    assert "passed 6/6" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 3: order preservation
# --------------------------------------------------------------------------------------------------


def test_not_sorting_the_inputs_fails(capsys):
    def unsorted(x, y):
        y = y.reshape(-1)
        return bool((y[1:] > y[:-1]).all())

    assert ex07.check_order_preserved(unsorted) is ex07.order_preserved
    out = capsys.readouterr().out
    assert "ok    False for the reflection x -> -x" in out
    assert "wrong inputs in any order: x -> tanh(3x), shuffled: expected True, got False" in out


def test_non_strict_order_fails_on_the_constant_map(capsys):
    def non_strict(x, y):
        ys = y.reshape(-1)[torch.argsort(x.reshape(-1))]
        return bool((ys[1:] >= ys[:-1]).all())

    ex07.check_order_preserved(non_strict)
    out = capsys.readouterr().out
    assert "wrong strictly: a constant map does not keep the order: expected False, got True" in out


def test_comparing_the_endpoints_only_fails(capsys):
    def endpoints(x, y):
        x, y = x.reshape(-1), y.reshape(-1)
        return bool(y[x.argmax()] > y[x.argmin()])

    ex07.check_order_preserved(endpoints)
    out = capsys.readouterr().out
    assert "ok    False for the reflection" in out
    assert "wrong every pair counts: increasing except one swapped pair of neighbours" in out


def test_sorting_without_flattening_fails_on_columns(capsys):
    def no_flatten(x, y):
        ys = y.reshape(-1)[torch.argsort(x)].reshape(-1)  # argsort of a column [N, 1] sorts each row alone
        return bool((ys[1:] > ys[:-1]).all())

    ex07.check_order_preserved(no_flatten)
    out = capsys.readouterr().out
    assert "wrong x a column [N, 1], y a vector [N]: exp(x), shuffled" in out


def test_a_tensor_instead_of_a_bool_fails_on_the_type_case_only(capsys):
    def as_tensor(x, y):
        ys = y.reshape(-1)[torch.argsort(x.reshape(-1))]
        return (ys[1:] > ys[:-1]).all()

    assert ex07.check_order_preserved(as_tensor) is ex07.order_preserved
    out = capsys.readouterr().out
    assert "wrong returns a Python bool: got Tensor tensor(True); return a Python bool" in out and "FAILED 8/9" in out
    ex07.check_order_preserved(lambda x, y: 1.0)
    assert "expected True or False, got float 1.0" in capsys.readouterr().out


def test_a_pairwise_order_test_passes(capsys):
    def pairwise(x, y):
        x, y = x.flatten(), y.flatten()
        before = x[:, None] < x[None, :]
        return bool((~before | (y[:, None] < y[None, :])).all().item())

    assert ex07.check_order_preserved(pairwise) is pairwise
    assert "passed 9/9" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 4: a reflection by a linear flow
# --------------------------------------------------------------------------------------------------


def test_the_oscillator_answer_passes_too(capsys):
    def oscillator(T, d=1):
        w = math.pi / T
        eye, zero = torch.eye(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64)
        return torch.cat([torch.cat([zero, eye], 1), torch.cat([-w**2 * eye, zero], 1)], 0)

    assert ex07.check_reflection_matrix(oscillator) is oscillator
    assert "passed 5/5" in capsys.readouterr().out


def test_a_rotation_ignoring_the_time_fails(capsys):
    ex07.check_reflection_matrix(lambda T, d=1: ex07.reflection_matrix(1.0, d))
    out = capsys.readouterr().out
    assert "ok    exp(T A) sends [x, 0] to [-x, *] for every x: T = 1, d = 1" in out
    assert "wrong at time T, not at time 1: T = 2, d = 1: exp(T A) maps [x, 0] to [M x, ...] with M off -I by" in out


def test_a_float32_matrix_fails_on_the_dtype_case_only(capsys):
    ex07.check_reflection_matrix(lambda T, d=1: ex07.reflection_matrix(T, d).float())
    out = capsys.readouterr().out
    assert "wrong a float64 matrix (T = 1.5, d = 1): expected a float64 matrix, got torch.float32" in out
    assert "FAILED 4/5" in out


def test_a_contraction_fails_and_a_small_matrix_is_reported(capsys):
    ex07.check_reflection_matrix(lambda T, d=1: -torch.eye(2 * d, dtype=torch.float64))
    assert "FAILED 0/5" in capsys.readouterr().out
    ex07.check_reflection_matrix(lambda T, d=1: -torch.eye(d, dtype=torch.float64))
    assert "expected shape (2, 2) (the state [x, a] has d = 1 inputs" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 5 (find the bug) and exercise 6 (predict)
# --------------------------------------------------------------------------------------------------


def test_the_shipped_drop_augmentation_bug_fails_on_trajectories(capsys):
    assert ex07.check_drop_augmentation(ex07.buggy_drop_augmentation) is ex07.drop_augmentation
    out = capsys.readouterr().out
    assert "ok    a batch of states [B, d + p] -> [B, d] (the author's test)" in out
    assert "wrong a trajectory [T, B, d + p] -> [T, B, d] (the solver's output): expected shape (5, 6, 1), got " \
           "(5, 1, 3)" in out
    assert "wrong one state [d + p] -> [d]: raised IndexError" in out


def test_drop_augmentation_keeping_the_wrong_end_fails(capsys):
    assert ex07.check_drop_augmentation(lambda z, d: z[..., -d:]) is ex07.drop_augmentation
    out = capsys.readouterr().out
    assert "wrong the FIRST d entries, the state, not the augmented ones (d = 2, p = 2): values differ" in out
    assert "these are the LAST d entries, the augmented ones" in out


@pytest.mark.parametrize("other", [
    lambda z, d: z.narrow(-1, 0, d),
    lambda z, d: z.split([d, z.shape[-1] - d], dim=-1)[0],
    lambda z, d: z.transpose(0, -1)[:d].transpose(0, -1),
], ids=["narrow", "split", "transpose"])
def test_drop_augmentation_repaired_another_way_passes(other, capsys):
    assert ex07.check_drop_augmentation(other) is other
    assert "passed 5/5" in capsys.readouterr().out


def test_reflection_time_prediction(capsys):
    assert ex07.check_reflection_time_prediction(None, verbose=False) == pytest.approx(1.0, abs=0.005)
    for wrong in (0.5, 2):  # a quarter turn; a full turn, which brings (x, 0) back to itself
        ex07.check_reflection_time_prediction(wrong)
        out = capsys.readouterr().out
        assert "FAILED" in out and "half a turn" in out
    ex07.check_reflection_time_prediction(1)
    assert "passed" in capsys.readouterr().out
