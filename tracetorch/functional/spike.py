"""Smooth firing functions: a membrane (minus threshold) in, a firing value out."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sigmoid4x"]


def sigmoid4x(x: Tensor) -> Tensor:
    """A smooth firing probability, ``sigmoid(4 * x)``: the default ``spike_fn``.

    Steep enough to act like a soft step around ``x = 0`` (its slope there is 1, like a
    straight-through spike), smooth everywhere so that ordinary autograd trains through it.
    Pair it with a straight-through quantizer (``quant_fn``) for hard spikes.

    Args:
        x: Typically ``membrane - threshold``; any shape, floating dtype.

    Returns:
        Values in ``(0, 1)``, ``0.5`` at ``x = 0``.

    Example:
        >>> import torch
        >>> from tracetorch.functional import sigmoid4x
        >>> sigmoid4x(torch.tensor([-1.0, 0.0, 1.0]))
        tensor([0.0180, 0.5000, 0.9820])
    """
    return torch.sigmoid(4 * x)
