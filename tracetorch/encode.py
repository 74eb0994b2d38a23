"""Spike encoders: turn static values or sequences into time-first spike trains.

A spiking network reads one timestep per call, so data has to become a sequence
``[T, *shape]`` first. Three common codes:

* :func:`rate` — every input fires at random, with its value as the probability per step:
  the information is in *how often* it fires.
* :func:`latency` — every input fires once, larger values earlier: the information is in
  *when* it fires.
* :func:`delta` — a sequence fires where it changes: the information is in *what changed*
  (like an event camera).

The encoders produce data, not a graph: no gradient flows back to their input. Their
outputs are floats of the input's dtype (integer and ``bool`` inputs give the default float
dtype), on the input's device, with time first.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["delta", "latency", "rate"]


def _float_data(name: str, x: object) -> Tensor:
    """``x`` detached, as a real floating tensor (integers and bools in the default dtype)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"{name}: expected a real tensor, got dtype {x.dtype}")
    x = x.detach()
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _check_unit_interval(name: str, x: Tensor, what: str = "x") -> None:
    """Raise unless every value of ``x`` lies in ``[0, 1]`` (NaN does not)."""
    if x.numel() and not ((x >= 0) & (x <= 1)).all():
        lo, hi = torch.aminmax(x)
        raise ValueError(
            f"{name}: expected {what} in [0, 1], got values in [{lo.item():.4g}, {hi.item():.4g}]; "
            f"scale the data first (for example x / x.max())"
        )


def _check_steps(name: str, steps: object) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"{name}: expected steps to be an int, got {steps!r}")
    if steps < 1:
        raise ValueError(f"{name}: expected steps >= 1, got {steps}")
    return steps


def _check_number(name: str, value: object, what: str, low: float, high: float, text: str) -> float:
    """``value`` as a float if it is a real number with ``low <= value < high``.

    Any real number is taken (``int``, ``float``, NumPy scalars such as ``np.float32``);
    ``bool`` is not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {what} to be a float, got {value!r}")
    if not low <= value < high:
        raise ValueError(f"{name}: expected {what} {text}, got {value!r}")
    return float(value)


def rate(
    x: Tensor, steps: int, *, gain: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Rate coding: at every step each input fires with probability ``gain * x``.

    Independent Bernoulli draws, one per step and input: over ``steps`` steps an input of
    value ``p`` fires about ``p * steps`` times, at random moments.

    Args:
        x: Values in ``[0, 1]``, of any shape.
        steps: Number of timesteps ``T``.
        gain: Scales the firing probability; ``gain * x`` must stay in ``[0, 1]``.
        generator: Random source, for spikes that repeat from run to run (it must live on
            ``x``'s device). ``None`` draws from PyTorch's global generator.

    Returns:
        Spikes (``0.`` or ``1.``) of shape ``[steps, *x.shape]``.

    Raises:
        ValueError: ``x`` or ``gain * x`` leaves ``[0, 1]``, or ``steps < 1``.

    Shape:
        ``x``: ``[*]``; output: ``[T, *]``.

    Example:
        >>> import torch
        >>> from tracetorch.encode import rate
        >>> generator = torch.Generator().manual_seed(0)
        >>> spikes = rate(torch.tensor([0.0, 0.5, 1.0]), steps=1000, generator=generator)
        >>> spikes.shape
        torch.Size([1000, 3])
        >>> spikes.mean(dim=0).round(decimals=1)
        tensor([0.0000, 0.5000, 1.0000])
    """
    steps = _check_steps("rate", steps)
    gain = _check_number("rate", gain, "gain", 0.0, math.inf, ">= 0 and finite")
    x = _float_data("rate", x)
    _check_unit_interval("rate", x)
    probability = x if gain == 1.0 else x * gain
    if gain > 1.0:
        _check_unit_interval("rate", probability, f"gain * x (gain={gain})")
    return torch.bernoulli(probability.expand(steps, *x.shape), generator=generator)


