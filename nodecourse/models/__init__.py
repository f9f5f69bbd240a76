"""Models of the course.

Core (notebooks 01-06): MLP, the ODE vector field and block, ResNet and the NeuralODE builder.
Advanced (notebooks 07-11), one module per family: ``augmented`` (zero, input-layer and second-order
augmentation), ``depth_variant`` (time concatenation, Galerkin and stacked Neural ODEs),
``controlled`` (data-controlled and adaptive-depth), ``latent`` (latent ODEs for irregular time
series), ``flows`` (continuous normalizing flows) and ``regularised`` (kinetic and Jacobian
regularisation).
"""
from __future__ import annotations

from .augmented import AugmentedNODE, InputLayerAugmentedNODE, PlainNODE, SecondOrderField, SecondOrderNODE
from .controlled import AdaptiveDepthODE, DataControlledField, DataControlledODE, RescaledField
from .depth_variant import ConcatMLP, GalerkinLinear, GalerkinMLP, StackedODE
from .flows import CNF, CNFField
from .latent import GRUEncoder, LatentODE, RNNBaseline
from .mlp import MLP
from .neural_ode import NeuralODE
from .ode_block import ODEBlock
from .odefunc import ODEFunc
from .regularised import RegularisedClassifier, RegularisedODEFunc
from .resnet import ResNet

__all__ = [
    "MLP", "ODEFunc", "ODEBlock", "ResNet", "NeuralODE",
    "PlainNODE", "AugmentedNODE", "InputLayerAugmentedNODE", "SecondOrderNODE", "SecondOrderField",
    "ConcatMLP", "GalerkinLinear", "GalerkinMLP", "StackedODE",
    "DataControlledField", "DataControlledODE", "RescaledField", "AdaptiveDepthODE",
    "GRUEncoder", "LatentODE", "RNNBaseline",
    "CNF", "CNFField",
    "RegularisedODEFunc", "RegularisedClassifier",
]
