"""Leaky integration, the step shared by every leaky-integrator neuron."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["leaky_integrate", "records_grad", "subtract_product"]


def records_grad(*tensors: Tensor) -> bool:
    """Whether autograd would record an operation on ``tensors`` now.

    True when grad mode is on and at least one of them requires a gradient. The leaky steps
    use it to pick their kernels: without a graph to record, one fused kernel
    (``torch.addcmul``) does the work of two; with one, the unfused pair has the cheaper
    backward.
    """
    if not torch.is_grad_enabled():
        return False
    for t in tensors:  # noqa: SIM110 (runs every timestep; any() would build a generator)
        if t.requires_grad:
            return True
    return False


def leaky_integrate(mem: Tensor, x: Tensor, beta: Tensor) -> Tensor:
    """One step of a leaky integrator: ``beta * mem + x``.

    Without autograd recording (``torch.no_grad``, ``torch.inference_mode``, or no input
    requiring a gradient) the step is one fused ``torch.addcmul`` call; otherwise ``mem * beta
    + x``, whose backward is cheaper than ``addcmul``'s. Both promote dtypes the same way.

    Args:
        mem: The membrane (or trace) before the step.
        x: The input current of this step, broadcastable to ``mem``.
        beta: The decay in ``(0, 1)``, broadcastable to ``mem`` (scalar or per neuron along
            the last dimension).

    Returns:
        The membrane after the step.

    Example:
        >>> import torch
        >>> from tracetorch.functional import leaky_integrate
        >>> leaky_integrate(torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor(0.9))
        tensor([1.4000])
    """
    if records_grad(mem, x, beta):
        return mem * beta + x
    return torch.addcmul(x, mem, beta)


def subtract_product(mem: Tensor, s: Tensor, threshold: Tensor) -> Tensor:
    """``mem - s * threshold``: the reset by subtraction after spikes ``s``.

    Like :func:`leaky_integrate`, one fused ``torch.addcmul`` call when autograd records
    nothing, the unfused pair otherwise.

    Example:
        >>> import torch
        >>> from tracetorch.functional import subtract_product
        >>> subtract_product(torch.tensor([1.5, 0.5]), torch.tensor([1.0, 0.0]), torch.tensor(1.0))
        tensor([0.5000, 0.5000])
    """
    if records_grad(mem, s, threshold):
        return mem - s * threshold
    return torch.addcmul(mem, s, threshold, value=-1)
