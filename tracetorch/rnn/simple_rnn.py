"""SimpleRNN: the Elman recurrent layer of ``nn.RNNCell``, one timestep per call."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional.recurrent import rnn_step
from .cell import CellLayer

__all__ = ["SimpleRNN"]


class SimpleRNN(CellLayer):
    """An Elman recurrent layer: ``h = act(W_ih x + b_ih + W_hh h + b_hh)``; returns ``h``.

    The equations, parameter layout and initialisation of ``nn.RNNCell``; the hidden state
    lives in the layer, starts at zero and carries over between calls.

    Args:
        in_features: Features of the input at ``dim``.
        out_features: Features of the hidden state and output.
        dim: The feature dimension of the input (``-1``: last; ``1`` on ``[B, F, L]``).
        bias: Learn the biases ``bias_ih`` and ``bias_hh``.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Shape:
        - Input: ``(*, in_features, *)`` with the features at ``dim``.
        - Output: the input's shape with ``out_features`` at ``dim``.

    Attributes:
        weight_ih: ``[out_features, in_features]``.
        weight_hh: ``[out_features, out_features]``.
        bias_ih, bias_hh: ``[out_features]``, or ``None`` without ``bias``.
        h: The hidden state (the last output), ``None`` until the first forward.

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.rnn.SimpleRNN(8, 16)
        >>> for x in torch.rand(20, 4, 8):  # 20 timesteps of a batch of 4
        ...     y = layer(x)
        >>> y.shape, layer.h is y
        (torch.Size([4, 16]), True)
        >>> rnn = torch.nn.RNN(8, 16, nonlinearity="relu")
        >>> layer = tt.rnn.SimpleRNN.from_torch(rnn)
        >>> xs = torch.rand(20, 4, 8)
        >>> torch.allclose(torch.stack([layer(x) for x in xs]), rnn(xs)[0], atol=1e-6)
        True
    """

    num_gates = 1
    torch_cell = nn.RNNCell
    torch_sequence = nn.RNN
    cell_states = ("h",)
    torch_options = ("nonlinearity",)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        dim: int = -1,
        bias: bool = True,
        nonlinearity: str = "tanh",
    ) -> None:
        """Build the layer; the arguments are described on the class."""
        super().__init__(in_features, out_features, dim=dim, bias=bias)
        self.nonlinearity = nonlinearity

    @property
    def nonlinearity(self) -> str:
        """``"tanh"`` or ``"relu"``; checked when assigned, as the modes pick kernels by it."""
        return self.__dict__["_nonlinearity"]

    @nonlinearity.setter
    def nonlinearity(self, value: str) -> None:
        if value not in ("tanh", "relu"):
            raise ValueError(
                f"{type(self).__name__}: expected nonlinearity 'tanh' or 'relu', got {value!r}"
            )
        self.__dict__["_nonlinearity"] = value

    def _sequence_kernel(self, xs: Tensor, states: list[Tensor]) -> tuple[Tensor, ...]:
        kernel = torch.rnn_tanh if self.nonlinearity == "tanh" else torch.rnn_relu
        return kernel(
            xs, states[0], self._flat_weights, self.bias, 1, 0.0, self.training, False, False
        )

    def _step(self, x: Tensor, h: Tensor) -> tuple[Tensor]:
        return (rnn_step(h, x, *self._weights, self.nonlinearity),)
