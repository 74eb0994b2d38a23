"""tracetorch.autograd.apply: Function.apply without binding arguments at every call."""

from __future__ import annotations

import inspect

import pytest
import torch

import tracetorch as tt
from tracetorch.autograd import Heaviside, LearnedSiLU, Linear, Square, apply


def _cases() -> list[tuple[type[torch.autograd.Function], tuple]]:
    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
    slope = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    return [
        (Square, (x,)),
        (Heaviside, (x, "atan", None)),
        (LearnedSiLU, (x, slope)),
        (Linear, (x, weight, bias)),
    ]


@pytest.mark.parametrize("function, args", _cases(), ids=lambda v: getattr(v, "__name__", ""))
def test_matches_function_apply_in_values_and_gradients(function, args) -> None:
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    expected = function.apply(*args)
    expected_grads = torch.autograd.grad(expected.sin().sum(), tensors)
    got = apply(function, *args)
    grads = torch.autograd.grad(got.sin().sum(), tensors)
    assert type(got.grad_fn) is type(expected.grad_fn)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_gradients_through_time_are_exact() -> None:
    """Five steps of a leaky state through ``apply``'d Functions, gradchecked in float64."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    slope = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)

    def loop(x: torch.Tensor, weight: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        mem = torch.zeros_like(x)
        for _ in range(5):
            mem = 0.8 * mem + apply(Linear, apply(LearnedSiLU, x + mem, slope), weight, None)
        return apply(Square, mem)

    assert torch.autograd.gradcheck(loop, (x, weight, slope))
    assert torch.autograd.gradgradcheck(loop, (x, weight, slope))


def test_skips_the_signature_binding_outside_transforms(monkeypatch) -> None:
    x = torch.randn(3, requires_grad=True)
    apply(Square, x)  # the first call of a Function reads its signature once
    tt.autograd.heaviside(x)
    calls = []
    signature = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda *a, **k: calls.append(1) or signature(*a, **k))
    Square.apply(x)
    assert calls, "Function.apply no longer binds its arguments: the helper may be dropped"
    calls.clear()
    apply(Square, x)
    tt.autograd.heaviside(x)
    assert not calls


def test_torch_func_transforms_take_function_apply() -> None:
    x = torch.randn(5, dtype=torch.float64)
    grad = torch.func.grad(lambda v: apply(Square, v).sum())(x)
    torch.testing.assert_close(grad, 2 * x)
    batched = torch.func.vmap(lambda v: apply(Square, v))(x.reshape(5, 1))
    torch.testing.assert_close(batched, x.reshape(5, 1) ** 2)


def test_compiles_without_a_graph_break() -> None:
    compiled = torch.compile(lambda v: apply(Square, v) + 1, backend="eager", fullgraph=True)
    x = torch.randn(3, requires_grad=True)
    out = compiled(x)
    torch.testing.assert_close(out, x.detach() ** 2 + 1)
    out.sum().backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())


class _Scaled(torch.autograd.Function):
    """``x * scale`` with a default scale: Function.apply fills it in by binding."""

    @staticmethod
    def forward(x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
        return x * scale

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, ctx.scale = inputs

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


class _OldStyle(torch.autograd.Function):
    """The older ``ctx``-first style, which Function.apply does not bind."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x * 3

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * 3


class _Variadic(torch.autograd.Function):
    @staticmethod
    def forward(*xs: torch.Tensor) -> torch.Tensor:
        return sum(xs)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.n = len(inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (grad,) * ctx.n


@pytest.mark.parametrize(
    "function, args, value, grad",
    [
        (_Scaled, (), 2.0, 2.0),  # the default, filled in by Function.apply
        (_Scaled, (5.0,), 5.0, 5.0),
        (_OldStyle, (), 3.0, 3.0),
        (_Variadic, (), 1.0, 1.0),
    ],
    ids=["default left out", "every argument", "ctx style", "*args"],
)
def test_any_function_and_call_gives_what_function_apply_gives(function, args, value, grad):
    x = torch.ones(2, requires_grad=True)
    out = apply(function, x, *args)
    torch.testing.assert_close(out, torch.full((2,), value))
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((2,), grad))
