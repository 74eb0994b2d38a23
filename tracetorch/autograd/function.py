"""Calling a custom ``torch.autograd.Function`` without binding its arguments at every call."""

from __future__ import annotations

import inspect
import weakref
from typing import Any

import torch
from torch.autograd import forward_ad

try:  # what Function.apply does first, for tensors left over from a finished torch.func call
    from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead_wrappers
except ImportError:  # pragma: no cover - a torch without it has no such tensors to unwrap

    def _unwrap_dead_wrappers(args: tuple[Any, ...]) -> tuple[Any, ...]:
        return args


__all__ = ["apply"]

# How many positional arguments each Function's forward takes, when binding them can be
# skipped (a setup_context Function whose forward takes plain positional parameters); -1
# where Function.apply is always used. Weak keys: a Function class made on the fly goes away.
_ARITY: weakref.WeakKeyDictionary[type, int] = weakref.WeakKeyDictionary()
_PLAIN = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _transformed() -> bool:
    """Whether tangents or a ``torch.func`` transform may see what runs now.

    A forward-mode dual level (dual tensors, ``torch.func.jvp`` and ``jacfwd``) or a
    ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``): fused kernels and hand-written
    Functions that have no rule for them step aside for plain operations, which have one.
    """
    return forward_ad._current_level >= 0 or torch._C._are_functorch_transforms_active()


def _arity(function: type[torch.autograd.Function]) -> int:
    n = _ARITY.get(function)
    if n is None:
        n = -1
        if function.setup_context is not torch.autograd.Function.setup_context:
            parameters = inspect.signature(function.forward).parameters.values()
            if all(p.kind in _PLAIN for p in parameters):
                n = len(parameters)
        _ARITY[function] = n
    return n


def apply(function: type[torch.autograd.Function], *args: Any) -> Any:
    """``function.apply(*args)`` for a call that passes every argument of ``forward``.

    For a Function written in the ``setup_context`` style (every Function in tracetorch),
    ``Function.apply`` binds the arguments to ``forward``'s signature at every call, only to
    fill in the defaults of arguments left out: ``inspect.signature`` and ``bind`` take about
    10 µs, more than a spike's kernels on a ``[64, 256]`` step. When every argument is
    given, that binding changes nothing, so this goes straight to the autograd machinery
    ``Function.apply`` itself ends in. It is ``function.apply(*args)`` unchanged under
    ``torch.compile`` (which recognizes ``Function.apply`` when it traces), under
    ``torch.func`` transforms (which dispatch the Function their own way), when arguments are
    left out, and for a ``forward`` with ``*args`` or keyword-only parameters or in the older
    ``ctx`` style (which ``Function.apply`` does not bind).

    Args:
        function: A ``torch.autograd.Function`` subclass.
        *args: Every argument of ``function.forward``, positionally.

    Returns:
        What ``function.apply(*args)`` returns.

    Example:
        >>> import torch
        >>> from tracetorch.autograd import Square, apply
        >>> x = torch.tensor([3.0], requires_grad=True)
        >>> apply(Square, x)
        tensor([9.], grad_fn=<SquareBackward>)
    """
    if (
        torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
        or len(args) != _arity(function)
    ):
        return function.apply(*args)
    return super(torch.autograd.Function, function).apply(*_unwrap_dead_wrappers(args))
