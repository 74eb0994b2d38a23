"""Base class of the recurrent (RNN-style) layers."""

from __future__ import annotations

from .. import core

__all__ = ["Layer"]


class Layer(core.Layer):
    """Exactly :class:`tracetorch.Layer`, under the name the custom-layer tutorial uses.

    :class:`tracetorch.Layer` already lets the output (``num_neurons`` features) differ from
    the input (``in_features``, checked when given); this subclass adds nothing to it and is
    kept so that recurrent layers written as in the tutorial (``class MiniGRU(tt.rnn.Layer)``)
    read as published.

    Args:
        num_neurons: Size of the hidden state (and of the output) at ``dim``.
        dim: The feature dimension of the input.
        in_features: Size the input must have at ``dim``; ``None`` leaves it to the layer.
    """
