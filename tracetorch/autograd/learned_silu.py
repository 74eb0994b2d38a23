"""SiLU with a learnable slope: ``slope * x * sigmoid(x)``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .function import apply

__all__ = ["LearnedSiLU", "learned_silu"]


class LearnedSiLU(torch.autograd.Function):
    """``y = slope * x * sigmoid(x)`` with ``slope`` a tensor that can be learned.

    With ``s = sigmoid(x)`` and ``g = dL/dy`` (product rule, ``s' = s (1 - s)``):

    - ``dL/dx = g * slope * (s + x s (1 - s))``
    - ``dL/dslope = g * x * s``, summed over the dims ``slope`` was broadcast along

    ``x`` and ``slope`` broadcast against each other; each gradient comes back in the shape
    of its own input (a per-feature slope of shape ``[features]`` is typical).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, slope: Tensor) -> Tensor:
        return slope * x * torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, slope = ctx.saved_tensors
        s = torch.sigmoid(x)
        grad_x = grad_slope = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_output * slope * (s + x * s * (1 - s))).sum_to_size(x.shape)
        if ctx.needs_input_grad[1]:
            grad_slope = (grad_output * x * s).sum_to_size(slope.shape)
        return grad_x, grad_slope


def learned_silu(x: Tensor, slope: Tensor | float) -> Tensor:
    """Applies :class:`LearnedSiLU`: ``slope * x * sigmoid(x)``.

    Args:
        x: Input tensor.
        slope: Tensor broadcastable against ``x`` (e.g. a parameter of shape ``[features]``),
            or a number, which is treated as a constant.

    Returns:
        Tensor of the broadcast shape of ``x`` and ``slope``.

    Example:
        >>> x = torch.tensor([0.0, 2.0])
        >>> slope = torch.tensor(0.5, requires_grad=True)
        >>> learned_silu(x, slope).sum().backward()
        >>> slope.grad  # sum of x * sigmoid(x) = 2 * sigmoid(2)
        tensor(1.7616)
    """
    if not isinstance(slope, Tensor):
        slope = torch.tensor(slope, dtype=x.dtype, device=x.device)
    return apply(LearnedSiLU, x, slope)
