"""Clipped ReLU (seed 002): values, the gradient mask, and gradcheck at two clip values."""

from __future__ import annotations

import pytest
import torch

from tracetorch.autograd import ClippedReLUFunction, clipped_relu

F64 = torch.float64


def test_values_and_mask() -> None:
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0], dtype=F64, requires_grad=True)
    y = clipped_relu(x, clip_val=2.0)
    torch.testing.assert_close(y.detach(), torch.tensor([0, 0, 0.5, 1, 1.5, 2, 2], dtype=F64))
    y.sum().backward()
    # 1 strictly inside (0, 2); 0 at both kinks and outside
    torch.testing.assert_close(x.grad, torch.tensor([0, 0, 1, 1, 1, 0, 0], dtype=F64))


def test_default_clip_is_one() -> None:
    torch.testing.assert_close(clipped_relu(torch.tensor([5.0, -5.0])), torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize(("shape", "clip_val"), [((5,), 2.0), ((3, 4), 0.5)])
def test_gradcheck(shape, clip_val) -> None:
    x = torch.linspace(-1.05, 2.55, torch.Size(shape).numel(), dtype=F64).reshape(shape)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ClippedReLUFunction.apply(t, clip_val), (x,))


def test_rejects_non_positive_clip() -> None:
    with pytest.raises(ValueError, match="clip_val must be positive, got 0"):
        clipped_relu(torch.ones(2), 0)