def latency(
    x: Tensor,
    steps: int,
    *,
    tau: float = 5.0,
    threshold: float = 0.01,
    normalize: bool = False,
    linear: bool = False,
) -> Tensor:
    """Latency coding: each input fires a single spike, the larger the value the earlier.

    By default the firing time is that of an RC circuit (a leaky integrator without leak
    current) charged by a constant input ``x`` from zero until it reaches ``threshold``::

        t = tau * log(x / (x - threshold))

    so ``x = 1`` fires almost at once and values just above ``threshold`` very late. With
    ``linear=True`` the time falls in a straight line instead, ``t = tau * (1 - x)``. The time
    is rounded to the nearest step; times beyond the window fire on the last step.

    Inputs at or below ``threshold`` never fire (their time would be infinite in the RC
    code): they carry no spike at all rather than a spurious one on the last step. Every
    other input fires exactly once.

    With ``normalize=True`` the times are stretched over the whole window and ``tau`` is
    not used: the linear code becomes ``t = (steps - 1) * (1 - x) / (1 - threshold)``
    (``x = 1`` on the first step, ``x`` near ``threshold`` on the last), and the RC code is
    scaled so that the latest spike of the tensor lands on the last step. The RC times grow
    without bound near the threshold, so that scale is taken from the data: a tensor's code
    then depends on its other entries (encode a whole dataset at once, or use the linear
    code, for a code that does not).

    Args:
        x: Values in ``[0, 1]``, of any shape.
        steps: Number of timesteps ``T``.
        tau: Time constant of the code, in steps (ignored when ``normalize``).
        threshold: Values at or below it never fire; ``0 < threshold < 1`` (``0`` is
            allowed with ``linear``).
        normalize: Stretch the times over all ``steps`` (see above).
        linear: Linear code instead of the RC code.

    Returns:
        Spikes (``0.`` or ``1.``) of shape ``[steps, *x.shape]``, at most one per input.

    Raises:
        ValueError: ``x`` leaves ``[0, 1]``, or an argument is out of range.

    Shape:
        ``x``: ``[*]``; output: ``[T, *]``.

    Example:
        >>> import torch
        >>> from tracetorch.encode import latency
        >>> x = torch.tensor([0.0, 0.25, 0.5, 1.0])
        >>> spikes = latency(x, steps=5, normalize=True, linear=True, threshold=0.0)
        >>> spikes.T  # one row per input: 1.0 fires first, 0.0 never
        tensor([[0., 0., 0., 0., 0.],
                [0., 0., 0., 1., 0.],
                [0., 0., 1., 0., 0.],
                [1., 0., 0., 0., 0.]])
        >>> x = torch.tensor([0.0, 0.02, 0.05, 0.2, 1.0])
        >>> latency(x, steps=6).T  # the RC code, tau=5: small values spread, large ones early
        tensor([[0., 0., 0., 0., 0., 0.],
                [0., 0., 0., 1., 0., 0.],
                [0., 1., 0., 0., 0., 0.],
                [1., 0., 0., 0., 0., 0.],
                [1., 0., 0., 0., 0., 0.]])
    """
    steps = _check_steps("latency", steps)
    tau = _check_number("latency", tau, "tau", math.ulp(0.0), math.inf, "> 0 and finite")
    lowest = 0.0 if linear else math.ulp(0.0)
    threshold = _check_number(
        "latency", threshold, "threshold", lowest, 1.0, "in [0, 1)" if linear else "in (0, 1)"
    )
    x = _float_data("latency", x)
    _check_unit_interval("latency", x)
    fires = x > threshold
    value = torch.where(fires, x, torch.ones_like(x))  # a harmless value for silent inputs
    if linear:
        scale = (steps - 1) / (1 - threshold) if normalize else tau
        times = scale * (1 - value)
    else:
        times = torch.log(value / (value - threshold))
        if normalize:
            latest = times[fires].max() if fires.any() else times.new_ones(())
            # all firing times rounded to 0 (a threshold far below the values): all fire first
            times = times * ((steps - 1) / latest) if latest > 0 else torch.zeros_like(times)
        else:
            times = tau * times
    index = times.round().clamp(max=steps - 1).long()
    spikes = x.new_zeros(steps, *x.shape)
    return spikes.scatter_(0, index.unsqueeze(0), fires.unsqueeze(0).to(x.dtype))


def delta(xs: Tensor, threshold: float = 0.1, *, off_spikes: bool = False) -> Tensor:
    """Delta modulation: a spike wherever a sequence rises by more than ``threshold``.

    Each step is compared with the previous one: ``xs[t] - xs[t - 1] > threshold`` fires
    ``1``. With ``off_spikes=True`` a fall by more than ``threshold`` fires ``-1`` too. The
    first step has nothing to compare with and never fires; to signal the onset of a
    sequence, put a step of zeros before it (and drop it from the output)::

        delta(torch.cat([torch.zeros_like(xs[:1]), xs]))[1:]

    Args:
        xs: A time-first sequence ``[T, *]``.
        threshold: The change a step must exceed to fire, ``>= 0``.
        off_spikes: Also signal falls, with ``-1``.

    Returns:
        Spikes of ``xs``'s shape: ``0.`` or ``1.`` (``-1.`` too with ``off_spikes``).

    Raises:
        ValueError: ``xs`` is 0-d or holds a NaN or an infinity, or ``threshold`` is out of
            range.

    Shape:
        ``xs``: ``[T, *]``; output: ``[T, *]``.

    Example:
        >>> import torch
        >>> from tracetorch.encode import delta
        >>> xs = torch.tensor([0.0, 0.5, 0.55, 1.0, 0.2])
        >>> delta(xs, threshold=0.1)
        tensor([0., 1., 0., 1., 0.])
        >>> delta(xs, threshold=0.1, off_spikes=True)
        tensor([ 0.,  1.,  0.,  1., -1.])
    """
    threshold = _check_number("delta", threshold, "threshold", 0.0, math.inf, ">= 0 and finite")
    xs = _float_data("delta", xs)
    if xs.dim() == 0:
        raise ValueError("delta: expected a time-first sequence [T, *], got a 0-d tensor")
    if not torch.isfinite(xs).all():
        raise ValueError(
            "delta: expected finite values, got NaN or infinity (a NaN compares as no change, "
            "so its spikes would be silently lost)"
        )
    change = torch.diff(xs, dim=0, prepend=xs[:1])
    spikes = (change > threshold).to(xs.dtype)
    if off_spikes:
        spikes = spikes - (change < -threshold).to(xs.dtype)
    return spikes
