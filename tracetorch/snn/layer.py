"""Base class of the spiking / leaky-integrator layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import core
from ..functional.transforms import sigmoid_inverse, softplus_inverse

__all__ = ["Layer"]


class Layer(core.Layer):
    """A :class:`tracetorch.Layer` whose input and output have ``num_neurons`` features.

    Adds registration helpers for the parameters spiking layers use: decays (kept in
    ``(0, 1)`` by a sigmoid), thresholds (kept positive by a softplus) and biases
    (unconstrained). Each stores ``raw_<name>`` and exposes the constrained ``self.<name>``.

    Args:
        num_neurons: Number of neurons; the input must have this many features at ``dim``.
        dim: The feature dimension of the input.
    """

    def __init__(self, num_neurons: int, dim: int = -1) -> None:
        """Build the layer; the arguments are described on the class."""
        super().__init__(num_neurons, dim=dim, in_features=num_neurons)

    def _register_decay(
        self, name: str, value: float | Tensor, rank: int = 1, learnable: bool = True
    ) -> None:
        """Register a decay in ``(0, 1)``, stored as the logit of its value."""
        self._register_parameter(
            name, value, rank, learnable, torch.sigmoid, sigmoid_inverse, low=0.0, high=1.0
        )

    def _register_threshold(
        self, name: str, value: float | Tensor, rank: int = 1, learnable: bool = True
    ) -> None:
        """Register a threshold ``> 0``, stored as the inverse softplus of its value."""
        self._register_parameter(
            name, value, rank, learnable, F.softplus, softplus_inverse, low=0.0
        )

    def _register_bias(
        self, name: str, value: float | Tensor, rank: int = 1, learnable: bool = True
    ) -> None:
        """Register an unconstrained parameter (stored as it is)."""
        self._register_parameter(name, value, rank, learnable)
