"""Exciter: a clamp with an optional last-neuron read-out and callbacks run during backward."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from ..autograd.function import apply
from .layer import Layer

__all__ = ["Exciter", "ExciterFunction"]

BackwardCallback = Callable[["Exciter", Tensor], Any]


def _inside(ctx: Any, x: Tensor) -> Tensor:
    """Where the output passes ``x`` on unclamped (the last entry along ``dim`` only, with
    ``select_last``): the mask of both derivatives."""
    if ctx.select_last:
        x = x.narrow(ctx.dim, x.size(ctx.dim) - 1, 1)
    return (x >= ctx.low) & (x <= ctx.high)


class _TraceableExciter(torch.autograd.Function):
    """:class:`ExciterFunction` without its forward-mode rule: what ``torch.compile`` traces.

    Dynamo cannot trace an ``autograd.Function`` that defines ``jvp``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: Tensor,
        low: float,
        high: float,
        select_last: bool,
        dim: int,
        layer: Exciter | None = None,
    ) -> Tensor:
        if select_last:
            x = x.narrow(dim, x.size(dim) - 1, 1)
        return x.clamp(low, high)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, ctx.low, ctx.high, ctx.select_last, ctx.dim, ctx.layer = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors  # read once: a non-reentrant checkpoint allows no second read
        dim, size = ctx.dim, x.size(ctx.dim)
        grad_input = torch.where(_inside(ctx, x), grad_output, torch.zeros_like(grad_output))
        if ctx.select_last:
            before = list(grad_input.shape)
            before[dim] = size - 1
            grad_input = torch.cat([grad_input.new_zeros(before), grad_input], dim=dim)
        if ctx.layer is not None:
            ctx.layer.custom_backward(grad_output)
        return grad_input, None, None, None, None, None


class ExciterFunction(_TraceableExciter):
    """Clamp to ``[low, high]``, optionally keep only the last neuron along ``dim``.

    Forward: ``y = clamp(x, low, high)``; with ``select_last`` only the last entry along
    ``dim`` is returned (that dimension is kept, with size 1).

    Backward: the gradient has ``x``'s shape. It is ``grad_output`` where
    ``low <= x <= high`` and zero where ``x`` was clamped; with ``select_last`` every neuron but
    the last gets zero. After computing it, the backward calls
    ``layer.custom_backward(grad_output)`` when a ``layer`` was given.

    The backward is made of differentiable tensor operations, so double backward works too
    (the second derivative of a clamp is zero). Forward mode (``torch.func.jacfwd``, dual
    tensors) passes the tangent where the backward passes the gradient; it runs no callbacks,
    which belong to the backward pass.

    Call it as ``ExciterFunction.apply(x, low, high, select_last, dim, layer)``. Dynamo
    cannot trace a Function that has a forward-mode rule: under ``torch.compile`` that call
    breaks the graph (``fullgraph=True`` fails) and runs eagerly; the :class:`Exciter` layer
    traces a twin of this class without the rule instead (whose clamp, traced, has the same
    forward-mode derivative).
    """

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _TraceableExciter.setup_context(ctx, inputs, output)
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def jvp(ctx: Any, x_tangent: Tensor, *_constants: None) -> Tensor:
        (x,) = ctx.saved_tensors
        if ctx.select_last:
            x_tangent = x_tangent.narrow(ctx.dim, x.size(ctx.dim) - 1, 1)
        return torch.where(_inside(ctx, x), x_tangent, torch.zeros_like(x_tangent))


_eager_apply: Callable[..., Tensor] | None = None


def _apply_eagerly() -> Callable[..., Tensor]:
    """``ExciterFunction.apply`` kept out of ``torch.compile`` graphs (a graph break).

    Callbacks are Python code the autograd engine must run at backward time; a compiled
    graph would trace the backward ahead of time instead. Made on first use (when a callback
    is registered): ``torch.compiler.disable`` imports ``torch._dynamo``, seconds that
    ``import tracetorch`` should not cost.
    """
    global _eager_apply
    if _eager_apply is None:
        _eager_apply = torch.compiler.disable(
            ExciterFunction.apply,
            reason="Exciter backward callbacks are Python code the autograd engine runs at "
            "backward time",
        )
    return _eager_apply


