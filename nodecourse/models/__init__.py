"""Models of the course: MLP, the ODE vector field and block, ResNet and the NeuralODE builder."""
from __future__ import annotations

from .mlp import MLP
from .neural_ode import NeuralODE
from .ode_block import ODEBlock
from .odefunc import ODEFunc
from .resnet import ResNet

__all__ = ["MLP", "ODEFunc", "ODEBlock", "ResNet", "NeuralODE"]
