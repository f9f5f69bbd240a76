"""Issue 12, item 8: one vocabulary and one set of solver defaults for every model; the old keyword
and attribute names still work for one release, with a DeprecationWarning that names the new one."""
from __future__ import annotations

import inspect
import warnings

import pytest
import torch

from nodecourse.models import (
    CNF, DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL, AdaptiveDepthODE, AugmentedNODE, CNFField, DataControlledField,
    DataControlledODE, GRUEncoder, InputLayerAugmentedNODE, LatentODE, ODEBlock, PlainNODE, RegularisedClassifier,
    RNNBaseline, SecondOrderField, SecondOrderNODE, StackedODE,
)

OLD_NAMES = {"dim", "hidden", "out_dim", "aug_dim", "state_dim", "control_dim", "condition_dim", "obs_dim",
             "latent_dim", "encoder_hidden", "ode_hidden", "decoder_hidden", "in_features", "n_classes", "width"}

MODELS = [AugmentedNODE, PlainNODE, InputLayerAugmentedNODE, SecondOrderNODE, SecondOrderField, DataControlledField,
          CNFField, CNF, GRUEncoder, LatentODE, RNNBaseline, RegularisedClassifier]

OLD_CALLS = [
    (lambda: AugmentedNODE(dim=2, aug_dim=1, hidden=4, out_dim=3), "out_dim", dict(input_size=2, aug_size=1,
                                                                                    output_size=3)),
    (lambda: PlainNODE(dim=2, hidden=4), "dim", dict(input_size=2)),
    (lambda: InputLayerAugmentedNODE(2, aug_dim=2), "aug_dim", dict(aug_size=2)),
    (lambda: SecondOrderNODE(dim=1, hidden=4, out_dim=2), "dim", dict(input_size=1, output_size=2)),
    (lambda: SecondOrderField(torch.nn.Linear(2, 1), dim=1), "dim", dict(input_size=1)),
    (lambda: DataControlledField(state_dim=2, control_dim=3, hidden=4), "control_dim", dict(state_size=2,
                                                                                            input_size=3)),
    (lambda: CNFField(dim=2, hidden=8, condition_dim=1), "condition_dim", dict(input_size=2, hidden_size=8,
                                                                                condition_size=1)),
    (lambda: CNF(dim=2, hidden=8), "hidden", dict(input_size=2, hidden_size=8)),
    (lambda: GRUEncoder(obs_dim=2, hidden=5, out_dim=3), "obs_dim", dict(input_size=2, hidden_size=5, output_size=3)),
    (lambda: LatentODE(obs_dim=3, latent_dim=5, encoder_hidden=6, ode_hidden=7), "latent_dim",
     dict(input_size=3, state_size=5, hidden_size=7)),
    (lambda: RNNBaseline(obs_dim=3, state_dim=5, encoder_hidden=6), "state_dim", dict(input_size=3, state_size=5)),
    (lambda: RegularisedClassifier(in_features=3, n_classes=4, hidden=5, width=6), "n_classes",
     dict(input_size=3, output_size=4, state_size=5, hidden_size=6)),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_constructors_speak_only_the_new_vocabulary(model):
    params = set(inspect.signature(model).parameters)
    assert not params & OLD_NAMES, f"{model.__name__} still takes {sorted(params & OLD_NAMES)}"


@pytest.mark.parametrize("build, old, new", OLD_CALLS, ids=[c[1] for c in OLD_CALLS])
def test_old_keywords_still_work_with_a_deprecation_warning(build, old, new):
    with pytest.warns(DeprecationWarning) as record:
        model = build()
    messages = [str(w.message) for w in record]
    assert any(f"'{old}' is now called" in m and "next release" in m for m in messages), messages
    for name, value in new.items():
        assert getattr(model, name) == value


def test_old_attribute_names_read_the_new_ones_with_a_warning():
    model = AugmentedNODE(2, 1, 4, output_size=3)
    with pytest.warns(DeprecationWarning, match="'out_dim' is now called 'output_size'"):
        assert model.out_dim == 3
    with pytest.warns(DeprecationWarning, match="'state_dim' is now called 'state_size'"):
        assert model.state_dim == 3


def test_the_new_names_warn_nothing_and_old_and_new_together_are_an_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AugmentedNODE(input_size=2, aug_size=1, hidden_size=4, output_size=3)
        LatentODE(input_size=2, state_size=3, encoder_hidden_size=4, hidden_size=5, decoder_hidden_size=6)
    with pytest.raises(TypeError, match="got both 'hidden' and its new name 'hidden_size'"):
        CNF(2, hidden=4, hidden_size=4)


def _solver(model):
    if isinstance(model, (DataControlledODE, AdaptiveDepthODE)):
        kwargs = model._kwargs
    elif isinstance(model, CNF):
        kwargs = model.solver
    elif hasattr(model, "block"):
        kwargs = vars(model.block)
    else:
        kwargs = vars(model)
    return kwargs["method"], kwargs["rtol"], kwargs["atol"]


def test_every_model_has_the_same_default_solver():
    field = DataControlledField(2, 2)
    ode = ODEBlock(torch.nn.Linear(2, 2))
    models = [ode, AugmentedNODE(2), SecondOrderNODE(2), CNF(2), LatentODE(), RegularisedClassifier(),
              DataControlledODE(field), AdaptiveDepthODE(ode, torch.nn.Linear(2, 1)), StackedODE([ode])]
    assert (DEFAULT_METHOD, DEFAULT_RTOL, DEFAULT_ATOL) == ("dopri5", 1e-3, 1e-3)
    for model in models:
        assert _solver(model) == (DEFAULT_METHOD, DEFAULT_RTOL, DEFAULT_ATOL), type(model).__name__


def test_augment_takes_aug_size_and_still_the_old_aug_dim_with_a_warning():
    from nodecourse.models.augmented import augment

    assert "aug_size" in inspect.signature(augment).parameters
    assert not set(inspect.signature(augment).parameters) & OLD_NAMES
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    expected = torch.tensor([[1.0, 2.0, 0.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(augment(x, aug_size=3), expected) and torch.equal(augment(x, 3), expected)
    with pytest.warns(DeprecationWarning, match="'aug_dim' is now called 'aug_size'.*next release") as record:
        assert torch.equal(augment(x, aug_dim=3), expected)
    assert record[0].filename == __file__  # the warning points at the caller, not at the package
    with pytest.raises(TypeError, match="got both 'aug_dim' and its new name 'aug_size'"):
        augment(x, 3, aug_dim=3)
    with pytest.raises(TypeError, match="got both 'aug_dim' and its new name 'aug_size'"):
        augment(x, aug_size=3, aug_dim=3)
