"""Leaky integration, the step shared by every leaky-integrator neuron."""

from __future__ import annotations

from torch import Tensor

__all__ = ["leaky_integrate"]


def leaky_integrate(mem: Tensor, x: Tensor, beta: Tensor) -> Tensor:
    """One step of a leaky integrator: ``beta * mem + x``.

    Args:
        mem: The membrane (or trace) before the step.
        x: The input current of this step, broadcastable to ``mem``.
        beta: The decay in ``(0, 1)``, broadcastable to ``mem`` (scalar or per neuron along
            the last dimension).

    Returns:
        The membrane after the step.

    Example:
        >>> import torch
        >>> from tracetorch.functional import leaky_integrate
        >>> leaky_integrate(torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor(0.9))
        tensor([1.4000])
    """
    return mem * beta + x
