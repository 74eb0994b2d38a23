"""Spikes: a Heaviside step forward with a smooth surrogate derivative backward.

The forward pass emits ``1.0`` where ``x > 0`` and ``0.0`` elsewhere (so ``x == 0`` does not
spike), in the dtype of ``x``. The true derivative of a step is zero almost everywhere, so the
backward pass uses the derivative ``d(x, slope)`` of a smooth stand-in instead:

==================== ========================================== =============
name                 ``d(x, slope)``                            default slope
==================== ========================================== =============
``fast_sigmoid``     ``1 / (slope |x| + 1)**2``                 25.0
``atan``             ``(slope / 2) / (1 + (pi/2 slope x)**2)``  2.0
``triangle``         ``slope * max(0, 1 - slope |x|)``          1.0
``straight_through`` ``1``                                      1.0 (ignored)
==================== ========================================== =============

Each ``d`` is the derivative of a smooth primitive ``P`` (what the spike "pretends" to be in
the backward pass): ``x / (1 + slope |x|)``, ``atan(pi/2 slope x) / pi``,
``slope u - slope**2 u |u| / 2`` with ``u = clamp(x, -1/slope, 1/slope)``, and ``x``.

Forward mode (``torch.func.jacfwd``, dual tensors) uses the same ``d``: the tangent of the
spikes is ``d(x, slope)`` times that of ``x``.

Layers typically call ``heaviside(v - threshold)`` or take a ``spike_fn`` built by
:func:`spike_fn`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd import forward_ad

from .function import _transformed, apply

__all__ = ["SURROGATES", "Heaviside", "SpikeFn", "Surrogate", "heaviside", "spike_fn"]


class Surrogate(NamedTuple):
    """A surrogate gradient: its derivative ``d(x, slope)`` and the slope used by default.

    ``d`` returns a tensor of ``x``'s shape (sequence mode's backward reads it step by step).
    """

    derivative: Callable[[Tensor, float], Tensor]
    default_slope: float


def _fast_sigmoid(x: Tensor, slope: float) -> Tensor:
    return 1 / (slope * x.abs() + 1) ** 2


def _atan(x: Tensor, slope: float) -> Tensor:
    return (slope / 2) / (1 + (math.pi / 2 * slope * x) ** 2)


def _triangle(x: Tensor, slope: float) -> Tensor:
    return slope * (1 - slope * x.abs()).clamp(min=0)


def _straight_through(x: Tensor, slope: float) -> Tensor:
    return torch.ones_like(x)


# The derivatives above computed in place, overwriting x: the same operations in the same
# order (``a ** 2`` is ``a * a``, ``c / a`` is ``a.reciprocal() * c`` and ``1 - a`` is
# ``-a + 1``, exactly), so the same values bit for bit, without temporaries. For callers that
# own x and do not differentiate the result (LeakyScan's backward); see _IN_PLACE.


def _fast_sigmoid_(x: Tensor, slope: float) -> Tensor:
    d = x.abs_().mul_(slope).add_(1)
    return d.mul_(d).reciprocal_()


def _atan_(x: Tensor, slope: float) -> Tensor:
    d = x.mul_(math.pi / 2 * slope)
    return d.mul_(d).add_(1).reciprocal_().mul_(slope / 2)


def _triangle_(x: Tensor, slope: float) -> Tensor:
    return x.abs_().mul_(slope).neg_().add_(1).clamp_(min=0).mul_(slope)


def _straight_through_(x: Tensor, slope: float) -> Tensor:
    return x.fill_(1)


SURROGATES: dict[str, Surrogate] = {
    "fast_sigmoid": Surrogate(_fast_sigmoid, 25.0),
    "atan": Surrogate(_atan, 2.0),
    "triangle": Surrogate(_triangle, 1.0),
    "straight_through": Surrogate(_straight_through, 1.0),
}
"""Surrogates by name: ``name -> (derivative d(x, slope), default slope)``.

