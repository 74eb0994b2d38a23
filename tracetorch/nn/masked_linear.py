"""MaskedLinear: a linear layer whose weight has a fixed pattern of structural zeros."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MaskedLinear"]


class MaskedLinear(nn.Module):
    """``y = x @ (weight * mask).T + bias``: a linear layer with a fixed connectivity mask.

    Only the weights where ``mask`` is True connect an input to an output. The others never
    influence the output and get exactly zero gradient (the product with the mask zeroes
    it); they are also set to zero at construction so ``weight`` shows the structure. The
    mask is a buffer: it follows ``.to()`` and is saved in ``state_dict``.

    Each output's weights (and bias) start uniform in ``(-1/sqrt(k), 1/sqrt(k))``, where
    ``k`` is the number of inputs the mask connects to it: ``nn.Linear``'s initialisation
    with the effective fan-in (an output with no input keeps ``k = 1``).

    Args:
        in_features: Size of each input sample.
        out_features: Size of each output sample.
        mask: ``"diagonal"`` (input ``i`` feeds output ``i`` only: the identity pattern
            ``torch.eye(out_features, in_features)``, also for rectangular shapes), or a
            tensor of shape ``(out_features, in_features)`` that is boolean or holds only 0s
            and 1s.
        bias: Learn an additive bias.

    Shape:
        - Input: ``(*, in_features)``.
        - Output: ``(*, out_features)``.

    Attributes:
        weight: The learnable weight, ``(out_features, in_features)``.
        bias: The learnable bias, ``(out_features,)``, or None.
        mask: The boolean connectivity mask, ``(out_features, in_features)``.

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.nn.MaskedLinear(3, 3, mask="diagonal")
        >>> layer
        MaskedLinear(in_features=3, out_features=3, bias=True, connections=3/9)
        >>> layer(torch.ones(2, 3)).shape
        torch.Size([2, 3])
        >>> layer(torch.ones(3)).sum().backward()
        >>> bool((layer.weight.grad[~layer.mask] == 0).all())
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        mask: str | Tensor = "diagonal",
        bias: bool = True,
    ) -> None:
        """Build the layer; the arguments are described on the class."""
        super().__init__()
        for arg, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"MaskedLinear: expected {arg} to be a positive int, got {value!r}"
                )
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer("mask", self._build_mask(mask))
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def _build_mask(self, mask: str | Tensor) -> Tensor:
        shape = (self.out_features, self.in_features)
        if isinstance(mask, str):
            if mask != "diagonal":
                raise ValueError(
                    f"MaskedLinear: unknown mask {mask!r}; expected 'diagonal' or a tensor of "
                    f"shape {shape}"
                )
            return torch.eye(*shape, dtype=torch.bool)
        if not isinstance(mask, Tensor):
            raise ValueError(
                f"MaskedLinear: expected mask to be 'diagonal' or a tensor of shape {shape}, got "
                f"{type(mask).__name__}"
            )
        if mask.is_meta:
            raise ValueError("MaskedLinear: expected a mask on a real device, got a meta tensor")
        if tuple(mask.shape) != shape:
            raise ValueError(
                f"MaskedLinear: expected a mask of shape (out_features, in_features) = {shape}, "
                f"got {tuple(mask.shape)}"
            )
        if mask.dtype != torch.bool:
            if not ((mask == 0) | (mask == 1)).all():
                raise ValueError(
                    "MaskedLinear: expected a boolean mask or one holding only 0s and 1s, got "
                    f"values {torch.unique(mask).tolist()}"
                )
            mask = mask != 0
        return mask.detach().clone()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-draw ``weight`` and ``bias`` (uniform, scaled by each output's fan-in)."""
        fan_in = self.mask.sum(dim=1, keepdim=True).clamp(min=1).to(self.weight.dtype)
        bound = fan_in.rsqrt()
        self.weight.uniform_(-1, 1).mul_(bound).mul_(self.mask)
        if self.bias is not None:
            self.bias.uniform_(-1, 1).mul_(bound.squeeze(1))

    def forward(self, x: Tensor) -> Tensor:
        """``x @ (weight * mask).T + bias`` on ``(*, in_features)``, any leading dimensions."""
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"MaskedLinear: expected {self.in_features} features in the last dimension, "
                f"got input of shape {tuple(x.shape)}"
            )
        return F.linear(x, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, "
            f"connections={int(self.mask.sum())}/{self.mask.numel()}"
        )
