"""LSTM: the long short-term memory cell of ``nn.LSTMCell``, one timestep per call."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional.recurrent import lstm_step
from .cell import CellLayer

__all__ = ["LSTM"]


class LSTM(CellLayer):
    """A long short-term memory layer with the equations, weights and init of ``nn.LSTMCell``.

    ``i, f, g, o = W_ih x + b_ih + W_hh h + b_hh`` (four gate blocks),
    ``c = sigmoid(f) * c + sigmoid(i) * tanh(g)``, ``h = sigmoid(o) * tanh(c)``; returns
    ``h``. Both states live in the layer, start at zero and carry over between calls.

    Args:
        in_features: Features of the input at ``dim``.
        out_features: Features of the hidden and cell states and of the output.
        dim: The feature dimension of the input (``-1``: last; ``1`` on ``[B, F, L]``).
        bias: Learn the biases ``bias_ih`` and ``bias_hh``.

    Shape:
        - Input: ``(*, in_features, *)`` with the features at ``dim``.
        - Output: the input's shape with ``out_features`` at ``dim``.

    Attributes:
        weight_ih: ``[4 * out_features, in_features]``, gate blocks ``i, f, g, o``.
        weight_hh: ``[4 * out_features, out_features]``, same blocks.
        bias_ih, bias_hh: ``[4 * out_features]``, or ``None`` without ``bias``.
        h: The hidden state (the last output), ``None`` until the first forward.
        c: The cell state, ``None`` until the first forward.

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.rnn.LSTM(8, 16)
        >>> for x in torch.rand(20, 4, 8):  # 20 timesteps of a batch of 4
        ...     y = layer(x)
        >>> y.shape, layer.c.shape, layer.h is y
        (torch.Size([4, 16]), torch.Size([4, 16]), True)
        >>> lstm = torch.nn.LSTM(8, 16)
        >>> layer = tt.rnn.LSTM.from_torch(lstm)
        >>> xs = torch.rand(20, 4, 8)
        >>> torch.allclose(torch.stack([layer(x) for x in xs]), lstm(xs)[0], atol=1e-6)
        True
    """

    num_gates = 4
    torch_cell = nn.LSTMCell
    torch_sequence = nn.LSTM
    cell_states = ("h", "c")

    def _sequence_kernel(self, xs: Tensor, states: list[Tensor]) -> tuple[Tensor, ...]:
        return torch.lstm(
            xs, tuple(states), self._flat_weights, self.bias, 1, 0.0, self.training, False, False
        )

    def _step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return lstm_step(h, c, x, *self._weights)
