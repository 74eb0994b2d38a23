"""One step of the classic recurrent cells (Elman RNN, GRU, LSTM), features last.

The equations and the parameter layout are those of PyTorch's ``nn.RNNCell``, ``nn.GRUCell``
and ``nn.LSTMCell``: ``weight_ih`` is ``[G * H, I]`` and ``weight_hh`` is ``[G * H, H]``,
with the ``G`` gate blocks stacked along the first dimension (GRU: ``r, z, n``; LSTM:
``i, f, g, o``), and the two biases ``[G * H]`` (or ``None``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gru_step", "lstm_step", "rnn_step"]


def rnn_step(
    h: Tensor,
    x: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """One step of an Elman RNN: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    Args:
        h: Hidden state ``[*, H]``.
        x: Input ``[*, I]``.
        weight_ih: ``[H, I]``; weight_hh: ``[H, H]``.
        bias_ih, bias_hh: ``[H]`` or ``None``.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Returns:
        The new hidden state ``[*, H]``.

    Example:
        >>> import torch
        >>> from tracetorch.functional import rnn_step
        >>> h = rnn_step(torch.zeros(1, 2), torch.ones(1, 3), torch.ones(2, 3), torch.eye(2))
        >>> h
        tensor([[0.9951, 0.9951]])
    """
    pre = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)
    if nonlinearity == "tanh":
        return torch.tanh(pre)
    if nonlinearity == "relu":
        return torch.relu(pre)
    raise ValueError(f"rnn_step: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")


def gru_step(
    h: Tensor,
    x: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> Tensor:
    """One step of a gated recurrent unit (the equations of ``nn.GRUCell``).

    ``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``,
    ``z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``,
    ``h' = (1 - z) * n + z * h``.

    Args:
        h: Hidden state ``[*, H]``.
        x: Input ``[*, I]``.
        weight_ih: ``[3H, I]``, blocks ``r, z, n``; weight_hh: ``[3H, H]``, same blocks.
        bias_ih, bias_hh: ``[3H]`` or ``None``.

    Returns:
        The new hidden state ``[*, H]``.

    Example:
        >>> import torch
        >>> from tracetorch.functional import gru_step
        >>> w_ih, w_hh = torch.zeros(3 * 2, 3), torch.zeros(3 * 2, 2)
        >>> gru_step(torch.ones(1, 2), torch.ones(1, 3), w_ih, w_hh)  # z = 0.5, n = 0
        tensor([[0.5000, 0.5000]])
    """
    gi = F.linear(x, weight_ih, bias_ih)
    gh = F.linear(h, weight_hh, bias_hh)
    split = 2 * h.shape[-1]
    r, z = torch.sigmoid(gi[..., :split] + gh[..., :split]).chunk(2, dim=-1)
    n = torch.tanh(gi[..., split:] + r * gh[..., split:])
    return n + z * (h - n)


def lstm_step(
    h: Tensor,
    c: Tensor,
    x: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One step of a long short-term memory cell (the equations of ``nn.LSTMCell``).

    ``i, f, g, o = W_ih x + b_ih + W_hh h + b_hh`` (split in four blocks),
    ``c' = sigmoid(f) * c + sigmoid(i) * tanh(g)``, ``h' = sigmoid(o) * tanh(c')``.

    Args:
        h: Hidden state ``[*, H]``.
        c: Cell state ``[*, H]``.
        x: Input ``[*, I]``.
        weight_ih: ``[4H, I]``, blocks ``i, f, g, o``; weight_hh: ``[4H, H]``, same blocks.
        bias_ih, bias_hh: ``[4H]`` or ``None``.

    Returns:
        ``(h', c')``, the new hidden and cell states ``[*, H]``.

    Example:
        >>> import torch
        >>> from tracetorch.functional import lstm_step
        >>> w_ih, w_hh = torch.zeros(4 * 2, 3), torch.zeros(4 * 2, 2)
        >>> h, c = lstm_step(torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 3), w_ih, w_hh)
        >>> c  # f = 0.5, i * g = 0
        tensor([[0.5000, 0.5000]])
    """
    gates = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c
