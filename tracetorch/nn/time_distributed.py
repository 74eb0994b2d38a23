"""TimeDistributed: a stateless module applied to every timestep of a sequence at once."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["TimeDistributed"]


class TimeDistributed(nn.Module):
    """Runs a stateless ``module`` that needs ``[B, ...]`` input in both modes of tracetorch.

    In step mode (a plain call) it is ``module(x)``. In sequence mode
    (:func:`tracetorch.run` with ``mode="sequence"``) it receives ``[T, B, ...]``, merges
    time into the batch, calls ``module`` once on ``[T * B, ...]`` and splits the result back
    into ``[T, B, ...]``. Use it for ``nn.Conv2d``, pooling, ``nn.BatchNorm2d`` (in training
    its statistics then cover every timestep of the batch, and its running statistics are
    updated once per sequence: not what step mode computes, which normalizes each step by
    its own), ``nn.Flatten`` and other modules that
    read the batch dimension; those that accept extra leading dimensions (``nn.Linear``,
    activations) need no wrapper.

    Args:
        module: A module without hidden states (no tracetorch layer inside).

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or contains a tracetorch layer (states
            would see ``T * B`` samples of one step instead of ``T`` steps).

    Example:
        >>> import torch, tracetorch as tt
        >>> conv = tt.nn.TimeDistributed(torch.nn.Conv2d(2, 4, 3, padding=1))
        >>> conv(torch.rand(8, 2, 5, 5)).shape  # one step, batch 8
        torch.Size([8, 4, 5, 5])
        >>> conv.forward_sequence(torch.rand(10, 8, 2, 5, 5)).shape  # 10 steps at once
        torch.Size([10, 8, 4, 5, 5])
    """

    def __init__(self, module: nn.Module) -> None:
        """Build the layer; the arguments are described on the class."""
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"TimeDistributed: expected an nn.Module, got {type(module).__name__}")
        _refuse_layers(module)
        self.module = module

    def forward(self, x: Tensor) -> Any:
        """One step: ``module(x)``."""
        return self.module(x)

    def forward_sequence(self, xs: Tensor) -> Any:
        """All steps at once: ``[T, B, ...]`` to ``module`` on ``[T * B, ...]``, split back.

        A module that returns a tuple or list of tensors (``nn.MaxPool2d(...,
        return_indices=True)``) gets each of them split back. A tracetorch layer put into
        the wrapped module after construction is refused here, before anything runs.
        """
        _refuse_layers(self.module)
        if not isinstance(xs, Tensor) or xs.dim() < 2:
            shape = tuple(xs.shape) if isinstance(xs, Tensor) else type(xs).__name__
            raise ValueError(
                f"TimeDistributed: sequence mode expects [T, B, ...] (time first), got {shape}"
            )
        steps, batch = xs.shape[:2]
        if torch.compiler.is_compiling():  # nothing records in a compiled graph
            ys = self.module(xs.flatten(0, 1))
        else:  # while the module runs, the steps merged into its batch (tt.record splits them)
            self.__dict__["_merged_steps"] = steps
            try:
                ys = self.module(xs.flatten(0, 1))
            finally:
                del self.__dict__["_merged_steps"]
        if isinstance(ys, Tensor) and ys.dim() > 0:
            return ys.unflatten(0, (steps, batch))
        if isinstance(ys, tuple | list) and all(isinstance(y, Tensor) and y.dim() > 0 for y in ys):
            split = [y.unflatten(0, (steps, batch)) for y in ys]
            return type(ys)(*split) if hasattr(ys, "_fields") else type(ys)(split)
        raise TypeError(
            f"TimeDistributed: in sequence mode the wrapped {type(self.module).__name__} "
            f"returned {_describe(ys)}; it must return a tensor with the batch first, or a "
            f"tuple or list of them, for the timesteps to be split from the batch again"
        )


def _refuse_layers(module: nn.Module) -> None:
    """Raise if ``module`` holds a tracetorch layer, whose states would see ``T * B`` samples."""
    from ..core.layer import Layer

    inner = [name or "itself" for name, sub in module.named_modules() if isinstance(sub, Layer)]
    if inner:
        raise TypeError(
            f"TimeDistributed: the wrapped {type(module).__name__} contains tracetorch layers "
            f"({', '.join(inner)}); wrap only modules without tracetorch layers and keep "
            f"those layers outside (each runs a whole sequence on its own)"
        )


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {', '.join(_describe(v) for v in value) or 'nothing'}"
    return f"a {type(value).__name__}"
