"""Straight-through quantizers: discrete values forward, the gradient passed through unchanged.

Each factory returns a small callable object usable as a firing layer's ``quant_fn``
(``tt.snn.LIB(16, quant_fn=round_ste())``): its forward value is quantized, its backward is
the identity (``y = x + (q(x) - x).detach()``), so training sees the smooth ``spike_fn``
underneath. The objects compare by value, pickle, and print their settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "ProbabilisticSTE",
    "RoundSTE",
    "StochasticRoundSTE",
    "probabilistic_ste",
    "round_ste",
    "stochastic_round_ste",
]


def _check_step(name: str, step_size: float) -> float:
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)):
        raise TypeError(f"{name}: expected step_size to be a float, got {step_size!r}")
    if not 0 < step_size < float("inf"):
        raise ValueError(f"{name}: expected step_size > 0, got {step_size!r}")
    return float(step_size)


def _straight_through(x: Tensor, quantized: Tensor) -> Tensor:
    """``quantized`` forward, the gradient of ``x`` backward."""
    return x + (quantized - x).detach()


@dataclass(frozen=True)
class RoundSTE:
    """Rounds to the nearest multiple of ``step_size``; gradient passed straight through."""

    step_size: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_size", _check_step("round_ste", self.step_size))

    def __call__(self, x: Tensor) -> Tensor:
        step = self.step_size
        return _straight_through(x, torch.round(x.detach() / step) * step)


@dataclass(frozen=True)
class StochasticRoundSTE:
    """Rounds down or up to a multiple of ``step_size``, up with probability equal to the
    fractional part (unbiased: the expected output is ``x``); gradient passed straight through.
    """

    step_size: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_size", _check_step("stochastic_round_ste", self.step_size))

    def __call__(self, x: Tensor) -> Tensor:
        scaled = x.detach() / self.step_size
        low = torch.floor(scaled)
        up = torch.rand_like(scaled) < scaled - low
        return _straight_through(x, (low + up.to(low.dtype)) * self.step_size)


@dataclass(frozen=True)
class ProbabilisticSTE:
    """Keeps ``x`` with probability ``x`` and zeroes it otherwise (``x * bernoulli(x)``, for
    ``x`` in ``[0, 1]``; values outside are clamped when drawing); gradient passed straight
    through.
    """

    def __call__(self, x: Tensor) -> Tensor:
        kept = torch.bernoulli(x.detach().clamp(0, 1))
        return _straight_through(x, x.detach() * kept)


def round_ste(step_size: float = 1.0) -> RoundSTE:
    """A quantizer rounding to multiples of ``step_size``, with a straight-through gradient.

    Args:
        step_size: The spacing of the output values, ``> 0``.

    Returns:
        A callable ``x -> step_size * round(x / step_size)`` whose gradient is 1.

    Raises:
        ValueError: ``step_size`` is not ``> 0``.

    Example:
        >>> import torch
        >>> from tracetorch.functional import round_ste
        >>> x = torch.tensor([0.2, 0.7, 1.3], requires_grad=True)
        >>> y = round_ste(0.5)(x)
        >>> y
        tensor([0.0000, 0.5000, 1.5000], grad_fn=<AddBackward0>)
        >>> y.sum().backward(); x.grad
        tensor([1., 1., 1.])
    """
    return RoundSTE(step_size)


def stochastic_round_ste(step_size: float = 1.0) -> StochasticRoundSTE:
    """A quantizer rounding to a neighbouring multiple of ``step_size`` at random, up with
    probability equal to the fractional part, with a straight-through gradient.

    Args:
        step_size: The spacing of the output values, ``> 0``.

    Returns:
        A callable whose output is ``x`` on average and whose gradient is 1.

    Raises:
        ValueError: ``step_size`` is not ``> 0``.

    Example:
        >>> import torch
        >>> from tracetorch.functional import stochastic_round_ste
        >>> y = stochastic_round_ste()(torch.full((10000,), 0.25))
        >>> sorted(y.unique().tolist()), abs(y.mean().item() - 0.25) < 0.03
        ([0.0, 1.0], True)
    """
    return StochasticRoundSTE(step_size)


def probabilistic_ste() -> ProbabilisticSTE:
    """A quantizer emitting ``x * bernoulli(x)`` (``x`` with probability ``x``, else 0), with a
    straight-through gradient. Meant for firing probabilities in ``[0, 1]`` (the default
    ``spike_fn``, :func:`~tracetorch.functional.sigmoid4x`, produces them).

    Returns:
        A callable ``x -> x * bernoulli(x)`` whose gradient is 1.

    Example:
        >>> import torch
        >>> from tracetorch.functional import probabilistic_ste
        >>> probabilistic_ste()(torch.tensor([0.0, 1.0]))
        tensor([0., 1.])
    """
    return ProbabilisticSTE()
