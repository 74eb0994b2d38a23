"""The usage examples of the custom-autograd README (seed 003), with its numbers.

Each example is run through our Functions and through plain torch autograd on the same
expression; the gradients must agree, and match the values worked out by hand below.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tracetorch.autograd import Cube, Exp, LearnedSiLU, Linear, ReLU, Square

F64 = torch.float64


def _leaf(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64, requires_grad=True)


def test_basic_operations_at_two() -> None:
    x = _leaf(2.0)
    assert Square.apply(x).item() == 4.0
    assert Cube.apply(x).item() == 8.0
    assert math.isclose(Exp.apply(x).item(), math.exp(2.0), rel_tol=1e-15)  # ~7.389

    Square.apply(x).backward()
    assert x.grad.item() == 4.0  # d/dx x^2 = 2x
    x.grad = None
    Cube.apply(x).backward()
    assert x.grad.item() == 12.0  # 3x^2
    x.grad = None
    Exp.apply(x).backward()
    assert math.isclose(x.grad.item(), 7.38905609893065, rel_tol=1e-14)  # e^x


def test_neural_network_layer() -> None:
    def run(linear, relu):
        x = _leaf([[1.0, 2.0, 3.0]])
        w = _leaf([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
        b = _leaf([[0.1, 0.2]])  # [1, out], broadcast over the batch
        out = relu(linear(x, w, b))
        out.sum().backward()
        return out.detach(), x.grad, w.grad, b.grad

    ours = run(Linear.apply, ReLU.apply)
    plain = run(F.linear, torch.relu)
    for a, p in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, p, atol=1e-14, rtol=0)

    out, x_grad, w_grad, b_grad = ours
    # pre-activation: [0.5*6 + 0.1, 1*6 + 0.2] = [3.1, 6.2], both positive so ReLU passes 1s
    torch.testing.assert_close(out, torch.tensor([[3.1, 6.2]], dtype=F64))
    # dL/dx = [1, 1] @ W = column sums of W
    torch.testing.assert_close(x_grad, torch.tensor([[1.5, 1.5, 1.5]], dtype=F64))
    # dL/dW = [1, 1]^T @ x: every row is x
    torch.testing.assert_close(w_grad, torch.tensor([[1.0, 2.0, 3.0]] * 2, dtype=F64))
    # dL/db keeps b's shape [1, 2]
    torch.testing.assert_close(b_grad, torch.tensor([[1.0, 1.0]], dtype=F64))


def test_learnable_activation() -> None:
    def run(silu):
        x = _leaf([[1.0, -1.0, 2.0]])
        slope = _leaf([0.5])
        silu(x, slope).sum().backward()
        return x.grad, slope.grad

    ours = run(LearnedSiLU.apply)
    plain = run(lambda x, slope: slope * x * torch.sigmoid(x))
    for a, p in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, p, atol=1e-14, rtol=0)

    x_grad, slope_grad = ours
    # sigmoid(1) = 0.7310586, sigmoid(-1) = 0.2689414, sigmoid(2) = 0.8807971
    # dx = 0.5 * (s + x s (1 - s)): 0.5 * 0.9276705, 0.5 * 0.0723295, 0.5 * 1.0907843
    torch.testing.assert_close(
        x_grad, torch.tensor([[0.4638352, 0.0361648, 0.5453922]], dtype=F64), atol=1e-6, rtol=0
    )
    # dslope = sum x s = 0.7310586 - 0.2689414 + 1.7615942, in slope's shape [1]
    torch.testing.assert_close(slope_grad, torch.tensor([2.2237114], dtype=F64), atol=1e-6, rtol=0)


def test_complete_neural_network() -> None:
    def run(linear, silu):
        x = _leaf([[2.0, 2.0, 2.0]])
        w = _leaf([[3.0, 3.0, 3.0], [1.0, 1.0, 1.0]])
        b = _leaf([[-5.0, -12.0]])
        slope = _leaf([-1.0])
        silu(linear(x, w, b), slope).sum().backward()
        return x.grad, w.grad, b.grad, slope.grad

    ours = run(Linear.apply, LearnedSiLU.apply)
    plain = run(lambda x, w, b: x @ w.T + b, lambda z, slope: slope * z * torch.sigmoid(z))
    for a, p in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, p, atol=1e-14, rtol=0)

    x_grad, w_grad, b_grad, slope_grad = ours
    # z = x W^T + b = [6*3 - 5, 6*1 - 12] = [13, -6]
    # dL/dz = slope * (s + z s (1 - s)) with s = sigmoid(z):
    #   z = 13: -(0.9999977 + 13 * 2.26e-6) = -1.0000271
    #   z = -6: -(0.0024726 - 0.0147990) = 0.0123264
    dz = [-1.0000271, 0.0123264]
    torch.testing.assert_close(b_grad, torch.tensor([dz], dtype=F64), atol=1e-6, rtol=0)
    # dL/dx = dz @ W = 3 * dz0 + dz1 for each column
    torch.testing.assert_close(x_grad, torch.full((1, 3), -2.9877549, dtype=F64), atol=1e-6, rtol=0)
    # dL/dW = dz^T @ x: rows 2 * dz0 and 2 * dz1
    expected_w = torch.tensor([[-2.0000542] * 3, [0.0246528] * 3], dtype=F64)
    torch.testing.assert_close(w_grad, expected_w, atol=1e-6, rtol=0)
    # dL/dslope = sum z s = 13 * 0.9999977 - 6 * 0.0024726
    torch.testing.assert_close(slope_grad, torch.tensor([12.9851349], dtype=F64), atol=1e-6, rtol=0)
