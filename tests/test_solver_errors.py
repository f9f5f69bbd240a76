"""Every bad input gets a clear error that says what is wrong and how to fix it."""
from __future__ import annotations

import pytest
import torch

from nodecourse import SolverError, odeint, solve

Y0 = torch.ones(3, 2)
T = torch.tensor([0.0, 1.0])


def decay(t, y):
    return -y


@pytest.mark.parametrize("t,match", [
    (torch.zeros(2, 2, 2), "1-D"),
    (torch.tensor([[0.0, 1.0], [0.0, 2.0]]), "per_sample"),
    (torch.tensor([0.0, 1.0, 0.5]), "strictly increasing or strictly decreasing"),
    (torch.tensor([0.0, 1.0, 1.0]), "strictly increasing or strictly decreasing"),
    (torch.tensor([]), "empty"),
    (torch.tensor([0.0, float("nan")]), "NaN"),
])
def test_bad_times(t, match):
    with pytest.raises(ValueError, match=match):
        odeint(decay, Y0, t)


def test_integer_state_is_rejected_with_a_fix():
    with pytest.raises(TypeError, match=r"floating point.*\.float\(\)"):
        odeint(decay, torch.ones(3, dtype=torch.long), T)


def test_non_tensor_state():
    with pytest.raises(TypeError, match="torch.Tensor"):
        odeint(decay, [1.0, 2.0], T)


def test_non_finite_initial_state():
    with pytest.raises(ValueError, match="y0 contains NaN"):
        odeint(decay, torch.tensor([1.0, float("inf")]), T)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown method 'rk45'.*euler.*rk4.*dopri5"):
        odeint(decay, Y0, T, method="rk45")


def test_bad_fixed_step_grids():
    with pytest.raises(ValueError, match="positive"):
        odeint(decay, Y0, T, method="euler", options={"step_size": -0.1})
    with pytest.raises(ValueError, match="only one of them"):
        odeint(decay, Y0, T, method="euler", options={"step_size": 0.1, "grid_constructor": lambda f, y, t: t})
    with pytest.raises(ValueError, match="start at t\\[0\\] and end at t\\[-1\\]"):
        odeint(decay, Y0, T, method="euler", options={"grid_constructor": lambda f, y, t: torch.tensor([0.0, 0.5])})
    with pytest.raises(ValueError, match="strictly monotone"):
        odeint(decay, Y0, T, method="rk4",
               options={"grid_constructor": lambda f, y, t: torch.tensor([0.0, 0.6, 0.3, 1.0])})
    with pytest.raises(TypeError, match="perturb"):
        odeint(decay, Y0, T, method="rk4", options={"perturb": "yes"})


def test_a_tiny_step_size_is_refused_at_once_not_after_building_the_grid():
    with pytest.raises(SolverError, match=r"step_size=1e-09 .* needs 1,000,000,000 steps.*max_num_steps"):
        odeint(decay, Y0, T, method="euler", options={"step_size": 1e-9})


def test_unknown_option():
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['stepsize'\]"):
        odeint(decay, Y0, T, method="euler", options={"stepsize": 0.1})


def test_bad_tolerance():
    with pytest.raises(ValueError, match="rtol"):
        odeint(decay, Y0, T, rtol=-1.0)


def test_vector_field_with_wrong_shape():
    with pytest.raises(ValueError, match=r"returned shape \(3,\) but the state has shape \(3, 2\)"):
        odeint(lambda t, y: y.sum(-1), Y0, T)


def test_vector_field_with_wrong_dtype():
    with pytest.raises(TypeError, match=r"returned dtype torch.float64 but the state has dtype torch.float32"):
        odeint(lambda t, y: -y.double(), Y0, T)


def test_vector_field_returning_wrong_structure():
    with pytest.raises(TypeError, match="tuple of 2 tensors"):
        odeint(lambda t, s: s[0], (Y0, Y0), T)


def test_per_sample_needs_a_common_batch_dimension():
    with pytest.raises(ValueError, match="dim 0"):
        solve(lambda t, s: s, (torch.ones(3, 2), torch.ones(4)), T, options={"per_sample": True})


def test_blow_up_reports_time_and_samples():
    # y' = y^2 with y(0) = 1 / c has the singularity at t = c; sample 1 blows up first.
    y0 = torch.tensor([[0.5], [2.0], [0.2]], dtype=torch.float64)
    with pytest.raises(SolverError, match=r"underflow at t=0\.5 for samples \[1\].*blows up") as info:
        odeint(lambda t, y: y ** 2, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), options={"per_sample": True})
    assert isinstance(info.value, ValueError)


