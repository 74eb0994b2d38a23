"""The one leaky-integrator layer behind every name of the ``[D][S][R]LI<kind>`` family.

:class:`LeakyIntegrator` registers the parameters and states a :class:`LeakyConfig` needs and
calls :func:`tracetorch.functional.leaky_step` once per timestep. The public names
(:mod:`tracetorch.snn.family`) are thin configurations of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, NamedTuple

from torch import Tensor

from ..autograd.leaky_scan import leaky_scan
from ..autograd.surrogate import SpikeFn
from ..functional.leaky import RESETS, LeakyConfig, leaky_step
from .layer import Layer

__all__ = ["DEFAULT_SPIKE", "LeakyIntegrator", "ParameterSpec", "parameter_specs", "state_names"]

DEFAULT_SPIKE = SpikeFn("atan")
"""The default ``spike_fn`` of the firing kinds: a Heaviside spike with the arctan surrogate."""


class ParameterSpec(NamedTuple):
    """One constructor parameter of a leaky-integrator layer.

    Attributes:
        name: The parameter name (``beta``, ``pos_threshold``, ...).
        kind: ``"decay"`` (in ``(0, 1)``, stored through a sigmoid), ``"threshold"``
            (``> 0``, through a softplus) or ``"free"`` (unconstrained).
        default: The value the constructor uses when none is given.
    """

    name: str
    kind: str
    default: float


def _signed(names: list[tuple[str, str, float]], dual: bool) -> list[ParameterSpec]:
    """With ``dual``, each ``name`` becomes ``pos_name``, ``neg_name``."""
    prefixes = ("pos_", "neg_") if dual else ("",)
    return [ParameterSpec(p + name, kind, value) for name, kind, value in names for p in prefixes]


def parameter_specs(config: LeakyConfig) -> tuple[ParameterSpec, ...]:
    """The parameters of a configuration, in constructor order.

    Decays first (``alpha`` if synaptic, ``beta``, ``gamma`` if recurrent), then thresholds,
    ``bias`` (firing kinds), scales (``"scaled"``) and ``rec_weight`` (recurrent). With
    ``dual``, decays and ``rec_weight`` split into ``pos_``/``neg_`` pairs.
    """
    decays = [("alpha", "decay", 0.5)] * config.synaptic + [("beta", "decay", 0.9)]
    decays += [("gamma", "decay", 0.9)] * config.recurrent
    specs = _signed(decays, config.dual)
    if config.firing == "binary":
        specs.append(ParameterSpec("threshold", "threshold", 1.0))
    elif config.firing != "none":
        specs += [ParameterSpec(f"{s}_threshold", "threshold", 1.0) for s in ("pos", "neg")]
    if config.firing != "none":
        specs.append(ParameterSpec("bias", "free", 0.0))
    if config.firing == "scaled":
        specs += [ParameterSpec(f"{s}_scale", "free", 1.0) for s in ("pos", "neg")]
    specs += _signed([("rec_weight", "free", 0.0)] * config.recurrent, config.dual)
    return tuple(specs)


def state_names(config: LeakyConfig) -> tuple[str, ...]:
    """The hidden states of a configuration: membrane, synaptic, recurrent, previous output."""
    traces = ["mem"] + ["syn"] * config.synaptic + ["rec"] * config.recurrent
    names = [f"{s}_{t}" for t in traces for s in ("pos", "neg")] if config.dual else traces
    return (*names, *("prev_output",) * config.recurrent)


class LeakyIntegrator(Layer):
    """The leaky-integrator neuron with the four switches of :class:`LeakyConfig`.

    A subclass fixes the configuration in the class attributes ``config`` and ``specs`` (the
    parameters, from :func:`parameter_specs`); the public names of :mod:`tracetorch.snn` are
    such subclasses, each with the exact constructor signature of its parameters. The math of
    a step is :func:`tracetorch.functional.leaky_step`.

    Args:
        num_neurons: Number of neurons (features at ``dim``).
        dim: The feature dimension of the input.
        spike_fn: Firing kinds: maps ``membrane - threshold`` to a firing value (default: a
            hard spike in ``{0, 1}`` with the arctan surrogate gradient; pass
            :func:`~tracetorch.functional.sigmoid4x` for smooth firing).
        quant_fn: Firing kinds: applied to the firing value (``None``: identity).
        reset: Firing kinds: what a spike does to the membrane: ``"subtract"`` (default:
            the threshold is subtracted), ``"zero"`` (set to 0 where a spike fired) or
            ``"none"``; see :func:`tracetorch.functional.leaky_step`.
        **parameters: For each parameter ``p`` of ``specs``: its value ``p`` (a float or a
            0-d/1-d tensor), ``p_rank`` (0: one value shared by the layer, 1: one per neuron)
            and ``learn_p`` (learnable ``nn.Parameter`` or fixed buffer); missing entries take
            the defaults (the spec's value, rank 1, learnable).

    Raises:
        TypeError: An unknown keyword, or a ``spike_fn``/``quant_fn`` that is not callable.
        ValueError: A value outside its constraint, a bad rank or length, an unknown
            ``reset``, or a ``reset`` other than ``"subtract"`` on a kind that does not fire
            (the named classes of those kinds, such as :class:`LI`, take no ``reset``: a
            ``TypeError``, as for any unknown keyword).
    """

    config: ClassVar[LeakyConfig] = LeakyConfig()
    specs: ClassVar[tuple[ParameterSpec, ...]] = parameter_specs(LeakyConfig())

    def __init__(
        self,
        num_neurons: int,
        dim: int = -1,
        spike_fn: Callable[[Tensor], Tensor] = DEFAULT_SPIKE,
        quant_fn: Callable[[Tensor], Tensor] | None = None,
        reset: str = "subtract",
        **parameters: object,
    ) -> None:
        """Build the layer; the arguments are described on the class."""
        name = type(self).__name__
        names = [p for p, _, _ in self.specs]
        known = {*names, *(f"{p}_rank" for p in names), *(f"learn_{p}" for p in names)}
        unknown = sorted(set(parameters) - known)
        if unknown:
            raise TypeError(f"{name}: unexpected keyword argument(s) {unknown}")
        if not callable(spike_fn):
            raise TypeError(f"{name}: expected spike_fn to be callable, got {spike_fn!r}")
        if quant_fn is not None and not callable(quant_fn):
            raise TypeError(f"{name}: expected quant_fn to be callable or None, got {quant_fn!r}")
        if reset not in RESETS:
            raise ValueError(f"{name}: expected reset to be one of {RESETS}, got {reset!r}")
        if reset != "subtract" and self.config.firing == "none":
            raise ValueError(
                f"{name}: reset={reset!r} has no effect on a layer that does not fire; leave "
                f"it at its default"
            )
        for p in names:
            learnable = parameters.get(f"learn_{p}", True)
            if not isinstance(learnable, bool):
                raise TypeError(f"{name}: expected learn_{p} to be a bool, got {learnable!r}")
        super().__init__(num_neurons, dim=dim)
        register = {
            "decay": self._register_decay,
            "threshold": self._register_threshold,
            "free": self._register_bias,
        }
        for p, kind, default in self.specs:
            rank, learnable = parameters.get(f"{p}_rank", 1), parameters.get(f"learn_{p}", True)
            register[kind](p, parameters.get(p, default), rank, learnable)
        for state in state_names(self.config):
            self._initialize_state(state)
        self.spike_fn = spike_fn
        self.quant_fn = quant_fn
        self.reset = reset

    def forward(self, x: Tensor) -> Tensor:
        """One timestep: integrate ``x``, fire and reset; returns the output of this step.

        Args:
            x: The input current, ``(*, num_neurons, *)`` with the neurons at ``dim``.

        Returns:
            The spikes (firing kinds) or the membrane, shaped like ``x``.
        """
        x, states = self._read_states(x)
        params = self._parameter_values(x.dim())
        try:
            out, new = leaky_step(
                x, states, params, self.config, self.spike_fn, self.quant_fn, self.reset
            )
        except Exception as error:  # nothing was written: say why if the input explains it
            self._step_failed(x, states, error)
        self._write_states(new)
        return out

    def forward_sequence(self, xs: Tensor) -> Tensor:
        """A whole sequence at once: ``xs`` ``[T, *step_shape]`` in, the outputs out.

        Parameters are read once per sequence and the time loop runs with the states in
        local variables; for the common configurations (see
        :func:`tracetorch.autograd.scan_supported`) it is one autograd function whose
        backward is a hand-derived reverse-time loop (:class:`tracetorch.autograd.LeakyScan`).
        Equal to calling :meth:`forward` on each step; the states left are the last step's.
        """
        if not self._follows_step(LeakyIntegrator):  # a subclass redefined the step: loop over it
            return super().forward_sequence(xs)
        xs, states = self._read_sequence_states(xs)
        params = self._parameter_values(xs.dim() - 1)
        try:
            out, new = leaky_scan(
                xs, states, params, self.config, self.spike_fn, self.quant_fn, self.reset
            )
        except Exception as error:  # nothing was written: say why if the input explains it
            self._step_failed(xs[0], states, error)
        self._write_states(new)
        return out

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.config.firing != "none":
            quant = getattr(self.quant_fn, "__name__", repr(self.quant_fn))
            spike = getattr(self.spike_fn, "__name__", repr(self.spike_fn))
            text += f", spike_fn={spike}, quant_fn={quant}, reset={self.reset!r}"
        return text
