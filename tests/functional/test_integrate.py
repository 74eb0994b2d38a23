"""The fused leaky steps: one kernel when autograd records nothing, the same values always."""

from __future__ import annotations

import pytest
import torch

from tracetorch.functional import leaky_integrate, subtract_product

SHAPES = [((2, 5), (5,)), ((2, 5), ()), ((3, 4, 2, 2), (4, 1, 1))]


@pytest.mark.parametrize(("shape", "beta_shape"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_paths_give_the_unfused_values(shape, beta_shape, dtype):
    torch.manual_seed(0)
    mem, x = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    beta = torch.rand(beta_shape, dtype=dtype)
    s = (torch.randn(shape) > 0).to(dtype)
    with torch.inference_mode():
        fused = leaky_integrate(mem, x, beta), subtract_product(mem, s, beta)
    unfused_anyway = leaky_integrate(mem, x, beta.requires_grad_()).detach()  # records a graph
    torch.testing.assert_close(fused[0], unfused_anyway)
    torch.testing.assert_close(fused[0], mem * beta + x)
    torch.testing.assert_close(fused[1], mem - s * beta)
    assert fused[0].dtype == dtype and fused[0].shape == shape


def test_fused_paths_promote_dtypes_like_the_unfused_ones():
    mem, x = torch.ones(2, 3, dtype=torch.float16), torch.ones(2, 3, dtype=torch.float64)
    beta = torch.full((3,), 0.5)
    with torch.no_grad():
        assert leaky_integrate(mem, x, beta).dtype == (mem * beta + x).dtype == torch.float64
        assert subtract_product(mem, x, beta).dtype == torch.float64


def test_gradients_through_time_match_the_written_formula():
    torch.manual_seed(0)
    xs = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    beta = torch.rand(3, dtype=torch.float64, requires_grad=True)
    threshold = torch.rand(3, dtype=torch.float64, requires_grad=True)

    def run(integrate, reset):
        mem = torch.zeros(2, 3, dtype=torch.float64)
        for x in xs:
            mem = integrate(mem, x, beta)
            mem = reset(mem, torch.sigmoid(mem), threshold)
        return mem.square().sum()

    ours = torch.autograd.grad(run(leaky_integrate, subtract_product), (xs, beta, threshold))
    written = torch.autograd.grad(
        run(lambda m, x, b: m * b + x, lambda m, s, t: m - s * t), (xs, beta, threshold)
    )
    for a, b in zip(ours, written, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(
        lambda x, b: leaky_integrate(leaky_integrate(x[0], x[1], b), x[2], b), (xs, beta)
    )
    assert torch.autograd.gradcheck(
        lambda m, t: subtract_product(m, torch.sigmoid(m), t), (xs[0], threshold)
    )
