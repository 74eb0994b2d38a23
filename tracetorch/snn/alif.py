"""ALIF: the adaptive leaky integrate-and-fire neuron of LSNNs (Bellec et al. 2018)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from ..functional.alif import alif_step
from .layer import Layer
from .leaky import DEFAULT_SPIKE

__all__ = ["ALIF"]


class ALIF(Layer):
    """Adaptive leaky integrate-and-fire neuron: every spike raises the threshold for a while.

    The neuron of long short-term memory spiking networks (LSNN; Bellec, Salaj, Subramoney,
    Legenstein and Maass, NeurIPS 2018). Besides the membrane ``mem`` it keeps an adaptation
    trace ``a`` of its own spikes, which decays with ``rho`` (usually much slower than the
    membrane) and raises the threshold by ``beta_a * a``::

        mem = beta*mem + x
        A   = threshold + beta_a*a          # with a from the step before
        s   = spike_fn(mem - A)
        mem = mem - s*A                     # reset by subtracting the adaptive threshold
        a   = rho*a + (1 - rho)*s

    The math of a step is :func:`tracetorch.functional.alif_step`, which explains the choice
    of form (LSNN's moving average for ``a``; e-prop's ``a = rho*a + s`` with a strength
    ``beta_e`` is the same neuron where ``beta_e = beta_a * (1 - rho)``). With ``beta_a``
    near 0 it is :class:`LIF`.

    Args:
        num_neurons: Number of neurons (features at ``dim``).
        beta: Membrane decay, in (0, 1). Default: ``0.9``.
        rho: Adaptation decay, in (0, 1). Default: ``0.99`` (a memory of about 100 steps).
        threshold: Baseline threshold, > 0. Default: ``1.0``.
        beta_a: Adaptation strength, > 0 (stored through a softplus, so it stays positive
            while it learns): the threshold increase of a neuron that fires at every step.
            Default: ``1.0``.
        dim: The feature dimension of the input (``-3``: channels of NCHW).
        beta_rank, rho_rank, threshold_rank, beta_a_rank: 0 for one value shared by the
            layer, 1 (default) for one value per neuron.
        learn_beta, learn_rho, learn_threshold, learn_beta_a: Learn the parameter (default)
            or keep it fixed in a buffer.
        spike_fn: Maps ``mem - A`` to a firing value. Default: a hard spike
            (``tt.autograd.spike_fn('atan')``: exactly 0 or 1 forward, the arctan surrogate
            derivative backward), as :class:`LIF`;
            :func:`~tracetorch.functional.sigmoid4x` gives smooth firing.

    Shape:
        - Input: ``(*, num_neurons, *)`` with the neurons at ``dim``.
        - Output: same shape as the input.

    States: ``mem``, ``a`` (``None`` until the first forward).

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.snn.ALIF(1, beta=0.5, rho=0.5, threshold=1.0, beta_a=1.0)
        >>> [layer(torch.full((1, 1), 0.75)).item() for t in range(6)]
        [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
        >>> layer.state_names
        ('mem', 'a')
    """

    def __init__(
        self,
        num_neurons: int,
        beta: float | Tensor = 0.9,
        rho: float | Tensor = 0.99,
        threshold: float | Tensor = 1.0,
        beta_a: float | Tensor = 1.0,
        dim: int = -1,
        beta_rank: int = 1,
        rho_rank: int = 1,
        threshold_rank: int = 1,
        beta_a_rank: int = 1,
        learn_beta: bool = True,
        learn_rho: bool = True,
        learn_threshold: bool = True,
        learn_beta_a: bool = True,
        spike_fn: Callable[[Tensor], Tensor] = DEFAULT_SPIKE,
    ) -> None:
        if not callable(spike_fn):
            raise TypeError(
                f"{type(self).__name__}: expected spike_fn to be callable, got {spike_fn!r}"
            )
        super().__init__(num_neurons, dim=dim)
        self._register_decay("beta", beta, beta_rank, learn_beta)
        self._register_decay("rho", rho, rho_rank, learn_rho)
        self._register_threshold("threshold", threshold, threshold_rank, learn_threshold)
        self._register_threshold("beta_a", beta_a, beta_a_rank, learn_beta_a)
        self._initialize_state("mem")
        self._initialize_state("a")
        self.spike_fn = spike_fn

    def forward(self, x: Tensor) -> Tensor:
        """One timestep: integrate ``x``, fire against the adaptive threshold, reset, adapt.

        Args:
            x: The input current, ``(*, num_neurons, *)`` with the neurons at ``dim``.

        Returns:
            The spikes of this step, shaped like ``x``.
        """
        x, states = self._read_states(x)
        params = self._parameter_values(x.dim())
        try:
            out, new = alif_step(x, states, params, self.spike_fn)
        except Exception as error:  # nothing was written: say why if the input explains it
            self._step_failed(x, states, error)
        self._write_states(new)
        return out

    def forward_sequence(self, xs: Tensor) -> Tensor:
        """A whole sequence at once: ``xs`` ``[T, *step_shape]`` in, the spikes out.

        The parameters are read once per sequence and the time loop of
        :func:`~tracetorch.functional.alif_step` runs with the states in local variables,
        without the layer's per-step state reads and writes. The same operations as calling
        :meth:`forward` on each step, so the same results bit for bit; the states left are
        the last step's.
        """
        if not self._follows_step(ALIF):  # a subclass redefined the step: loop over it
            return super().forward_sequence(xs)
        xs, states = self._read_sequence_states(xs)
        params = self._parameter_values(xs.dim() - 1)
        state: Mapping[str, Tensor] = states
        outs = []
        try:
            for x in xs.unbind(0):
                out, state = alif_step(x, state, params, self.spike_fn)
                outs.append(out)
        except Exception as error:  # nothing was written: say why if the input explains it
            self._step_failed(xs[0], states, error)
        self._write_states(dict(state))
        return torch.stack(outs)

    def extra_repr(self) -> str:
        spike = getattr(self.spike_fn, "__name__", repr(self.spike_fn))
        return f"{super().extra_repr()}, spike_fn={spike}"
