"""Losses and regularizers for spiking outputs recorded over time.

Every function takes time-first tensors: the outputs of a layer stacked over the steps of a
sequence, ``[T, B, C]`` (timesteps, batch, classes or neurons), such as
``torch.stack([net(x) for x in inputs])``. Classification losses also take ``target``, one
class index per sequence (``[B]``, an integer tensor), and return the mean over the batch.

* :func:`rate_cross_entropy` and :func:`count_mse` read the spike *counts*: the right class
  should fire most.
* :func:`membrane_cross_entropy` reads a non-firing read-out (``tt.snn.LI``): its membrane
  is the logits.
* :func:`first_spike_time` reads the spike *times*: the right class should fire first.
* :func:`rate_l2` and :func:`sparsity` are regularizers that keep the firing of any layer
  near a rate, or low.

The losses are differentiable in their first argument: with spikes from a layer with a
surrogate gradient, the gradient reaches the network through the spikes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "count_mse",
    "first_spike_time",
    "membrane_cross_entropy",
    "rate_cross_entropy",
    "rate_l2",
    "sparsity",
]


def _check_recording(name: str, x: object, what: str, classes: bool = True) -> Tensor:
    """Raise unless ``x`` is a floating tensor ``[T, B, C]`` (``[T, B, *]`` if not ``classes``)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected {what} to be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name}: expected {what} to be a floating-point tensor, got dtype {x.dtype}"
        )
    layout = "[T, B, C]" if classes else "[T, B, *]"
    if (x.dim() != 3) if classes else (x.dim() < 2):
        raise ValueError(
            f"{name}: expected {what} of shape {layout} (time first), got shape {tuple(x.shape)}; "
            f"stack the outputs of every step with torch.stack(outputs)"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one timestep, got {what} of shape (0, ...)")
    return x


def _check_target(name: str, target: object, x: Tensor, what: str) -> Tensor:
    """Raise unless ``target`` holds one class index in ``[0, C)`` per sequence of ``x``."""
    _, batch, classes = x.shape
    if not isinstance(target, Tensor) or target.is_floating_point() or target.is_complex():
        got = f"dtype {target.dtype}" if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(
            f"{name}: expected target to be an integer tensor of class indices, got {got}"
        )
    if target.shape != (batch,):
        raise ValueError(
            f"{name}: expected target of shape [B] = [{batch}] (one class index per sequence of "
            f"{what} {tuple(x.shape)}), got shape {tuple(target.shape)}"
        )
    if batch and (target.min() < 0 or target.max() >= classes):
        raise ValueError(
            f"{name}: expected class indices in [0, {classes - 1}] ({what} has {classes} "
            f"classes), got values in [{target.min().item()}, {target.max().item()}]"
        )
    return target.long()


def _check_float(name: str, value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected {what} to be a float, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected {what} to be finite, got {value!r}")
    return float(value)


def rate_cross_entropy(spikes: Tensor, target: Tensor) -> Tensor:
    """Cross entropy of the spike counts, read as logits.

    ``cross_entropy(spikes.sum(0), target)``: the count of every output over the sequence is
    its score, so the right class is pushed to fire more and the others less.

    Args:
        spikes: Output spikes ``[T, B, C]``.
        target: Class index of every sequence, ``[B]``.

    Returns:
        The mean loss over the batch (a scalar).

    Example:
        >>> import torch
        >>> from tracetorch.loss import rate_cross_entropy
        >>> spikes = torch.zeros(10, 1, 3)
        >>> spikes[:, 0, 1] = 1.0  # class 1 fires at every step
        >>> rate_cross_entropy(spikes, torch.tensor([1])) < rate_cross_entropy(
        ...     spikes, torch.tensor([0]))
        tensor(True)
    """
    spikes = _check_recording("rate_cross_entropy", spikes, "spikes")
    target = _check_target("rate_cross_entropy", target, spikes, "spikes")
    return F.cross_entropy(spikes.sum(dim=0), target)


def count_mse(
    spikes: Tensor, target: Tensor, correct_rate: float = 0.8, incorrect_rate: float = 0.2
) -> Tensor:
    """Mean squared error between the spike counts and target counts.

    The right class of a sequence should fire ``correct_rate * T`` times, every other class
    ``incorrect_rate * T`` times. Asking for some firing of the wrong classes (rather than
    none) keeps their neurons active, so they keep receiving gradient. The loss is
    ``mean((spikes.sum(0) - counts) ** 2)`` over batch and classes; it grows with ``T ** 2``.

    Args:
        spikes: Output spikes ``[T, B, C]``.
        target: Class index of every sequence, ``[B]``.
        correct_rate: Wanted firing rate of the right class, spikes per step.
        incorrect_rate: Wanted firing rate of the other classes, spikes per step.

    Returns:
        The loss (a scalar).

    Example:
        >>> import torch
        >>> from tracetorch.loss import count_mse
        >>> spikes = torch.zeros(10, 1, 2)
        >>> spikes[:8, 0, 0] = 1.0  # 8 spikes of class 0,
        >>> spikes[:2, 0, 1] = 1.0  # 2 of class 1: exactly the wanted counts
        >>> count_mse(spikes, torch.tensor([0]))
        tensor(0.)
    """
    spikes = _check_recording("count_mse", spikes, "spikes")
    target = _check_target("count_mse", target, spikes, "spikes")
    correct = _check_float("count_mse", correct_rate, "correct_rate")
    incorrect = _check_float("count_mse", incorrect_rate, "incorrect_rate")
    steps = spikes.shape[0]
    counts = spikes.sum(dim=0)
    wanted = torch.full_like(counts, incorrect * steps)
    wanted.scatter_(1, target.unsqueeze(1), correct * steps)
    return F.mse_loss(counts, wanted)


def membrane_cross_entropy(mem: Tensor, target: Tensor, *, every_step: bool = False) -> Tensor:
    """Cross entropy of a read-out's membrane, read as logits.

    By default only the last step counts (the read-out has integrated the whole sequence);
    with ``every_step=True`` the loss is the mean of the cross entropy at every step, which
    asks for the right answer as early as possible.

    Args:
        mem: Membrane of the read-out layer ``[T, B, C]`` (the output of ``tt.snn.LI``).
        target: Class index of every sequence, ``[B]``.
        every_step: Average over every step instead of using the last one.

    Returns:
        The mean loss over the batch (and the steps) (a scalar).

    Example:
        >>> import torch
        >>> from tracetorch.loss import membrane_cross_entropy
        >>> mem = torch.zeros(5, 1, 2)
        >>> membrane_cross_entropy(mem, torch.tensor([0]))  # log(2): no preference yet
        tensor(0.6931)
    """
    mem = _check_recording("membrane_cross_entropy", mem, "mem")
    target = _check_target("membrane_cross_entropy", target, mem, "mem")
    if not every_step:
        return F.cross_entropy(mem[-1], target)
    steps = mem.shape[0]
    return F.cross_entropy(mem.flatten(0, 1), target.repeat(steps))


def _first_spike_times(spikes: Tensor) -> Tensor:
    """Differentiable step of the first spike of every output, ``T`` if it never fires."""
    return torch.cumprod(1 - spikes, dim=0).sum(dim=0)


def first_spike_time(spikes: Tensor, target: Tensor, *, scale: float = 1.0) -> Tensor:
    """Temporal loss: the right class should fire first.

    The first-spike time of every output is read as a negative logit,
    ``cross_entropy(-scale * t_first, target)``: the earlier an output fires, the larger its
    score. The time is made differentiable by writing it as a sum of survival terms,

    .. math::

        t_\\text{first} = \\sum_{t=1}^{T} \\prod_{k=0}^{t-1} (1 - s_k),

    where each product is 1 while the output has not fired before step ``t`` and 0 after.
    For spikes in ``{0, 1}`` this is exactly the step of the first spike (``T`` if there is
    none); for spikes in ``[0, 1]`` read as firing probabilities it is the expected first
    step. Its derivative with respect to the spike at step ``j`` is minus the sum of the
    products at later steps without the factor ``k = j``: for a binary train firing first at
    ``f``, a spike at ``j < f`` would move the first spike ``f - j`` steps earlier, and the
    gradient says so; steps after the first spike get none. Spikes must lie in ``[0, 1]``.

    Args:
        spikes: Output spikes ``[T, B, C]``, in ``[0, 1]``.
        target: Class index of every sequence, ``[B]``.
        scale: Logits per step of lead (larger: a one-step lead counts for more).

    Returns:
        The mean loss over the batch (a scalar).

    Example:
        >>> import torch
        >>> from tracetorch.loss import first_spike_time
        >>> spikes = torch.zeros(4, 1, 2)
        >>> spikes[1, 0, 0] = 1.0  # class 0 fires at step 1,
        >>> spikes[3, 0, 1] = 1.0  # class 1 at step 3: logits [-1, -3]
        >>> first_spike_time(spikes, torch.tensor([0]))
        tensor(0.1269)
    """
    spikes = _check_recording("first_spike_time", spikes, "spikes")
    target = _check_target("first_spike_time", target, spikes, "spikes")
    scale = _check_float("first_spike_time", scale, "scale")
    return F.cross_entropy(-scale * _first_spike_times(spikes), target)


def rate_l2(spikes: Tensor, target_rate: float | Tensor) -> Tensor:
    """Regularizer: squared distance of every neuron's firing rate to a wanted rate.

    ``mean((spikes.mean(0) - target_rate) ** 2)``: the rate is averaged over time, the
    squared error over batch and neurons. Keeps a layer from falling silent or saturating.

    Args:
        spikes: Spikes of any layer ``[T, B, *]``.
        target_rate: Wanted spikes per step, a float or a tensor broadcastable to ``[B, *]``
            (for example one rate per neuron).

    Returns:
        The penalty (a scalar).

    Example:
        >>> import torch
        >>> from tracetorch.loss import rate_l2
        >>> spikes = torch.zeros(10, 2, 3)
        >>> spikes[::2] = 1.0  # every neuron fires every other step: rate 0.5
        >>> rate_l2(spikes, 0.5), rate_l2(spikes, 0.1)
        (tensor(0.), tensor(0.1600))
    """
    spikes = _check_recording("rate_l2", spikes, "spikes", classes=False)
    rates = spikes.mean(dim=0)
    if isinstance(target_rate, Tensor):
        try:
            torch.broadcast_shapes(target_rate.shape, rates.shape)
        except RuntimeError:
            raise ValueError(
                f"rate_l2: expected target_rate broadcastable to the rates [B, *] = "
                f"{tuple(rates.shape)}, got shape {tuple(target_rate.shape)}"
            ) from None
    else:
        target_rate = _check_float("rate_l2", target_rate, "target_rate")
    return ((rates - target_rate) ** 2).mean()


def sparsity(spikes: Tensor) -> Tensor:
    """Regularizer: the mean firing, ``spikes.mean()``, over time, batch and neurons.

    Added to a loss with a small weight, it asks a layer to reach its answer with fewer
    spikes. For ternary outputs (``-1``, ``0``, ``+1``) pass ``spikes.abs()``, so that
    negative spikes count as firing too.

    Args:
        spikes: Spikes of any layer ``[T, B, *]``.

    Returns:
        The mean firing (a scalar).

    Example:
        >>> import torch
        >>> from tracetorch.loss import sparsity
        >>> spikes = torch.zeros(10, 2, 3)
        >>> spikes[0] = 1.0  # every neuron fires once in ten steps
        >>> sparsity(spikes)
        tensor(0.1000)
    """
    spikes = _check_recording("sparsity", spikes, "spikes", classes=False)
    return spikes.mean()
