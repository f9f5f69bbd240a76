"""Models of the course.

Core (notebooks 01-06): MLP, the ODE vector field and block, ResNet and the NeuralODE builder.
Advanced (notebooks 07-11), one module per family: ``augmented`` (zero, input-layer and second-order
augmentation), ``depth_variant`` (time concatenation, Galerkin and stacked Neural ODEs),
``controlled`` (data-controlled and adaptive-depth), ``latent`` (latent ODEs for irregular time
series), ``flows`` (continuous normalizing flows) and ``regularised`` (kinetic and Jacobian
regularisation).

One vocabulary, the one of ``NeuralODE`` and of torch's own ``nn.GRU``/``nn.LSTM``, in every constructor:

- ``input_size``: features in (the width of ``x`` in ``model(x)``; the observed channels of a series);
- ``hidden_size``: the width of the MLP inside the vector field (an int, or one width per hidden layer
  where the model takes a list); a GRU's units in ``GRUEncoder``;
- ``state_size``: the width of the ODE state where it differs from ``input_size`` and is chosen by the
  caller (``RegularisedClassifier``, ``LatentODE``, ``RNNBaseline``, ``DataControlledField``); where it
  follows from the model (``AugmentedNODE``: ``input_size + aug_size``, ``SecondOrderNODE``:
  ``2 * input_size``) it is an attribute, ``model.state_size``;
- ``output_size``: features out or classes (``None``, where allowed, keeps the input's width);
- prefixed or suffixed forms of the same words where a model has more than one of a kind:
  ``aug_size`` (zeros appended), ``condition_size`` (a CNF's condition), ``encoder_hidden_size`` and
  ``decoder_hidden_size``.

Layers keep torch's names (``MLP(sizes)``, ``GalerkinLinear(in_features, out_features)`` as
``nn.Linear``). Class names: ``...Field`` is a vector field ``f(t, z)`` given to a solver; every other
class is a model called as ``model(x)``. The old keyword names (``dim``, ``hidden``, ``out_dim``,
``in_features``, ``n_classes``, ``width``, ``obs_dim``, ``latent_dim``, ...) still work for one release
with a ``DeprecationWarning`` that names the new one.

One default solver for every model that solves an ODE: ``method="dopri5"``, ``rtol=1e-3``,
``atol=1e-3`` (``DEFAULT_METHOD``, ``DEFAULT_RTOL``, ``DEFAULT_ATOL``). Dopri5 because it needs no step
size and adapts its steps to the dynamics, so a model works before a learner knows the solver; 1e-3
because training needs only a few correct digits of the forward pass and NFE grows quickly with
tighter tolerances (notebook 06 measures it); it is what ``ODEBlock``, and hence most models, always
used. A notebook that needs another solver (fixed steps for a fair count, tight tolerances for a
check against an exact solution) says so in the call. The one exception is the ``NeuralODE`` builder
of notebook 02, whose signature stays: it mirrors a ResNet of ``num_steps`` layers, so it takes
``num_steps`` Euler steps of ``step_size`` by default (its tolerances are the defaults above).

One gradient setting, ``adjoint``, in every model that takes one: ``False`` backpropagates through the
solver, ``True`` solves the adjoint ODE backwards, ``"checkpoint"`` replays the forward steps (adaptive
methods); :mod:`nodecourse.models.gradients` says what each costs.

Every model checks its input the same way (``nodecourse._validation.check_batch``): a tensor of shape
``[batch, input_size]`` on the model's device and dtype, else an error that says what was expected.
"""
from __future__ import annotations

from .augmented import AugmentedNODE, InputLayerAugmentedNODE, PlainNODE, SecondOrderField, SecondOrderNODE
from .controlled import AdaptiveDepthODE, DataControlledField, DataControlledODE, RescaledField
from .depth_variant import ConcatMLP, GalerkinLinear, GalerkinMLP, StackedODE
from .flows import CNF, CNFField
from .latent import GRUEncoder, LatentODE, RNNBaseline
from .mlp import MLP
from .neural_ode import NeuralODE
from .ode_block import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL, ODEBlock
from .odefunc import ODEFunc
from .regularised import RegularisedClassifier, RegularisedODEFunc
from .resnet import ResNet

__all__ = [
    "MLP", "ODEFunc", "ODEBlock", "ResNet", "NeuralODE", "DEFAULT_METHOD", "DEFAULT_RTOL", "DEFAULT_ATOL",
    "PlainNODE", "AugmentedNODE", "InputLayerAugmentedNODE", "SecondOrderNODE", "SecondOrderField",
    "ConcatMLP", "GalerkinLinear", "GalerkinMLP", "StackedODE",
    "DataControlledField", "DataControlledODE", "RescaledField", "AdaptiveDepthODE",
    "GRUEncoder", "LatentODE", "RNNBaseline",
    "CNF", "CNFField",
    "RegularisedODEFunc", "RegularisedClassifier",
]
