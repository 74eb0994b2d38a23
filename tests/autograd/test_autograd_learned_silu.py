"""LearnedSiLU: broadcasting between x and slope, gradients back in each input's shape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tracetorch.autograd import LearnedSiLU, learned_silu

F64 = torch.float64


@pytest.mark.parametrize(
    ("x_shape", "slope_shape"),
    [((2, 3), ()), ((2, 3), (1,)), ((2, 3), (3,)), ((2, 3), (2, 1)), ((3,), (2, 3))],
)
def test_gradients_in_input_shapes(x_shape, slope_shape) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(x_shape, generator=gen, dtype=F64, requires_grad=True)
    slope = torch.randn(slope_shape, generator=gen, dtype=F64, requires_grad=True)
    ours = learned_silu(x, slope)
    plain = slope * F.silu(x)
    torch.testing.assert_close(ours, plain, atol=1e-12, rtol=0)

    g = torch.randn(plain.shape, generator=gen, dtype=F64)
    for t, a, p in zip(
        (x, slope),
        torch.autograd.grad(ours, (x, slope), g),
        torch.autograd.grad(plain, (x, slope), g),
        strict=True,
    ):
        assert a.shape == t.shape
        torch.testing.assert_close(a, p, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(LearnedSiLU.apply, (x, slope))


def test_number_slope_is_a_constant() -> None:
    x = torch.tensor([1.0, -2.0], dtype=F64, requires_grad=True)
    y = learned_silu(x, 2.0)
    torch.testing.assert_close(y, 2.0 * F.silu(x.detach()))
    y.sum().backward()
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(x.grad, 2.0 * (s + x.detach() * s * (1 - s)))


def test_backward_itself_reduces_broadcast_dims() -> None:
    class Ctx:  # stands in for autograd's ctx, to call the staticmethods directly
        needs_input_grad = (True, True)

        def save_for_backward(self, *tensors):
            self.saved_tensors = tensors

    # autograd would silently sum an unreduced gradient; check the backward does it itself
    x, slope = torch.zeros(4, 3), torch.ones(2, 1, 1)
    ctx = Ctx()
    y = LearnedSiLU.forward(x, slope)
    LearnedSiLU.setup_context(ctx, (x, slope), y)
    grad_x, grad_slope = LearnedSiLU.backward(ctx, torch.ones_like(y))
    assert (grad_x.shape, grad_slope.shape) == (x.shape, slope.shape)
    # at x = 0: dy/dx = slope * sigmoid(0) = 0.5, summed over the 2 slopes
    torch.testing.assert_close(grad_x, torch.ones(4, 3))