Add an entry to make a new surrogate available by name to :func:`heaviside`.
"""

# The built-in derivatives computed in place: d -> d_ with d_(x, slope) equal to d(x, slope)
# bit for bit, overwriting x. Keyed by the function, so that a derivative registered in
# SURROGATES under a built-in name is not replaced by the built-in's.
_IN_PLACE: dict[Callable[[Tensor, float], Tensor], Callable[[Tensor, float], Tensor]] = {
    _fast_sigmoid: _fast_sigmoid_,
    _atan: _atan_,
    _triangle: _triangle_,
    _straight_through: _straight_through_,
}


def _resolve(surrogate: str, slope: float | None) -> tuple[Surrogate, float]:
    """Looks up a surrogate by name and fills in its default slope when ``slope`` is None."""
    if surrogate not in SURROGATES:
        raise ValueError(
            f"heaviside: unknown surrogate {surrogate!r}; expected one of {sorted(SURROGATES)}"
        )
    entry = SURROGATES[surrogate]
    if slope is None:
        return entry, float(entry.default_slope)
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not 0 < slope < math.inf:
        raise ValueError(
            f"heaviside: expected slope to be a finite number > 0 (or None for the default "
            f"{entry.default_slope}), got {slope!r}"
        )
    return entry, float(slope)


class _TraceableHeaviside(torch.autograd.Function):
    """:class:`Heaviside` without its forward-mode rule: what ``torch.compile`` traces.

    Dynamo cannot trace an ``autograd.Function`` that defines ``jvp`` (it breaks the graph,
    and ``fullgraph=True`` fails), so compiled code takes this one.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, surrogate: str, slope: float | None) -> Tensor:
        _resolve(surrogate, slope)  # fail on a bad name before computing anything
        return (x > 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, str, float | None], output: Tensor) -> None:
        x, surrogate, slope = inputs
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.slope = _resolve(surrogate, slope)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.derivative(x, ctx.slope), None, None


class Heaviside(_TraceableHeaviside):
    """Heaviside step ``(x > 0)`` forward, surrogate derivative backward.

    ``Heaviside.apply(x, surrogate, slope)`` takes the surrogate's name (a key of
    :data:`SURROGATES`) and its slope (``None`` for the default). The backward is
    ``grad_output * d(x, slope)``; neither ``surrogate`` nor ``slope`` receives a gradient.
    Forward mode (dual tensors of ``torch.autograd.forward_ad``, ``torch.func.jvp`` and
    ``jacfwd``) uses the same derivative: the tangent is ``x_tangent * d(x, slope)``, so
    ``jacfwd`` and ``jacrev`` agree. Dynamo cannot trace a Function that has a forward-mode
    rule: under ``torch.compile``, ``Heaviside.apply`` breaks the graph (``fullgraph=True``
    fails) and runs eagerly, while :func:`heaviside` and :class:`SpikeFn` trace a twin of
    this class without the rule. Where forward mode runs (the twin's derivative would be
    zero) they raise a ``NotImplementedError`` while tracing, so that dynamo runs that part
    eagerly, or names the reason under ``fullgraph=True``.
    """

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, str, float | None], output: Tensor) -> None:
        _TraceableHeaviside.setup_context(ctx, inputs, output)
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def jvp(ctx: Any, x_tangent: Tensor, surrogate: None, slope: None) -> Tensor:
        (x,) = ctx.saved_tensors
        return x_tangent * ctx.surrogate.derivative(x, ctx.slope)


def heaviside(x: Tensor, surrogate: str = "atan", slope: float | None = None) -> Tensor:
    """Emits spikes ``(x > 0)`` with a surrogate gradient.

    Args:
        x: Input, typically ``membrane - threshold``; any shape, floating dtype.
        surrogate: Name of the surrogate derivative, one of ``"fast_sigmoid"``, ``"atan"``,
            ``"triangle"``, ``"straight_through"`` (any key of :data:`SURROGATES`).
        slope: Sharpness of the surrogate; ``None`` uses the surrogate's default.

    Returns:
        Tensor of ``0.0``/``1.0`` with the shape and dtype of ``x``.

    Raises:
        ValueError: If ``surrogate`` is not a known name.

    Example:
        >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
        >>> heaviside(x, "triangle", slope=1.0)
        tensor([0., 0., 1.], grad_fn=<HeavisideBackward>)
        >>> heaviside(x, "triangle", slope=1.0).sum().backward()
        >>> x.grad  # slope * max(0, 1 - slope * |x|)
        tensor([0.5000, 1.0000, 0.5000])
    """
    _resolve(surrogate, slope)
    return _spike(x, surrogate, slope)


