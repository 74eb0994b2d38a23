"""MiniGRU: the minimal gated recurrent layer of the custom-layer tutorial."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.layer import _positive_int
from ..functional.minigru import minigru_sequence, minigru_step
from .layer import Layer

__all__ = ["MiniGRU"]


class MiniGRU(Layer):
    """A minimal gated recurrent unit with one hidden state ``H``.

    ``reset, update = sigmoid(gates([H, x]))``,
    ``candidate = tanh(candidate([H * reset, x]))``,
    ``H = H * (1 - update) + update * candidate``; returns ``H``.

    Args:
        in_features: Features of the input at ``dim``.
        out_features: Features of the hidden state and output.
        dim: The feature dimension of the input.

    Shape:
        - Input: ``(*, in_features, *)`` with the features at ``dim``.
        - Output: the input's shape with ``out_features`` at ``dim``.

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.rnn.MiniGRU(64, 32)
        >>> layer(torch.rand(16, 64)).shape
        torch.Size([16, 32])
    """

    def __init__(self, in_features: int, out_features: int, dim: int = -1) -> None:
        """Build the layer; the arguments are described on the class."""
        _positive_int(type(self).__name__, "out_features", out_features)  # its name here
        super().__init__(out_features, dim=dim, in_features=in_features)
        self.gates = nn.Linear(in_features + out_features, 2 * out_features)
        self.candidate = nn.Linear(in_features + out_features, out_features)
        self._initialize_state("H")

    def forward(self, x: Tensor) -> Tensor:
        """One timestep: the new hidden state ``H`` from ``x`` and ``H``; returns it.

        Args:
            x: The input, ``(*, in_features, *)`` with the features at ``dim``.

        Returns:
            The new ``H``, shaped like ``x`` with ``out_features`` at ``dim``.
        """
        x, states = self._read_states(x)
        gates, candidate = self.gates, self.candidate
        try:
            h = minigru_step(
                self._to_working_dim(states["H"]),
                self._to_working_dim(x),
                gates.weight,
                gates.bias,
                candidate.weight,
                candidate.bias,
            )
        except Exception as error:  # nothing was written: say why if the input explains it
            self._step_failed(x, states, error)
        h = self._from_working_dim(h)
        self._write_states({"H": h})
        return h

    def forward_sequence(self, xs: Tensor) -> Tensor:
        """A whole sequence: ``xs`` ``[T, *step_shape]`` in, the hidden states out.

        The input's share of the gates and the candidate is one matrix product over all
        steps, before the time loop (:func:`tracetorch.functional.minigru_sequence`). Equal
        to calling :meth:`forward` on each step, up to rounding; the state left is the last
        step's.
        """
        if not self._follows_step(MiniGRU):  # a subclass redefined the step: loop over it
            return super().forward_sequence(xs)
        xs, states = self._read_sequence_states(xs)
        if xs.is_inference() and torch.is_grad_enabled():
            # the matrix product over all steps saves xs for the backward, which an inference
            # tensor refuses; step mode takes it (its product saves the concatenation)
            xs = xs.clone()
        step_dim = self.dim if self.dim < 0 else self.dim + 1  # dim counted in one step
        last = step_dim == -1 or step_dim == xs.dim() - 1
        gates, candidate = self.gates, self.candidate
        try:
            hs = minigru_sequence(
                self._to_working_dim(states["H"]),
                xs if last else xs.movedim(step_dim, -1),
                gates.weight,
                gates.bias,
                candidate.weight,
                candidate.bias,
            )
        except Exception as error:  # nothing was written: say why if the input explains it
            self._step_failed(xs[0], states, error)
        self._write_states({"H": self._from_working_dim(hs[-1])})
        return hs if last else hs.movedim(-1, step_dim)