class Exciter(Layer):
    """Clamps its input to ``[low, high]`` and runs user callbacks during the backward pass.

    The forward pass is a clamp; with ``select_last=True`` only the last neuron along ``dim``
    is passed on (the dimension is kept, with size 1). The backward pass (see
    :class:`ExciterFunction`) lets the gradient through where the input lay within
    ``[low, high]`` and blocks it where the input was clamped or the neuron was not selected;
    then it calls every callback registered with :meth:`register_backward_callback` as
    ``fn(layer, grad_output)``, under ``torch.no_grad()``. A callback can record the gradient,
    probe the network with extra forward passes or change weights by hand without adding to
    the autograd graph.

    The layer has no hidden state; it is a :class:`tracetorch.snn.Layer` for the shared
    handling of ``dim``, input checks and ``repr``.

    Args:
        num_neurons: Number of neurons (features at ``dim``).
        low: Lower clamp bound.
        high: Upper clamp bound (greater than ``low``).
        select_last: Return only the last neuron along ``dim``.
        dim: The feature dimension of the input.

    Shape:
        - Input: ``(*, num_neurons, *)`` with the neurons at ``dim``.
        - Output: the input's shape, or with size 1 at ``dim`` when ``select_last``.

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.snn.Exciter(3, low=-1.0, high=1.0)
        >>> seen = []
        >>> handle = layer.register_backward_callback(lambda lyr, g: seen.append(g.shape))
        >>> x = torch.tensor([[-2.0, 0.5, 3.0]], requires_grad=True)
        >>> y = layer(x)
        >>> y
        tensor([[-1.0000,  0.5000,  1.0000]], grad_fn=<ExciterFunctionBackward>)
        >>> y.sum().backward()
        >>> x.grad
        tensor([[0., 1., 0.]])
        >>> seen
        [torch.Size([1, 3])]
        >>> handle.remove()
        >>> tt.snn.Exciter(3, select_last=True)(torch.ones(2, 3)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        num_neurons: int,
        low: float = -10.0,
        high: float = 10.0,
        select_last: bool = False,
        dim: int = -1,
    ) -> None:
        """Build the layer; the arguments are described on the class."""
        super().__init__(num_neurons, dim=dim)
        for name, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"Exciter: expected {name} to be a real number, got {value!r}")
        if not low < high:
            raise ValueError(f"Exciter: expected low < high, got low={low!r}, high={high!r}")
        self.low = float(low)
        self.high = float(high)
        if not isinstance(select_last, bool):
            raise TypeError(f"Exciter: expected select_last to be a bool, got {select_last!r}")
        self.select_last = select_last
        self._backward_callbacks: OrderedDict[int, BackwardCallback] = OrderedDict()

    def forward(self, x: Tensor) -> Tensor:
        """One step: ``x`` clamped (and narrowed to the last neuron with ``select_last``)."""
        self._check_input(x)
        return self._clamp(x, self.dim)

    def forward_sequence(self, xs: Tensor) -> Tensor:
        """A whole sequence ``[T, *step_shape]`` at once: the clamp has no state, so one call."""
        if not self._follows_step(Exciter):  # a subclass redefined the step: loop over it
            return super().forward_sequence(xs)
        self._check_sequence(xs)
        self._check_input(xs[0])
        return self._clamp(xs, self.dim if self.dim < 0 else self.dim + 1)

    def _clamp(self, x: Tensor, dim: int) -> Tensor:
        """:class:`ExciterFunction` on ``x`` (neurons along ``dim``), with the callbacks."""
        # len(): torch.compile guards on a dict's length, not on its truth value
        if len(self._backward_callbacks) > 0:
            eager = _eager_apply if _eager_apply is not None else _apply_eagerly()
            return eager(x, self.low, self.high, self.select_last, dim, self)
        if torch.compiler.is_compiling():  # the twin's traced clamp has the jvp's derivative
            return _TraceableExciter.apply(x, self.low, self.high, self.select_last, dim, None)
        return apply(ExciterFunction, x, self.low, self.high, self.select_last, dim, None)

    def register_backward_callback(self, fn: BackwardCallback) -> RemovableHandle:
        """Register ``fn(layer, grad_output)`` to be called during every backward pass.

        ``grad_output`` is a detached copy of the gradient of the loss with respect to this
        layer's output, so it has the output's shape (size 1 at ``dim`` with ``select_last``);
        the callback may keep or modify it. Callbacks run in registration order, once per
        backward through each forward call made while a callback was registered, under
        ``torch.no_grad()``; their return value is ignored.

        A callback that runs the network (a probe) advances the hidden states of the
        stateful layers in it; putting them back is the callback's job. Snapshot them before
        the probe and restore them after it::

            def probe(layer, grad_output):
                saved = tt.save_states(model)
                score = model(x_probe)  # no graph is built: this runs under no_grad
                tt.zero_states(model)  # states not created when saved: None again
                tt.load_states(model, saved, strict=False)

        (``load_states`` installs detached copies, as :meth:`detach_states` would: after a
        backward the graph behind the states has been used anyway.)

        In sequence mode (:func:`tracetorch.run` with ``mode="sequence"``) the layer runs
        once per sequence, so a callback runs once per backward with ``grad_output`` of the
        whole sequence, ``[T, ...]``, where step mode calls it once per timestep.

        Callbacks are Python code the autograd engine runs, so while any is registered the
        layer runs outside ``torch.compile`` graphs: a graph break (an error with
        ``fullgraph=True``). Without callbacks it compiles like any other layer.

        Args:
            fn: Callable taking ``(layer, grad_output)``.

        Returns:
            A handle whose ``remove()`` unregisters ``fn``.
        """
        if not callable(fn):
            raise TypeError(f"Exciter: expected a callable callback, got {type(fn).__name__}")
        _apply_eagerly()
        handle = RemovableHandle(self._backward_callbacks)
        self._backward_callbacks[handle.id] = fn
        return handle

    def custom_backward(self, grad_output: Tensor) -> None:
        """Call every registered callback as ``fn(self, grad_output)`` under ``no_grad``.

        :class:`ExciterFunction` calls this from its backward pass.
        """
        with torch.no_grad():
            grad_output = grad_output.detach()
            for fn in list(self._backward_callbacks.values()):
                fn(self, grad_output.clone())  # each its own copy, to keep or modify

    def extra_repr(self) -> str:
        extra = f"low={self.low:g}, high={self.high:g}, select_last={self.select_last}"
        return f"{super().extra_repr()}, {extra}"
