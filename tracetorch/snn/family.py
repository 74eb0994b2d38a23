"""The public names of the leaky-integrator family, and :class:`LIF`.

``[D][S][R]LI<kind>``, every prefix optional and in this order: ``D`` dual (positive and
negative input in separate traces), ``S`` synaptic trace, ``R`` recurrent trace, and the kind
``LI`` (no firing: returns the membrane), ``LIEMA`` (membrane as a moving average), ``LIB``
(binary firing), ``LIT`` (ternary), ``LITS`` (ternary with learnable output scales). ``R``
needs a firing kind. Each name is a configuration of :class:`~tracetorch.snn.leaky.
LeakyIntegrator` built by :func:`_configure`, with the constructor signature (argument names,
order and defaults) of traceTorch 0.19.2 and a docstring generated from its parameters.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable

from torch import Tensor

from ..autograd.surrogate import SURROGATES, spike_fn
from ..functional.leaky import LeakyConfig
from .leaky import DEFAULT_SPIKE, LeakyIntegrator, parameter_specs, state_names

NAMES = (
    *("LI", "DLI", "SLI", "DSLI", "LIEMA", "DLIEMA", "SLIEMA", "DSLIEMA"),
    *("LIB", "DLIB", "SLIB", "RLIB", "DSLIB", "DRLIB", "SRLIB", "DSRLIB"),
    *("LIT", "DLIT", "SLIT", "RLIT", "DSLIT", "DRLIT", "SRLIT", "DSRLIT"),
    *("LITS", "DLITS", "SLITS", "RLITS", "DSLITS", "DRLITS", "SRLITS", "DSRLITS"),
)

__all__ = [*NAMES, "LIF", "config_from_name"]

_KINDS = {"": "none", "EMA": "none", "B": "binary", "T": "ternary", "TS": "scaled"}
_NAME = re.compile(r"(D?)(S?)(R?)LI(EMA|B|TS|T|)")


def config_from_name(name: str) -> LeakyConfig:
    """The switches a family name stands for: ``"DSRLIB"`` -> dual, synaptic, recurrent, binary.

    Raises:
        ValueError: ``name`` is not a name of the family (``R`` needs a firing kind).
    """
    match = _NAME.fullmatch(name)
    if match is None or (match[3] and _KINDS[match[4]] == "none"):
        raise ValueError(f"{name!r} is not a leaky-integrator name; expected one of {NAMES}")
    dual, synaptic, recurrent, kind = match.groups()
    return LeakyConfig(bool(dual), bool(synaptic), bool(recurrent), kind == "EMA", _KINDS[kind])


# ------------------------------------------------------------------------------ docstrings

_MEANING = {
    "alpha": "Synaptic decay, in (0, 1).",
    "beta": "Membrane decay, in (0, 1).",
    "gamma": "Recurrent decay, in (0, 1).",
    "threshold": "Firing threshold, > 0.",
    "pos_threshold": "Threshold of the +1 spikes (``mem > pos_threshold``), > 0.",
    "neg_threshold": "Threshold of the -1 spikes (``mem < -neg_threshold``), > 0.",
    "bias": "Added to the membrane before firing (unconstrained).",
    "pos_scale": "Output value of a +1 spike (unconstrained).",
    "neg_scale": "Output magnitude of a -1 spike (unconstrained).",
    "rec_weight": "Weight of the recurrent trace into the membrane (unconstrained).",
    "pos_rec_weight": "Weight of the positive part of the recurrent trace (unconstrained).",
    "neg_rec_weight": "Weight of the negative part of the recurrent trace (unconstrained).",
}
for _decay, _what in (("alpha", "Synaptic"), ("beta", "Membrane"), ("gamma", "Recurrent")):
    for _sign, _trace in (("pos", "positive"), ("neg", "negative")):
        _MEANING[f"{_sign}_{_decay}"] = f"{_what} decay of the {_trace} trace, in (0, 1)."
_KIND_TEXT = {
    "none": "without firing: returns its membrane",
    "binary": "with binary firing (spikes in {0, 1}, reset by subtraction by default)",
    "ternary": "with ternary firing (spikes in {-1, 0, 1}, reset by subtraction by default)",
    "scaled": "with ternary firing scaled by learnable output values (reset by subtraction by "
    "default)",
}


def _entry(label: str, text: str) -> list[str]:
    """An ``Args:`` entry wrapped to the line length, continuation lines indented."""
    return textwrap.wrap(
        f"{label}: {text}", 96, initial_indent="    ", subsequent_indent="        "
    )


def _docstring(name: str, config: LeakyConfig, specs) -> str:
    """The class docstring of a family member, generated from its switches and parameters."""
    switches = [
        ("dual", "positive and negative input integrate in separate traces (``pos_``/``neg_``)"),
        ("synaptic", "the input first passes through a synaptic trace ``syn`` (decay ``alpha``)"),
        ("recurrent", "the previous output feeds back through a recurrent trace ``rec``"),
        ("ema", "the membrane is a moving average: ``mem = beta*mem + (1-beta)*input``"),
    ]
    used = [text for flag, text in switches if getattr(config, flag)]
    adjectives = ", ".join(flag for flag, _ in switches[:3] if getattr(config, flag))
    title = f"{adjectives} leaky integrator" if adjectives else "Leaky integrator"
    lines = [f"{title[0].upper()}{title[1:]} {_KIND_TEXT[config.firing]}.", ""]
    lines += [f"- {text}." for text in used] + [""] * bool(used)
    lines += [
        "One call is one timestep; the dynamics are :func:`tracetorch.functional.leaky_step`.",
        "",
        "Args:",
        "    num_neurons: Number of neurons (features at ``dim``).",
    ]
    for p, _, default in specs:
        lines += _entry(p, f"{_MEANING[p]} Default: ``{default}``.")
    lines += _entry("dim", "The feature dimension of the input (``-3``: channels of NCHW).")
    lines += _entry(
        "p_rank",
        "For each parameter ``p`` above: 0 for one value shared by the layer, 1 (default) "
        "for one value per neuron.",
    )
    lines += _entry(
        "learn_p",
        "For each parameter ``p`` above: learn it (default) or keep it fixed in a buffer.",
    )
    if config.firing != "none":
        lines += _entry(
            "spike_fn",
            "Maps ``membrane - threshold`` to a firing value. Default: a hard spike "
            "(``tt.autograd.spike_fn('atan')``: exactly 0 or 1 forward, the arctan surrogate "
            "derivative backward); :func:`~tracetorch.functional.sigmoid4x` gives smooth "
            "firing instead.",
        )
        lines += _entry(
            "quant_fn",
            "Applied to the firing value (default ``None``: identity), e.g. "
            ":func:`~tracetorch.functional.round_ste`.",
        )
        lines += _entry(
            "reset",
            "What a spike does to the membrane: ``'subtract'`` (default) subtracts the "
            "threshold, ``'zero'`` sets it to 0 where a spike fired, ``'none'`` leaves it; "
            "see :func:`~tracetorch.functional.leaky_step`.",
        )
    states = state_names(config)
    lines += [
        "",
        "Shape:",
        "    - Input: ``(*, num_neurons, *)`` with the neurons at ``dim``.",
        "    - Output: same shape as the input.",
        "",
        *textwrap.wrap(
            f"States: {', '.join(f'``{s}``' for s in states)} (``None`` until the first forward).",
            100,
        ),
        "",
        "Example:",
        "    >>> import torch, tracetorch as tt",
        f"    >>> layer = tt.snn.{name}(4)",
        "    >>> for t in range(3):",
        "    ...     y = layer(torch.rand(2, 4))",
        "    >>> y.shape, layer.state_names",
        f"    (torch.Size([2, 4]), {states!r})",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the classes


def _signature(config: LeakyConfig, specs) -> inspect.Signature:
    """``(self, num_neurons, <values>, dim, <ranks>, <learn flags>[, <firing arguments>])``.

    The firing arguments (firing kinds only) are ``spike_fn``, ``quant_fn`` and ``reset``.
    """

    def arg(name: str, default: object = inspect.Parameter.empty, annotation: object = None):
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Parameter(name, kind, default=default, annotation=annotation)

    args = [arg("self", annotation=inspect.Parameter.empty), arg("num_neurons", annotation=int)]
    args += [arg(p, v, float | Tensor) for p, _, v in specs]
    args.append(arg("dim", -1, int))
    args += [arg(f"{p}_rank", 1, int) for p, _, _ in specs]
    args += [arg(f"learn_{p}", True, bool) for p, _, _ in specs]
    if config.firing != "none":
        args.append(arg("spike_fn", DEFAULT_SPIKE, Callable[[Tensor], Tensor]))
        args.append(arg("quant_fn", None, Callable[[Tensor], Tensor] | None))
        args.append(arg("reset", "subtract", str))
    return inspect.Signature(args, return_annotation=None)


def _configure(name: str) -> type[LeakyIntegrator]:
    """The family member ``name``: a :class:`LeakyIntegrator` subclass with its signature."""
    config = config_from_name(name)
    specs = parameter_specs(config)
    signature = _signature(config, specs)

    def __init__(self, *args, **kwargs) -> None:  # noqa: N807 (a generated method)
        try:
            arguments = signature.bind(self, *args, **kwargs).arguments
        except TypeError as error:
            raise TypeError(f"{type(self).__name__}: {error}") from None
        del arguments["self"]
        LeakyIntegrator.__init__(self, **arguments)

    __init__.__signature__ = signature
    __init__.__doc__ = f"Build a {name} layer; the arguments are described on the class."
    __init__.__qualname__ = f"{name}.__init__"
    namespace = {
        "__init__": __init__,
        "__doc__": _docstring(name, config, specs),
        "__module__": __name__,
        "__qualname__": name,
        "config": config,
        "specs": specs,
    }
    return type(name, (LeakyIntegrator,), namespace)


# Every name of the family, made from its switches (listed once, in NAMES).
for _name in NAMES:
    globals()[_name] = _configure(_name)
del _name


class LIF(LeakyIntegrator):
    """Leaky integrate-and-fire neuron with hard spikes and a surrogate gradient.

    ``mem = beta*mem + x``; ``spike = heaviside(mem - threshold)`` (exactly 0 or 1 forward, the
    ``surrogate`` derivative backward, see :func:`tracetorch.autograd.heaviside`);
    ``mem = mem - spike*threshold`` (reset by subtraction; ``reset="zero"`` sets the membrane
    to 0 where a spike fired instead, ``reset="none"`` leaves it); returns ``spike``. This is
    :class:`LIB` with ``spike_fn=tt.autograd.spike_fn(surrogate, slope)`` and no bias (the
    layer before it usually has one), the default neuron of snnTorch and Norse.

    Coming from snnTorch, ``snn.Leaky(beta=0.9, threshold=1.0,
    spike_grad=surrogate.atan(alpha=2.0), reset_mechanism="subtract")`` corresponds to
    ``tt.snn.LIF(num_neurons, beta=0.9, threshold=1.0, surrogate="atan", slope=2.0)``: the
    same decay, threshold, Heaviside forward and arctan surrogate. Differences: the membrane
    is kept inside the layer (no ``mem`` argument or return; see :meth:`zero_states`); beta
    and threshold are per neuron and learnable by default (``beta_rank=0, threshold_rank=0,
    learn_beta=False, learn_threshold=False`` give snnTorch's one fixed value of each); and
    the reset is subtracted in the step that fires, where snnTorch subtracts it in the next
    step's update (so there the subtracted threshold is not decayed first).
    ``reset_mechanism="zero", reset_delay=False`` corresponds to ``reset="zero"``.

    Coming from Norse, ``LIFBoxCell`` integrates ``v += dt * tau_mem_inv * (i - v)``: that is
    ``beta = 1 - dt * tau_mem_inv`` with the input scaled by ``1 - beta``, and a reset to
    ``v_reset`` instead of a subtraction (``reset="zero"`` when ``v_reset`` is 0).

    Args:
        num_neurons: Number of neurons (features at ``dim``).
        beta: Membrane decay in (0, 1). Default: ``0.9``.
        threshold: Firing threshold, > 0. Default: ``1.0``.
        dim: The feature dimension of the input (``-3`` for channels of ``[B, C, H, W]``).
        beta_rank, threshold_rank: 0 for one value shared by the layer, 1 (default) for one
            per neuron.
        learn_beta, learn_threshold: Learn the parameter (default) or keep it fixed.
        surrogate: The surrogate derivative by name: ``"atan"`` (default),
            ``"fast_sigmoid"``, ``"triangle"``, ``"straight_through"``.
        slope: Sharpness of the surrogate (``None``: its default).
        reset: ``"subtract"`` (default), ``"zero"`` or ``"none"``; see
            :func:`tracetorch.functional.leaky_step`.

    Shape:
        - Input: ``(*, num_neurons, *)`` with the neurons at ``dim``.
        - Output: same shape as the input, values in ``{0, 1}``.

    States: ``mem`` (``None`` until the first forward).

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.snn.LIF(3, beta=0.5, threshold=1.0, learn_beta=False)
        >>> [layer(torch.full((1, 3), 0.6)).tolist() for t in range(3)]
        [[[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]]]
    """

    config = LeakyConfig(firing="binary")
    specs = tuple(spec for spec in parameter_specs(config) if spec.name != "bias")

    def __init__(
        self,
        num_neurons: int,
        beta: float | Tensor = 0.9,
        threshold: float | Tensor = 1.0,
        dim: int = -1,
        beta_rank: int = 1,
        threshold_rank: int = 1,
        learn_beta: bool = True,
        learn_threshold: bool = True,
        surrogate: str = "atan",
        slope: float | None = None,
        reset: str = "subtract",
    ) -> None:
        """Build the layer; the arguments are described on the class."""
        if surrogate not in SURROGATES:
            raise ValueError(
                f"{type(self).__name__}: unknown surrogate {surrogate!r}; expected one of "
                f"{sorted(SURROGATES)}"
            )
        try:
            spike = spike_fn(surrogate, slope)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {error}") from None
        super().__init__(
            num_neurons,
            dim,
            spike,
            beta=beta,
            threshold=threshold,
            beta_rank=beta_rank,
            threshold_rank=threshold_rank,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
            reset=reset,
        )
