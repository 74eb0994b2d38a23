"""Element-wise functions with hand-written derivatives.

Each function is a :class:`torch.autograd.Function` whose backward multiplies the incoming
gradient by the local derivative. The derivative is written with differentiable torch ops on a
saved tensor (the input ``x`` or the output ``y``, whichever gives the cheaper formula), so
double backward works, and the classes support ``torch.func`` (``vmap``, ``grad``, ``jacrev``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from .function import apply

__all__ = ["Cube", "Exp", "ReLU", "Sigmoid", "Square", "Tanh"]
__all__ += ["cube", "exp", "relu", "sigmoid", "square", "tanh"]


def _elementwise(
    name: str,
    fn: Callable[[Tensor], Tensor],
    derivative: Callable[[Tensor], Tensor],
    saves: Literal["input", "output"],
    doc: str,
) -> type[torch.autograd.Function]:
    """Builds an element-wise Function: ``y = fn(x)`` and ``dy/dx = derivative(saved)``.

    ``saves`` tells whether ``derivative`` takes the input ``x`` or the output ``y``.
    """

    def forward(x: Tensor) -> Tensor:
        return fn(x)

    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0] if saves == "input" else output)

    def backward(ctx: Any, grad_output: Tensor) -> Tensor:
        (saved,) = ctx.saved_tensors
        return grad_output * derivative(saved)

    namespace = {
        "__doc__": doc,
        "__module__": __name__,
        "__qualname__": name,
        "generate_vmap_rule": True,
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
    }
    return type(name, (torch.autograd.Function,), namespace)


Square = _elementwise(
    "Square",
    fn=lambda x: x * x,
    derivative=lambda x: 2 * x,
    saves="input",
    doc="``y = x**2``, ``dy/dx = 2 x``.",
)
Cube = _elementwise(
    "Cube",
    fn=lambda x: x * x * x,
    derivative=lambda x: 3 * x * x,
    saves="input",
    doc="``y = x**3``, ``dy/dx = 3 x**2``.",
)
Exp = _elementwise(
    "Exp",
    fn=torch.exp,
    derivative=lambda y: y,
    saves="output",
    doc="``y = exp(x)``, ``dy/dx = exp(x) = y``.",
)
ReLU = _elementwise(
    "ReLU",
    fn=torch.relu,
    derivative=lambda x: (x > 0).to(x.dtype),
    saves="input",
    doc="``y = max(0, x)``, ``dy/dx = 1`` where ``x > 0`` and 0 elsewhere (also at 0).",
)
Sigmoid = _elementwise(
    "Sigmoid",
    fn=torch.sigmoid,
    derivative=lambda y: y * (1 - y),
    saves="output",
    doc="``y = 1 / (1 + exp(-x))``, ``dy/dx = y (1 - y)``.",
)
Tanh = _elementwise(
    "Tanh",
    fn=torch.tanh,
    derivative=lambda y: 1 - y * y,
    saves="output",
    doc="``y = tanh(x)``, ``dy/dx = 1 - y**2``.",
)


def square(x: Tensor) -> Tensor:
    """Squares ``x`` element-wise through :class:`Square`.

    Args:
        x: Input tensor of any shape.

    Returns:
        ``x**2``, same shape as ``x``.

    Example:
        >>> x = torch.tensor(2.0, requires_grad=True)
        >>> square(x).backward()
        >>> x.grad
        tensor(4.)
    """
    return apply(Square, x)


def cube(x: Tensor) -> Tensor:
    """Cubes ``x`` element-wise through :class:`Cube`.

    Args:
        x: Input tensor of any shape.

    Returns:
        ``x**3``, same shape as ``x``.

    Example:
        >>> x = torch.tensor(2.0, requires_grad=True)
        >>> cube(x).backward()
        >>> x.grad
        tensor(12.)
    """
    return apply(Cube, x)


def exp(x: Tensor) -> Tensor:
    """Exponential of ``x`` element-wise through :class:`Exp`.

    Args:
        x: Input tensor of any shape.

    Returns:
        ``exp(x)``, same shape as ``x``.

    Example:
        >>> exp(torch.tensor([0.0, 1.0]))
        tensor([1.0000, 2.7183])
    """
    return apply(Exp, x)


def relu(x: Tensor) -> Tensor:
    """Rectified linear unit through :class:`ReLU`.

    Args:
        x: Input tensor of any shape.

    Returns:
        ``max(0, x)``, same shape as ``x``.

    Example:
        >>> relu(torch.tensor([-1.0, 0.5]))
        tensor([0.0000, 0.5000])
    """
    return apply(ReLU, x)


def sigmoid(x: Tensor) -> Tensor:
    """Logistic sigmoid through :class:`Sigmoid`.

    Args:
        x: Input tensor of any shape.

    Returns:
        ``1 / (1 + exp(-x))``, same shape as ``x``.

    Example:
        >>> sigmoid(torch.tensor([0.0]))
        tensor([0.5000])
    """
    return apply(Sigmoid, x)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent through :class:`Tanh`.

    Args:
        x: Input tensor of any shape.

    Returns:
        ``tanh(x)``, same shape as ``x``.

    Example:
        >>> x = torch.tensor(0.0, requires_grad=True)
        >>> tanh(x).backward()
        >>> x.grad
        tensor(1.)
    """
    return apply(Tanh, x)
