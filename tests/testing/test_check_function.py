"""check_function: passes correct gradients, names the input and the size of a wrong one."""

from __future__ import annotations

import re

import pytest
import torch

import tracetorch.testing as tt_testing
from tracetorch.autograd import clipped_relu, linear
from tracetorch.testing import GradientCheckError, check_function


class IncorrectClippedReLU(torch.autograd.Function):
    """Seed 002's deliberate bug: the backward forgets the mask (old ctx-in-forward style)."""

    @staticmethod
    def forward(ctx, x, clip_val):
        ctx.clip_val = float(clip_val)
        return x.clamp(min=0, max=ctx.clip_val)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.clone(), None


class WrongWeightGrad(torch.autograd.Function):
    """``x @ w.T`` whose weight gradient is twice too large; the input gradient is right."""

    @staticmethod
    def forward(x, w):
        return x @ w.T

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w, 2 * g.T @ x


class SquareFirstOrderOnly(torch.autograd.Function):
    """``x**2`` with a right gradient that hides ``x`` from double backward."""

    @staticmethod
    def forward(x):
        return x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 2 * x.detach()


class WeightGradOnlyWithInputGrad(torch.autograd.Function):
    """``relu(x) * w``, whose weight gradient forgets the mask when ``x`` needs no grad."""

    @staticmethod
    def forward(x, w):
        return x.clamp(min=0) * w

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = g * w * (x > 0)
            gw = (g * x.clamp(min=0)).sum_to_size(w.shape)
        elif ctx.needs_input_grad[1]:  # the bug: the path taken when x is data
            gw = (g * x).sum_to_size(w.shape)
        return gx, gw


class NaNGrad(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return 2 * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


def test_exported_from_package() -> None:
    assert tt_testing.check_function is check_function
    assert issubclass(GradientCheckError, AssertionError)


def test_passes_correct_functions() -> None:
    x = torch.tensor([-1.0, 0.5, 1.5])
    assert check_function(clipped_relu, x, 2.0) is True
    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(s, generator=gen) for s in [(2, 3), (4, 3), (4,)]]
    assert check_function(linear, *args, names=["x", "weight", "bias"]) is True


def test_rejects_forgotten_mask_and_says_where_and_how_much() -> None:
    x = torch.tensor([-1.0, 0.5, 2.0])  # -1 and 2 lie outside (0, 1.5): true gradient 0 there
    with pytest.raises(GradientCheckError) as info:
        check_function(lambda t: IncorrectClippedReLU.apply(t, 1.5), x)
    err = info.value
    message = str(err)
    assert "input 0" in message
    assert re.search(r"max \|analytical - numerical\| = \d", message)
    assert err.order == 1
    assert err.input_index == 0
    assert err.max_abs_diff == pytest.approx(1.0)  # analytical 1, numerical 0


def test_names_the_wrong_input_among_several() -> None:
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 3, generator=gen), torch.randn(4, 3, generator=gen)
    with pytest.raises(GradientCheckError, match=r"input 1 \('w'\)") as info:
        check_function(WrongWeightGrad.apply, x, w, names=["x", "w"])
    err = info.value
    assert (err.input_index, err.input_name) == (1, "w")
    # the error in dL/dw is the true Jacobian entry itself, x[b, j], at its largest
    assert err.max_abs_diff == pytest.approx(x.abs().max().item(), rel=1e-6)


def test_gradients_are_checked_with_only_some_inputs_requiring_grad() -> None:
    x, w = torch.tensor([-1.0, 0.5, 2.0]), torch.tensor([0.3, -0.7, 1.1])
    expected = (
        r"input 1 \('w'\) is wrong when only input 1 \('w'\) requires grad: .*needs_input_grad"
    )
    with pytest.raises(GradientCheckError, match=expected) as info:
        check_function(WeightGradOnlyWithInputGrad.apply, x, w, names=["x", "w"])
    assert info.value.input_index == 1 and info.value.max_abs_diff > 0.1


def test_a_nan_gradient_is_wrong_and_named() -> None:
    with pytest.raises(GradientCheckError, match=r"input 0 \('x'\) is wrong: .* = nan") as info:
        check_function(NaNGrad.apply, torch.tensor([0.3, 0.7]), names=["x"])
    assert info.value.input_index == 0


def test_second_order_errors_are_found_and_can_be_skipped() -> None:
    x = torch.tensor([0.3, -1.2, 2.0])
    assert check_function(SquareFirstOrderOnly.apply, x, check_gradgrad=False)
    with pytest.raises(GradientCheckError, match=r"second-order gradient .* input 0") as info:
        check_function(SquareFirstOrderOnly.apply, x)
    assert info.value.order == 2
    assert info.value.input_index == 0
    assert info.value.max_abs_diff > 0.01  # 2 * grad_output went missing


class CubeWithJvp(torch.autograd.Function):
    """``x**3`` with a right backward and a jvp that is right only when ``wrong_jvp`` is off."""

    wrong_jvp = False

    @staticmethod
    def forward(x):
        return x * x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x * x

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t * (2 if CubeWithJvp.wrong_jvp else 3) * x * x


def test_forward_mode_is_checked_on_request(monkeypatch) -> None:
    x = torch.tensor([0.3, -1.2, 2.0])
    assert check_function(CubeWithJvp.apply, x, check_forward=True)
    assert check_function(torch.sin, x, check_forward=True)  # PyTorch's own jvp rules
    assert check_function(SquareFirstOrderOnly.apply, x, check_gradgrad=False)  # no jvp: not run
    monkeypatch.setattr(CubeWithJvp, "wrong_jvp", True)
    assert check_function(CubeWithJvp.apply, x)  # the backward alone is right
    with pytest.raises(
        GradientCheckError, match=r"forward-mode derivative \(jvp\) w\.r\.t\. input 0"
    ) as info:
        check_function(CubeWithJvp.apply, x, check_forward=True)
    assert info.value.order == 1 and info.value.input_index == 0
    assert info.value.max_abs_diff == pytest.approx(4.0)  # x**2 at x = 2 went missing
    with pytest.raises(GradientCheckError, match=r"\(jvp\) w\.r\.t\. input 0 could not be"):
        check_function(SquareFirstOrderOnly.apply, x, check_gradgrad=False, check_forward=True)


def test_forward_mode_check_takes_inputs_in_any_memory_layout() -> None:
    x = torch.randn(3, 2).t()  # not contiguous
    assert check_function(CubeWithJvp.apply, x, check_forward=True, check_gradgrad=False)


def test_converts_floating_inputs_and_passes_the_rest() -> None:
    seen = {}

    def fn(x, index, scale):
        seen.update(dtype=x.dtype, requires_grad=x.requires_grad, index=index.dtype)
        return x[index] * scale

    assert check_function(fn, torch.ones(3, dtype=torch.float32), torch.tensor([0, 2]), 3.0)
    assert seen == {"dtype": torch.float64, "requires_grad": True, "index": torch.int64}


def test_tuple_outputs() -> None:
    assert check_function(lambda x: (torch.sin(x), x.sum() ** 2), torch.tensor([0.1, 0.2]))


def test_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_function(torch.sin, torch.tensor([0.1, 0.2]))
    torch.testing.assert_close(torch.rand(3), expected, atol=0, rtol=0)


def test_invalid_calls() -> None:
    with pytest.raises(ValueError, match="no floating-point tensor among the inputs"):
        check_function(lambda i: i * 2.0, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="got 1 inputs but 2 names"):
        check_function(torch.sin, torch.ones(2), names=["x", "y"])
