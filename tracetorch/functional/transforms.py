"""Constraining transforms and their inverses.

A constrained parameter is stored raw (unconstrained) and read through a transform:
a decay through :func:`torch.sigmoid` so that it stays in ``(0, 1)``, a threshold through
:func:`torch.nn.functional.softplus` so that it stays positive. The inverses turn a value the
user asked for into the raw value that produces it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sigmoid_inverse", "softplus_inverse"]


def sigmoid_inverse(y: Tensor) -> Tensor:
    """Inverse of :func:`torch.sigmoid` (the logit), for ``y`` in ``(0, 1)``.

    Example:
        >>> import torch
        >>> from tracetorch.functional import sigmoid_inverse
        >>> y = torch.tensor([0.1, 0.5, 0.9])
        >>> torch.allclose(torch.sigmoid(sigmoid_inverse(y)), y)
        True
    """
    return torch.log(y) - torch.log1p(-y)


def softplus_inverse(y: Tensor) -> Tensor:
    """Inverse of :func:`torch.nn.functional.softplus`, for ``y > 0``.

    Uses ``y + log(-expm1(-y))``, which stays accurate for small and large ``y``.

    Example:
        >>> import torch
        >>> from tracetorch.functional import softplus_inverse
        >>> y = torch.tensor([1e-3, 1.0, 30.0])
        >>> torch.allclose(torch.nn.functional.softplus(softplus_inverse(y)), y)
        True
    """
    return y + torch.log(-torch.expm1(-y))
