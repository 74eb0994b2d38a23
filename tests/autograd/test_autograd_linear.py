"""Linear: shapes of inputs and bias, and each gradient in its own input's shape."""

from __future__ import annotations

import pytest
import torch

from tracetorch.autograd import Linear, linear

F64 = torch.float64


@pytest.mark.parametrize(
    ("x_shape", "bias_shape"),
    [
        ((4,), None),
        ((4,), (3,)),
        ((5, 4), (3,)),
        ((5, 4), (1, 3)),
        ((2, 5, 4), (3,)),
        ((2, 5, 4), (5, 1)),  # per-row bias, broadcast over features
        ((5, 4), (2, 1, 3)),  # bias with more leading dims than x: x is broadcast too
        ((4,), (1, 3)),
    ],
)
def test_gradients_match_plain_expression(x_shape, bias_shape) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(x_shape, generator=gen, dtype=F64, requires_grad=True)
    w = torch.randn(3, 4, generator=gen, dtype=F64, requires_grad=True)
    b = None
    if bias_shape is not None:
        b = torch.randn(bias_shape, generator=gen, dtype=F64, requires_grad=True)
    inputs = [t for t in (x, w, b) if t is not None]

    ours = linear(x, w, b)
    plain = x @ w.T if b is None else x @ w.T + b
    torch.testing.assert_close(ours, plain, atol=1e-12, rtol=0)

    g = torch.randn(plain.shape, generator=gen, dtype=F64)
    ours_grads = torch.autograd.grad(ours, inputs, g)
    plain_grads = torch.autograd.grad(plain, inputs, g)
    for t, a, p in zip(inputs, ours_grads, plain_grads, strict=True):
        assert a.shape == t.shape
        torch.testing.assert_close(a, p, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(Linear.apply, (x, w, b))


def test_bias_gradient_is_summed_over_batch() -> None:
    x = torch.ones(4, 2, dtype=F64)
    w = torch.zeros(3, 2, dtype=F64)
    b = torch.zeros(3, dtype=F64, requires_grad=True)
    linear(x, w, b).sum().backward()
    torch.testing.assert_close(b.grad, torch.full((3,), 4.0, dtype=F64))


def test_weight_must_be_a_matrix() -> None:
    with pytest.raises(ValueError, match=r"weight of shape \[out_features, in_features\]"):
        linear(torch.ones(2, 3), torch.ones(3))


class _Ctx:
    """Stands in for autograd's ctx, to call a Function's staticmethods directly."""

    def __init__(self, *needs_input_grad: bool) -> None:
        self.needs_input_grad = needs_input_grad

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        self.saved_tensors = tensors


def test_backward_itself_reduces_broadcast_dims() -> None:
    # autograd would silently sum an unreduced gradient; check the backward does it itself
    # the bias adds a leading dim, so x is broadcast as well: y has shape [2, 5, 3]
    x, w, b = torch.ones(5, 4), torch.ones(3, 4), torch.ones(2, 1, 3)
    ctx = _Ctx(True, True, True)
    y = Linear.forward(x, w, b)
    Linear.setup_context(ctx, (x, w, b), y)
    grad_x, grad_w, grad_b = Linear.backward(ctx, torch.ones_like(y))
    torch.testing.assert_close(grad_x, torch.full((5, 4), 6.0))  # 3 outputs x 2 bias rows
    torch.testing.assert_close(grad_w, torch.full((3, 4), 10.0))  # 2 x 5 rows of ones
    torch.testing.assert_close(grad_b, torch.full((2, 1, 3), 5.0))  # summed over 5 rows