def _spike(x: Tensor, surrogate: str, slope: float | None) -> Tensor:
    if _undifferentiated():
        # no_grad / inference_mode with no tangents about: nothing will be differentiated, so
        # skip the autograd.Function machinery (most of a spiking step's cost at batch 1).
        return _above(x, 0)
    if torch.compiler.is_compiling():
        if forward_ad._current_level >= 0:  # a dual level: dual tensors, torch.func.jvp/jacfwd
            raise NotImplementedError(
                "heaviside: forward-mode differentiation (dual tensors, torch.func.jvp or "
                "jacfwd) of spikes does not run under torch.compile, which cannot trace the "
                "spike's forward-mode rule; run it outside torch.compile (jacrev and "
                "backward compile)"
            )
        return _TraceableHeaviside.apply(x, surrogate, slope)
    return apply(Heaviside, x, surrogate, slope)


def _undifferentiated() -> bool:
    """Whether nothing can differentiate a spike taken now, so it may be a bare comparison.

    True when autograd records nothing and no tangents can flow: no dual level
    (``torch.autograd.forward_ad.dual_level()``) and no ``torch.func`` transform (``jacfwd``
    runs forward mode under ``no_grad`` too, and ``torch.func.grad`` turns grad on).
    """
    return not torch.is_grad_enabled() and not _transformed()


def _above(v: Tensor, threshold: Tensor | float) -> Tensor:
    """``(v > threshold)`` as ``0.0``/``1.0`` in ``v``'s dtype: one comparison kernel.

    The comparison writes straight into a float tensor: no bool-to-float copy. ``threshold``
    must broadcast to ``v``'s shape. Under ``torch.compile``, which fuses the plain form
    anyway, it is ``(v > threshold).to(v.dtype)``.
    """
    if torch.compiler.is_compiling():
        return (v > threshold).to(v.dtype)
    return torch.gt(v, threshold, out=torch.empty_like(v))


@dataclass(frozen=True)
class SpikeFn:
    """A spike function ``x -> heaviside(x, surrogate, slope)`` with a fixed surrogate.

    Made by :func:`spike_fn`; it compares equal by value, pickles, and prints its settings.

    Attributes:
        surrogate: Name of the surrogate derivative.
        slope: Slope of the surrogate (the default already filled in).
    """

    surrogate: str = "atan"
    slope: float | None = None

    def __post_init__(self) -> None:
        _, slope = _resolve(self.surrogate, self.slope)
        object.__setattr__(self, "slope", slope)

    def __call__(self, x: Tensor) -> Tensor:
        return _spike(x, self.surrogate, self.slope)

    def above(self, v: Tensor, threshold: Tensor | float) -> Tensor:
        """``self(v - threshold)``: the spikes of a membrane ``v`` against a threshold.

        While nothing differentiates the spikes (autograd records nothing, no dual tensors,
        no ``torch.func`` transform) and ``threshold`` has ``v``'s dtype, one comparison
        ``v > threshold`` instead of a subtraction and a comparison: the same spikes, bit for
        bit (in IEEE arithmetic ``v - threshold > 0`` exactly when ``v > threshold``, and NaN
        spikes in neither). :func:`~tracetorch.functional.leaky_step` calls it where a spike
        function has it; ``threshold`` (a tensor or a number) must broadcast to ``v``'s shape.

        Example:
            >>> fn = spike_fn()
            >>> with torch.no_grad():
            ...     fn.above(torch.tensor([0.5, 1.0, 1.5]), torch.tensor(1.0))
            tensor([0., 0., 1.])
        """
        if not _undifferentiated() or (
            isinstance(threshold, Tensor) and threshold.dtype != v.dtype
        ):
            return self(v - threshold)
        return _above(v, threshold)


def spike_fn(surrogate: str = "atan", slope: float | None = None) -> SpikeFn:
    """Makes a spike function with a fixed surrogate, e.g. for a layer's ``spike_fn``.

    Args:
        surrogate: Name of the surrogate derivative (a key of :data:`SURROGATES`).
        slope: Slope of the surrogate; ``None`` uses the surrogate's default.

    Returns:
        A callable ``x -> heaviside(x, surrogate, slope)``.

    Raises:
        ValueError: If ``surrogate`` is not a known name (raised here, not at the first call).

    Example:
        >>> fn = spike_fn("fast_sigmoid")
        >>> fn
        SpikeFn(surrogate='fast_sigmoid', slope=25.0)
        >>> fn(torch.tensor([-1.0, 1.0]))
        tensor([0., 1.])
    """
    return SpikeFn(surrogate, slope)
