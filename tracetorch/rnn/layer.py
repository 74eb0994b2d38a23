"""Base class of the recurrent (RNN-style) layers."""

from __future__ import annotations

from .. import core

__all__ = ["Layer"]


class Layer(core.Layer):
    """A :class:`tracetorch.Layer` for RNN-style layers, whose output has ``num_neurons``
    features while the input may have any number (``in_features``, checked when given).

    Args:
        num_neurons: Size of the hidden state (and of the output) at ``dim``.
        dim: The feature dimension of the input.
        in_features: Size the input must have at ``dim``; ``None`` leaves it to the layer.
    """

    def __init__(self, num_neurons: int, dim: int = -1, in_features: int | None = None) -> None:
        super().__init__(num_neurons, dim=dim, in_features=in_features)
