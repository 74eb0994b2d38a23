"""Affine map ``y = x @ W.T + b`` with a hand-written backward."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .function import apply

__all__ = ["Linear", "linear"]


class Linear(torch.autograd.Function):
    """``y = x @ weight.T + bias``, the same map as :func:`torch.nn.functional.linear`.

    With ``g = dL/dy`` the gradients are

    - ``dL/dx = g @ weight``
    - ``dL/dweight = g.T @ x`` (leading dims of ``x`` and ``g`` flattened into one batch)
    - ``dL/dbias = g`` summed over every dim that ``bias`` was broadcast along

    and each is reduced back to the shape of its own input, so any broadcasting in the
    forward is undone in the backward.

    Shape:
        - x: ``[*, in_features]``, any number of leading dims (also none).
        - weight: ``[out_features, in_features]``.
        - bias: ``None`` or any shape broadcastable to the output, usually ``[out_features]``
          or ``[1, out_features]``.
        - output: ``[*, out_features]`` (broadcast with ``bias``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if weight.dim() != 2:
            raise ValueError(
                f"Linear: expected weight of shape [out_features, in_features], "
                f"got shape {tuple(weight.shape)}"
            )
        y = x @ weight.mT
        return y if bias is None else y + bias

    @staticmethod
    def setup_context(
        ctx: Any, inputs: tuple[Tensor, Tensor, Tensor | None], output: Tensor
    ) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.bias_shape = None if bias is None else bias.shape

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_output @ weight).sum_to_size(x.shape)
        if ctx.needs_input_grad[1]:
            in_features = weight.shape[1]
            # x may have been broadcast against a bias with more leading dims.
            x_rows = x.expand(*grad_output.shape[:-1], in_features).reshape(-1, in_features)
            grad_weight = grad_output.reshape(-1, weight.shape[0]).mT @ x_rows
        if ctx.bias_shape is not None and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum_to_size(ctx.bias_shape)
        return grad_x, grad_weight, grad_bias


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Applies :class:`Linear`: ``x @ weight.T + bias``.

    Args:
        x: Input of shape ``[*, in_features]``.
        weight: Weight of shape ``[out_features, in_features]``.
        bias: Optional bias broadcastable to ``[*, out_features]``.

    Returns:
        Tensor of shape ``[*, out_features]``.

    Example:
        >>> x = torch.tensor([[1.0, 2.0, 3.0]])
        >>> w = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]], requires_grad=True)
        >>> b = torch.tensor([0.1, 0.2], requires_grad=True)
        >>> y = linear(x, w, b)
        >>> y
        tensor([[3.1000, 6.2000]], grad_fn=<LinearBackward>)
        >>> y.sum().backward()
        >>> b.grad
        tensor([1., 1.])
    """
    return apply(Linear, x, weight, bias)
