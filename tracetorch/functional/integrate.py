"""Leaky integration, the step shared by every leaky-integrator neuron."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["leaky_integrate", "subtract_product"]


def leaky_integrate(mem: Tensor, x: Tensor, beta: Tensor) -> Tensor:
    """One step of a leaky integrator: ``beta * mem + x``.

    When autograd records nothing (``torch.no_grad``, ``torch.inference_mode``, or no input
    requiring a gradient) the step is one fused ``torch.addcmul`` kernel instead of two;
    otherwise it is ``mem * beta + x``, whose backward is cheaper than ``addcmul``'s. Both
    promote dtypes the same way, but their values can differ in the last bit: ``addcmul``
    may round once where the pair rounds twice (it uses fused multiply-adds where the CPU has
    them: about a fifth of float32 results differed on an AVX-512 machine). So a step with
    autograd and the same step without it agree to rounding, not bit for bit. Sequence mode
    (:func:`tracetorch.autograd.leaky_scan`) uses the fused form exactly when no gradient is
    recorded for the sequence.

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
    # The check is written out, not a helper call: this runs for every layer at every step.
    if torch.is_grad_enabled() and (mem.requires_grad or x.requires_grad or beta.requires_grad):
        return mem * beta + x
    return torch.addcmul(x, mem, beta)


def subtract_product(mem: Tensor, s: Tensor, threshold: Tensor) -> Tensor:
    """``mem - s * threshold``: the reset by subtraction after spikes ``s``.

    Like :func:`leaky_integrate`, one fused ``torch.addcmul`` call when autograd records
    nothing, the unfused pair otherwise. For spikes in ``{0, 1}`` the product is exact, so
    both give the same values bit for bit; for other ``s`` they can differ in the last bit.

    Example:
        >>> import torch
        >>> from tracetorch.functional import subtract_product
        >>> subtract_product(torch.tensor([1.5, 0.5]), torch.tensor([1.0, 0.0]), torch.tensor(1.0))
        tensor([0.5000, 0.5000])
    """
    if torch.is_grad_enabled() and (
        mem.requires_grad or s.requires_grad or threshold.requires_grad
    ):
        return mem - s * threshold
    return torch.addcmul(mem, s, threshold, value=-1)
