"""ReLU clipped from above: ``min(max(0, x), clip_val)``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .function import apply

__all__ = ["ClippedReLUFunction", "clipped_relu"]


class ClippedReLUFunction(torch.autograd.Function):
    """``y = min(max(0, x), clip_val)`` with ``clip_val`` a plain number (not learned).

    The derivative is 1 strictly inside ``(0, clip_val)`` and 0 elsewhere, including the two
    kinks. Forgetting this mask (passing ``grad_output`` through unchanged) is the classic bug
    that :func:`tracetorch.testing.check_function` catches.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, clip_val: float) -> Tensor:
        return x.clamp(min=0, max=clip_val)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, float], output: Tensor) -> None:
        x, clip_val = inputs
        ctx.save_for_backward(x)
        ctx.clip_val = float(clip_val)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        inside = (x > 0) & (x < ctx.clip_val)
        return grad_output * inside.to(grad_output.dtype), None


def clipped_relu(x: Tensor, clip_val: float = 1.0) -> Tensor:
    """Applies :class:`ClippedReLUFunction`: ``min(max(0, x), clip_val)``.

    Args:
        x: Input tensor of any shape.
        clip_val: Upper bound of the output; must be positive.

    Returns:
        Tensor of the same shape as ``x``, with values in ``[0, clip_val]``.

    Example:
        >>> x = torch.tensor([-1.0, 0.5, 3.0], requires_grad=True)
        >>> y = clipped_relu(x, clip_val=2.0)
        >>> y.detach()
        tensor([0.0000, 0.5000, 2.0000])
        >>> y.sum().backward()
        >>> x.grad
        tensor([0., 1., 0.])
    """
    if clip_val <= 0:
        raise ValueError(f"clipped_relu: clip_val must be positive, got {clip_val}")
    return apply(ClippedReLUFunction, x, clip_val)
