"""Operations on every tracetorch layer of a module tree, and the :class:`Model` offering them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from .layer import Layer

__all__ = [
    "Model",
    "TTcompile",
    "TTdecompile",
    "detach_states",
    "layers",
    "load_states",
    "save_states",
    "zero_states",
]


def layers(module: nn.Module) -> Iterator[tuple[str, Layer]]:
    """Yield ``(path, layer)`` for every tracetorch layer registered under ``module``.

    Walks the module tree (``named_modules``), so layers inside ``nn.Sequential``,
    ``nn.ModuleList``, ``nn.ModuleDict`` and nested models are all found; ``module`` itself
    is included when it is a layer (its path is ``""``).
    """
    for path, sub in module.named_modules():
        if isinstance(sub, Layer):
            yield path, sub


def zero_states(module: nn.Module) -> None:
    """Reset every hidden state under ``module`` to ``None`` (recreated as zeros on next use)."""
    for _, layer in layers(module):
        layer.zero_states()


def detach_states(module: nn.Module) -> None:
    """Cut the autograd graph behind every hidden state under ``module``, keeping the values."""
    for _, layer in layers(module):
        layer.detach_states()


def TTcompile(module: nn.Module) -> None:  # noqa: N802 (public name of the API)
    """Bake the transformed parameters of every layer under ``module`` for inference.

    See :meth:`tracetorch.Layer.TTcompile`.
    """
    for _, layer in layers(module):
        layer.TTcompile()


def TTdecompile(module: nn.Module) -> None:  # noqa: N802 (public name of the API)
    """Restore the raw trainable parameters of every layer under ``module``."""
    for _, layer in layers(module):
        layer.TTdecompile()


def _key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def save_states(module: nn.Module) -> dict[str, Tensor]:
    """Snapshot the live hidden states under ``module``.

    Returns:
        A dict of detached copies keyed by module path and state name (``"net.2.mem"``).
        States that have not been created yet (``None``) are left out.
    """
    saved = {}
    for path, layer in layers(module):
        for name in layer.state_names:
            state = getattr(layer, name)
            if state is not None:
                saved[_key(path, name)] = state.detach().clone()
    return saved


def _reference_tensor(layer: Layer) -> Tensor | None:
    """A parameter or buffer of ``layer`` whose device and float dtype states should share."""
    for tensor in layer.parameters():
        return tensor
    for tensor in layer.buffers():
        if tensor.is_floating_point():
            return tensor
    return None


def load_states(module: nn.Module, states: Mapping[str, Tensor], strict: bool = True) -> None:
    """Load hidden states saved by :func:`save_states`, all or nothing.

    Every entry is checked before any state is touched: with ``strict``, the keys must be
    exactly the states declared under ``module``; each value must be a tensor whose size at
    the layer's ``dim`` is ``num_neurons``, and the states of one layer must share a shape.
    Loaded tensors are copied onto the device (and floating dtype) of the layer's
    parameters when it has any.

    Raises:
        TypeError: a value is not a tensor.
        ValueError: missing or unknown keys (``strict``), or a wrong shape.
    """
    if not isinstance(states, Mapping):
        raise TypeError(f"load_states: expected a mapping of tensors, got {type(states).__name__}")
    owner = type(module).__name__
    targets = {}
    for path, layer in layers(module):
        for name in layer.state_names:
            targets[_key(path, name)] = (layer, name)
    unknown = sorted(set(states) - set(targets))
    missing = sorted(set(targets) - set(states))
    if strict and (unknown or missing):
        raise ValueError(
            f"{owner}.load_states: the saved states do not match the model "
            f"(missing: {missing or 'none'}; unknown: {unknown or 'none'}); nothing was loaded. "
            f"Pass strict=False to load the matching keys only."
        )
    plan: list[tuple[Layer, str, Tensor]] = []
    shapes: dict[int, tuple[str, torch.Size]] = {}
    for key, value in states.items():
        if key not in targets:
            continue
        layer, name = targets[key]
        who = f"{owner}.load_states: {key!r} ({type(layer).__name__})"
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{who}: expected a tensor, got {type(value).__name__}; nothing was loaded"
            )
        if (
            not -value.dim() <= layer.dim < value.dim()
            or value.shape[layer.dim] != layer.num_neurons
        ):
            raise ValueError(
                f"{who}: expected a tensor with {layer.num_neurons} entries at dim {layer.dim}, "
                f"got shape {tuple(value.shape)}; nothing was loaded"
            )
        first = shapes.setdefault(id(layer), (key, value.shape))
        if first[1] != value.shape:
            raise ValueError(
                f"{who}: shape {tuple(value.shape)} differs from {first[0]!r} of the same layer "
                f"{tuple(first[1])}; nothing was loaded"
            )
        plan.append((layer, name, value))
    for layer, name, value in plan:
        reference = _reference_tensor(layer)
        value = value.detach()
        if reference is not None:
            dtype = reference.dtype if value.is_floating_point() else None
            value = value.to(device=reference.device, dtype=dtype)
        setattr(layer, name, value.clone())


class Model(nn.Module):
    """An ``nn.Module`` that manages the hidden states of every tracetorch layer inside it.

    Subclass it exactly like ``nn.Module``. Its methods reach every :class:`Layer` among the
    registered submodules at any depth (``nn.Sequential``, ``nn.ModuleList``,
    ``nn.ModuleDict``, nested models). For a plain ``nn.Module`` use the free functions
    :func:`tracetorch.zero_states`, :func:`tracetorch.save_states`, ...

    Example:
        >>> import torch, tracetorch as tt
        >>> class Net(tt.Model):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), tt.snn.Decay(8))
        ...     def forward(self, x):
        ...         return self.net(x)
        >>> model = Net()
        >>> for t in range(5):
        ...     y = model(torch.rand(2, 4))
        >>> sorted(model.save_states())
        ['net.1.mem']
        >>> model.zero_states()
        >>> model.save_states()
        {}
    """

    def __getattr__(self, name: str) -> Tensor | nn.Module:
        # ``self.fc1`` in forward lands here every timestep (nn.Module keeps submodules out of
        # __dict__). Look in _modules first: a name lives in only one of _parameters,
        # _buffers and _modules (nn.Module's registration refuses duplicates), so the order
        # does not change the answer, and submodules are what a forward reads most.
        module = self.__dict__["_modules"].get(name) if "_modules" in self.__dict__ else None
        if module is not None:
            return module
        return super().__getattr__(name)

    def zero_states(self) -> None:
        """Reset every hidden state to ``None``; see :func:`tracetorch.zero_states`."""
        zero_states(self)

    def detach_states(self) -> None:
        """Cut the graph behind every hidden state; see :func:`tracetorch.detach_states`."""
        detach_states(self)

    def save_states(self) -> dict[str, Tensor]:
        """Snapshot the hidden states; see :func:`tracetorch.save_states`."""
        return save_states(self)

    def load_states(self, states: Mapping[str, Tensor], strict: bool = True) -> None:
        """Load saved hidden states, all or nothing; see :func:`tracetorch.load_states`."""
        load_states(self, states, strict=strict)

    def TTcompile(self) -> None:  # noqa: N802 (public name of the API)
        """Bake transformed parameters for inference; see :func:`tracetorch.TTcompile`."""
        TTcompile(self)

    def TTdecompile(self) -> None:  # noqa: N802 (public name of the API)
        """Restore the raw trainable parameters; see :func:`tracetorch.TTdecompile`."""
        TTdecompile(self)
