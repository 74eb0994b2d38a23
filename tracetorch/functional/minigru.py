"""The MiniGRU step of the custom-layer tutorial."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["minigru_step"]


def minigru_step(
    h: Tensor,
    x: Tensor,
    gates_weight: Tensor,
    gates_bias: Tensor | None,
    candidate_weight: Tensor,
    candidate_bias: Tensor | None,
) -> Tensor:
    """One step of a minimal gated recurrent unit, features on the last dimension.

    ``reset, update = sigmoid(W_g [h, x] + b_g)``, ``c = tanh(W_c [h * reset, x] + b_c)``,
    ``h' = (1 - update) * h + update * c``.

    Args:
        h: Hidden state ``[*, H]``.
        x: Input ``[*, I]``.
        gates_weight: ``[2H, H + I]``; gates_bias: ``[2H]`` or ``None``.
        candidate_weight: ``[H, H + I]``; candidate_bias: ``[H]`` or ``None``.

    Returns:
        The new hidden state ``[*, H]``.
    """
    reset, update = torch.sigmoid(
        F.linear(torch.cat([h, x], dim=-1), gates_weight, gates_bias)
    ).chunk(2, dim=-1)
    candidate = torch.tanh(
        F.linear(torch.cat([h * reset, x], dim=-1), candidate_weight, candidate_bias)
    )
    return h * (1 - update) + update * candidate
