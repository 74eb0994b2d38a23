"""Spiking and leaky-integrator layers."""

from .decay import Decay
from .layer import Layer

__all__ = ["Decay", "Layer"]