def test_per_sample_underflow_message_knows_which_samples_saw_non_finite_trials():
    """The underflow message blames NaN/inf values for a sample whose trial gave them since its last
    accepted step; read back from the iterations' (active, ratio, accept), newest last."""
    from nodecourse.solvers.per_sample import nonfinite_since_accepted

    nan = float("nan")
    active = torch.ones(4, dtype=torch.bool)
    history = [  # samples: 0 NaN then accepted; 1 accepted then NaN; 2 NaN, then finite rejections; 3 never NaN
        (active, torch.tensor([nan, 0.5, nan, 2.0]), torch.tensor([False, True, False, False])),
        (active, torch.tensor([0.5, nan, 3.0, 2.0]), torch.tensor([True, False, False, False])),
        (active, torch.tensor([2.0, 4.0, 5.0, 0.5]), torch.tensor([False, False, False, True])),
    ]
    assert nonfinite_since_accepted(history).tolist() == [False, True, True, False]


def test_fixed_step_blow_up_reports_time_and_samples():
    y0 = torch.tensor([[0.1], [-60.0]])
    with pytest.raises(SolverError, match=r"NaN/inf by t=.*samples \[1\].*smaller step_size"):
        odeint(lambda t, y: -y ** 3, y0, torch.linspace(0, 1, 5), method="euler", options={"step_size": 0.1})


def test_stiffness_underflow_and_max_num_steps():
    with pytest.raises(SolverError, match="max_num_steps=20"):
        odeint(lambda t, y: -1000 * (y - torch.cos(t)), torch.ones(1), torch.tensor([0.0, 5.0]),
               options={"max_num_steps": 20})


def test_non_finite_vector_field_values():
    def broken(t, y):
        return torch.where(t > 0.5, torch.full_like(y, float("nan")), -y)

    with pytest.raises(SolverError, match=r"t=0\.5.*NaN/inf"):
        odeint(broken, Y0, T)


class ShapeChanger(torch.nn.Module):
    """A field whose output is right at first and then changes shape (transposed, same size)."""

    def __init__(self, after: int):
        super().__init__()
        self.calls, self.after = 0, after

    def forward(self, t, y):
        self.calls += 1
        return -y if self.calls <= self.after else (-y).T.reshape(y.shape[::-1])


@pytest.mark.parametrize("method, options", [("dopri5", None), ("rk4", {"step_size": 0.1}),
                                             ("dopri5", {"per_sample": True}), ("euler", None)])
def test_a_later_output_of_the_wrong_shape_is_an_error_not_a_broadcast(method, options):
    with pytest.raises(ValueError, match=r"returned shape \(2, 3\) but the state has shape \(3, 2\)"):
        odeint(ShapeChanger(after=3), Y0, torch.linspace(0.0, 1.0, 5), method=method, options=options)


def test_an_empty_batch_gives_empty_outputs_for_every_method():
    for method, options in (("dopri5", None), ("rk4", {"step_size": 0.1}), ("dopri5", {"per_sample": True})):
        out = solve(decay, torch.zeros(0, 2), torch.linspace(0.0, 1.0, 4), method=method, options=options)
        assert out.ys.shape == (4, 0, 2) and int(torch.as_tensor(out.stats.nfe).sum()) == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_states_are_refused_with_the_fix(dtype):
    with pytest.raises(TypeError, match=r"3-4 significant digits.*float\(\)"):
        odeint(decay, Y0.to(dtype), T)


def test_nan_in_the_fields_parameters_is_named_as_nan_not_stiffness():
    field = torch.nn.Linear(2, 2)
    with torch.no_grad():
        field.weight[0, 0] = float("nan")
    with pytest.raises(SolverError, match=r"returned NaN/inf at the initial time t=0 for samples \[0, 1, 2\].*parameters"):
        odeint(lambda t, y: field(y), Y0, T)


def test_a_stiff_problem_stops_within_seconds_and_says_stiffness():
    with pytest.raises(SolverError, match=r"max_num_steps=50,000 .*got to t=.*stiffness.*notebook 11"):
        odeint(lambda t, y: -1e6 * (y - torch.cos(t)), torch.zeros(1, dtype=torch.float64),
               torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=1e-8, atol=1e-8)


def test_an_infinite_first_step_is_refused():
    with pytest.raises(ValueError, match="first_step must be a positive finite number"):
        odeint(decay, Y0, T, options={"first_step": float("inf")})


def test_a_field_that_fails_on_the_states_device_gets_the_fix():
    """Simulated (no second device here): a field whose parameters live elsewhere raises torch's device error."""
    def field(t, y):
        raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                           "cuda:0 and cpu!")

    with pytest.raises(ValueError, match=r"on the state's device \(cpu\).*func\.to\(y0\.device\)"):
        odeint(field, Y0, T)


def test_a_non_finite_trial_state_gives_a_nan_error_ratio():
    """The error ratio is NaN for a sample whose trial state is inf or NaN, even when its error
    estimate is finite, so such a step is never accepted (control.error_ratio)."""
    from nodecourse.solvers.control import error_ratio
    from nodecourse.solvers.norms import rms_norm

    y0 = torch.ones(3, 2)
    y1 = torch.tensor([[1.0, 1.0], [float("inf"), 1.0], [1.0, float("nan")]])
    error = torch.full((3, 2), 1e-9)
    ratio = error_ratio(rms_norm, error, y0, y1, 1e-6, 1e-6, 3)
    assert ratio[0] < 1 and torch.isnan(ratio[1:]).all()
