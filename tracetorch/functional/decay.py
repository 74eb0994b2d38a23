"""Converting decays to and from half-lives and time constants (in timesteps).

A decay ``d`` in ``(0, 1)`` multiplies a trace once per step. Its half-life is the number of
steps after which the trace has halved (``d ** h = 0.5``); its time constant in timesteps is
``n = 1 / (1 - d)`` (the length of the window an exponential moving average with weight ``d``
averages over). Each helper takes a float (returning a float) or a tensor (returning a tensor)
and rejects values outside its domain with a ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["decay_to_halflife", "decay_to_timesteps", "halflife_to_decay", "timesteps_to_decay"]

Value = TypeVar("Value", float, Tensor)


def _check(
    name: str, value: float | Tensor, arg: str, ok: Callable[[Tensor], Tensor], domain: str
) -> None:
    """Raise a ValueError unless every entry of ``value`` is a real number in ``domain``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"{name}: expected {arg} to be a float or a tensor, got {value!r}")
    tensor = torch.as_tensor(value, dtype=torch.float64)
    if not bool(ok(tensor).all()):  # NaN fails every comparison, so it lands here too
        raise ValueError(f"{name}: expected {arg} {domain}, got {value!r}")


def _in_unit_interval(d: Tensor) -> Tensor:
    return (d > 0) & (d < 1)


def halflife_to_decay(halflife: Value) -> Value:
    """The decay ``d`` that halves a trace in ``halflife`` steps: ``d = 0.5 ** (1 / halflife)``.

    Args:
        halflife: Steps to halve, ``> 0`` (need not be an integer).

    Raises:
        ValueError: ``halflife`` is not ``> 0``.

    Example:
        >>> from tracetorch.functional import halflife_to_decay
        >>> halflife_to_decay(1.0), round(halflife_to_decay(10.0), 5)
        (0.5, 0.93303)
    """
    _check("halflife_to_decay", halflife, "halflife", lambda h: (h > 0) & (h < math.inf), "> 0")
    return 0.5 ** (1 / halflife)


def decay_to_halflife(decay: Value) -> Value:
    """The number of steps a decay takes to halve a trace: ``log(0.5) / log(decay)``.

    Args:
        decay: The decay, in ``(0, 1)``.

    Raises:
        ValueError: ``decay`` is not in ``(0, 1)``.

    Example:
        >>> from tracetorch.functional import decay_to_halflife
        >>> decay_to_halflife(0.5)
        1.0
    """
    _check("decay_to_halflife", decay, "decay", _in_unit_interval, "in (0, 1)")
    if isinstance(decay, Tensor):
        return math.log(0.5) / torch.log(decay)
    return math.log(0.5) / math.log(decay)


def timesteps_to_decay(timesteps: Value) -> Value:
    """The decay whose time constant is ``timesteps`` steps: ``d = 1 - 1 / timesteps``.

    Args:
        timesteps: The time constant in steps, ``> 1`` (1 would mean no memory: ``d = 0``).

    Raises:
        ValueError: ``timesteps`` is not ``> 1``.

    Example:
        >>> from tracetorch.functional import timesteps_to_decay
        >>> timesteps_to_decay(10)
        0.9
    """
    _check("timesteps_to_decay", timesteps, "timesteps", lambda n: (n > 1) & (n < math.inf), "> 1")
    return 1 - 1 / timesteps


def decay_to_timesteps(decay: Value) -> Value:
    """The time constant of a decay, in steps: ``1 / (1 - decay)``.

    Args:
        decay: The decay, in ``(0, 1)``.

    Raises:
        ValueError: ``decay`` is not in ``(0, 1)``.

    Example:
        >>> from tracetorch.functional import decay_to_timesteps
        >>> decay_to_timesteps(0.75)
        4.0
    """
    _check("decay_to_timesteps", decay, "decay", _in_unit_interval, "in (0, 1)")
    return 1 / (1 - decay)
