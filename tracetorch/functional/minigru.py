"""The MiniGRU step of the custom-layer tutorial."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["minigru_sequence", "minigru_step"]


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


def minigru_sequence(
    h: Tensor,
    xs: Tensor,
    gates_weight: Tensor,
    gates_bias: Tensor | None,
    candidate_weight: Tensor,
    candidate_bias: Tensor | None,
) -> Tensor:
    """:func:`minigru_step` over a whole sequence; returns the hidden state of every step.

    The same math, arranged for a sequence: the input's share of both linear maps
    (``W [h, x] = W_h h + W_x x``) is one matrix product over all steps, before the loop;
    each step then multiplies only the hidden state, adding the input's share in the same
    kernel (``addmm``), and updates with ``h + update * (c - h)`` (``torch.lerp``), one
    kernel where the step's ``(1 - update) * h + update * c`` takes four. Equal to the loop
    of :func:`minigru_step` up to rounding.

    Args:
        h: Hidden state before the first step, ``[*, H]``.
        xs: Inputs, time first, ``[T, *, I]``.
        gates_weight: ``[2H, H + I]``; gates_bias: ``[2H]`` or ``None``.
        candidate_weight: ``[H, H + I]``; candidate_bias: ``[H]`` or ``None``.

    Returns:
        The hidden states after each step, ``[T, *, H]``.

    Example:
        >>> h, xs = torch.zeros(2, 3), torch.rand(5, 2, 4)
        >>> w_g, w_c = torch.rand(6, 7), torch.rand(3, 7)
        >>> loop = []
        >>> for x in xs:
        ...     h = minigru_step(h, x, w_g, None, w_c, None)
        ...     loop.append(h)
        >>> torch.allclose(minigru_sequence(torch.zeros(2, 3), xs, w_g, None, w_c, None),
        ...                torch.stack(loop))
        True
    """
    hidden = h.shape[-1]
    batch = h.shape[:-1]
    h = h.reshape(-1, hidden)  # every leading dimension as one batch of rows
    rows = h.shape[0]
    gates_h, gates_x = gates_weight.split([hidden, gates_weight.shape[1] - hidden], dim=1)
    cand_h, cand_x = candidate_weight.split([hidden, candidate_weight.shape[1] - hidden], dim=1)
    steps = xs.shape[0]
    flat = xs.reshape(steps, rows, xs.shape[-1])
    gates_in = F.linear(flat, gates_x, gates_bias)  # [T, rows, 2H]
    cand_in = F.linear(flat, cand_x, candidate_bias)  # [T, rows, H]
    gates_ht, cand_ht = gates_h.t(), cand_h.t()
    outs = []
    for g_in, c_in in zip(gates_in.unbind(0), cand_in.unbind(0), strict=True):
        reset, update = torch.sigmoid(torch.addmm(g_in, h, gates_ht)).chunk(2, dim=-1)
        candidate = torch.tanh(torch.addmm(c_in, h * reset, cand_ht))
        if candidate.dtype != h.dtype:  # autocast: the state keeps its dtype, as in a step
            candidate, update = candidate.to(h.dtype), update.to(h.dtype)
        h = torch.lerp(h, candidate, update)
        outs.append(h)
    return torch.stack(outs).reshape(steps, *batch, hidden)
