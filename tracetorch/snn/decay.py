"""Decay: a leaky integrator that returns its membrane."""

from __future__ import annotations

from torch import Tensor

from ..functional.integrate import leaky_integrate
from .layer import Layer

__all__ = ["Decay"]


class Decay(Layer):
    """Leaky integrator without firing: ``mem = beta * mem + x``, returns ``mem``.

    Args:
        num_neurons: Number of neurons (features at ``dim``).
        beta: Membrane decay in ``(0, 1)``: a float or a 0-d/1-d tensor.
        dim: The feature dimension of the input.
        beta_rank: 0 for one decay shared by all neurons, 1 for one per neuron.
        learn_beta: Learn the decay (``raw_beta`` is an ``nn.Parameter``) or keep it fixed.

    Shape:
        - Input: ``(*, num_neurons, *)`` with the neurons at ``dim``.
        - Output: same shape as the input.

    Attributes:
        mem: The membrane potential (hidden state), ``None`` until the first forward.
        beta: The decay, ``sigmoid(raw_beta)``.

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.snn.Decay(3, beta=0.5)
        >>> for _ in range(3):
        ...     y = layer(torch.ones(1, 3))
        >>> y
        tensor([[1.7500, 1.7500, 1.7500]], grad_fn=<AddBackward0>)
    """

    def __init__(
        self,
        num_neurons: int,
        beta: float | Tensor = 0.9,
        dim: int = -1,
        beta_rank: int = 1,
        learn_beta: bool = True,
    ) -> None:
        super().__init__(num_neurons, dim=dim)
        self._register_decay("beta", beta, beta_rank, learn_beta)
        self._initialize_state("mem")

    def forward(self, x: Tensor) -> Tensor:
        # The hot path of the overhead benchmark, written out: a live ``mem`` of x's shape
        # proves x valid (the check _ensure_states's own fast path makes, without the method
        # call), and the state goes straight to its slot. Measured at batch 1 against the
        # plain form ``self._ensure_states(x)`` ... ``self.mem = ...``: 46.0 vs 46.9 us a step
        # of benchmarks/overhead.py's network (plain PyTorch: 42.6 us).
        mem = self.mem
        if mem is None or mem.shape != x.shape:  # first step, or an input to check in full
            self._ensure_states(x)
            mem = self.mem
        beta = self.beta if self.dim == -1 else self._along_dim(self.beta, x.dim())
        mem = leaky_integrate(mem, x, beta)
        self.__dict__["mem"] = mem
        return mem
