"""Decay: the custom-layer tutorial's name for the leaky integrator :class:`~tracetorch.snn.LI`."""

from __future__ import annotations

from .family import LI

__all__ = ["Decay"]


class Decay(LI):
    """Leaky integrator without firing, ``mem = beta * mem + x``, returning ``mem``.

    The same layer as :class:`~tracetorch.snn.LI` (same parameters, states, outputs and
    ``state_dict`` keys), under the name the custom-layer tutorial and the design use.

    Args:
        num_neurons: Number of neurons (features at ``dim``).
        beta: Membrane decay in ``(0, 1)``: a float or a 0-d/1-d tensor.
        dim: The feature dimension of the input.
        beta_rank: 0 for one decay shared by all neurons, 1 for one per neuron.
        learn_beta: Learn the decay (``raw_beta`` is an ``nn.Parameter``) or keep it fixed.

    Shape:
        - Input: ``(*, num_neurons, *)`` with the neurons at ``dim``.
        - Output: same shape as the input.

    Attributes:
        mem: The membrane potential (hidden state), ``None`` until the first forward.
        beta: The decay, ``sigmoid(raw_beta)``.

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.snn.Decay(3, beta=0.5)
        >>> for _ in range(3):
        ...     y = layer(torch.ones(1, 3))
        >>> y
        tensor([[1.7500, 1.7500, 1.7500]], grad_fn=<AddBackward0>)
    """
