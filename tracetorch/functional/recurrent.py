"""One step of the classic recurrent cells (Elman RNN, GRU, LSTM), features last.

The equations and the parameter layout are those of PyTorch's ``nn.RNNCell``, ``nn.GRUCell``
and ``nn.LSTMCell``: ``weight_ih`` is ``[G * H, I]`` and ``weight_hh`` is ``[G * H, H]``,
with the ``G`` gate blocks stacked along the first dimension (GRU: ``r, z, n``; LSTM:
``i, f, g, o``), and the two biases ``[G * H]`` (or ``None``). Each step calls the fused
kernel behind the matching PyTorch cell (``torch.gru_cell``, ...), on any leading shape.
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
    if nonlinearity == "tanh":
        cell = torch.rnn_tanh_cell
    elif nonlinearity == "relu":
        cell = torch.rnn_relu_cell
    else:
        raise ValueError(f"rnn_step: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")
    return _unrows(cell(*_rows(x, h), weight_ih, weight_hh, bias_ih, bias_hh), h)


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
    return _unrows(torch.gru_cell(*_rows(x, h), weight_ih, weight_hh, bias_ih, bias_hh), h)


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
    if torch._C._are_functorch_transforms_active():
        # torch.func (vmap, ...): torch.lstm_cell has no batching rule; the same math in ops
        gates = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    x_rows, h_rows = _rows(x, h)
    c_rows = c if c.dim() == 2 else c.reshape(-1, c.shape[-1])
    h_new, c_new = torch.lstm_cell(x_rows, (h_rows, c_rows), weight_ih, weight_hh, bias_ih, bias_hh)
    return _unrows(h_new, h), _unrows(c_new, c)


def _rows(x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` and ``h`` as 2-d ``[rows, features]``, as PyTorch's fused cell kernels take them.

    ``[B, F]`` inputs pass as they are (no view in the autograd graph).
    """
    if x.dim() == 2 and h.dim() == 2:
        return x, h
    return x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1])


def _unrows(new: Tensor, like: Tensor) -> Tensor:
    """A cell kernel's ``[rows, H]`` result in the shape of the state ``like``."""
    return new if new.dim() == like.dim() else new.view(like.shape)
