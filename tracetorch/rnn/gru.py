"""GRU: the gated recurrent unit of ``nn.GRUCell``, one timestep per call."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional.recurrent import gru_step
from .cell import CellLayer

__all__ = ["GRU"]


class GRU(CellLayer):
    """A gated recurrent unit with the equations, weights and initialisation of ``nn.GRUCell``.

    ``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``,
    ``z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``,
    ``h = (1 - z) * n + z * h``; returns ``h``. The hidden state lives in the layer, starts
    at zero and carries over between calls.

    Args:
        in_features: Features of the input at ``dim``.
        out_features: Features of the hidden state and output.
        dim: The feature dimension of the input (``-1``: last; ``1`` on ``[B, F, L]``).
        bias: Learn the biases ``bias_ih`` and ``bias_hh``.

    Shape:
        - Input: ``(*, in_features, *)`` with the features at ``dim``.
        - Output: the input's shape with ``out_features`` at ``dim``.

    Attributes:
        weight_ih: ``[3 * out_features, in_features]``, gate blocks ``r, z, n``.
        weight_hh: ``[3 * out_features, out_features]``, same blocks.
        bias_ih, bias_hh: ``[3 * out_features]``, or ``None`` without ``bias``.
        h: The hidden state (the last output), ``None`` until the first forward.

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.rnn.GRU(8, 16)
        >>> for x in torch.rand(20, 4, 8):  # 20 timesteps of a batch of 4
        ...     y = layer(x)
        >>> y.shape, layer.h is y
        (torch.Size([4, 16]), True)
        >>> gru = torch.nn.GRU(8, 16)
        >>> layer = tt.rnn.GRU.from_torch(gru)
        >>> xs = torch.rand(20, 4, 8)
        >>> torch.allclose(torch.stack([layer(x) for x in xs]), gru(xs)[0], atol=1e-6)
        True
    """

    num_gates = 3
    torch_cell = nn.GRUCell
    torch_sequence = nn.GRU
    cell_states = ("h",)

    def _sequence_kernel(self, xs: Tensor, states: list[Tensor]) -> tuple[Tensor, ...]:
        return torch.gru(
            xs, states[0], self._flat_weights, self.bias, 1, 0.0, self.training, False, False
        )

    def _step(self, x: Tensor, h: Tensor) -> tuple[Tensor]:
        return (gru_step(h, x, *self._weights),)
