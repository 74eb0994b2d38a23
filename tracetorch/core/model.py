"""Operations on every tracetorch layer of a module tree, and the :class:`Model` offering them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from .layer import Layer, _outermost_layers
from .sequence import Mode, run

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
    for layer in _outermost_layers(module):
        layer.zero_states()


def detach_states(module: nn.Module) -> None:
    """Cut the autograd graph behind every hidden state under ``module``, keeping the values."""
    for layer in _outermost_layers(module):
        layer.detach_states()


def TTcompile(module: nn.Module) -> None:  # noqa: N802 (public name of the API)
    """Bake the transformed parameters of every layer under ``module`` for inference.

    See :meth:`tracetorch.Layer.TTcompile`.
    """
    for layer in _outermost_layers(module):
        layer.TTcompile()


def TTdecompile(module: nn.Module) -> None:  # noqa: N802 (public name of the API)
    """Restore the raw trainable parameters of every layer under ``module``."""
    for layer in _outermost_layers(module):
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


def _check_state(
    who: str, layer: Layer, value: object, untouched: str = "nothing was loaded"
) -> Tensor:
    """Return ``value`` if it can be a hidden state of ``layer``; raise otherwise.

    ``who`` opens every message (``"Net.load_states: 'net.1.mem' (LIF)"``), ``untouched``
    closes it.
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{who}: expected a tensor, got {type(value).__name__}; {untouched}")
    if value.layout != torch.strided or value.is_nested:
        kind = "nested" if value.is_nested else str(value.layout)
        raise TypeError(
            f"{who}: expected a dense (torch.strided) tensor, got a {kind} tensor; convert it "
            f"with .to_dense() first; {untouched}"
        )
    if value.device.type == "meta":
        raise ValueError(
            f"{who}: expected a tensor holding values, got one on the meta device (a shape "
            f"without data); save the states of a model that ran on a real device; "
            f"{untouched}"
        )
    if not value.is_floating_point():
        raise TypeError(
            f"{who}: expected a real floating-point tensor, got dtype {value.dtype}; hidden "
            f"states are real floats (convert with .float() if the values are meant as such); "
            f"{untouched}"
        )
    try:  # the size check every layer makes of its inputs, worded for a state
        layer._check_features(value, layer.num_neurons, what="state", who=who)
    except ValueError as error:
        raise ValueError(f"{error}; {untouched}") from None
    return value


def _batch_size(layer: Layer, value: Tensor) -> int | None:
    """The batch size of a checked state of ``layer``, or ``None`` when it has none.

    The batch size is the size of dimension 0, for a state with at least two dimensions whose
    dimension 0 is not the layer's feature dimension.
    """
    if value.dim() < 2 or layer.dim % value.dim() == 0:
        return None
    return value.shape[0]


def load_states(module: nn.Module, states: Mapping[str, Tensor], strict: bool = True) -> None:
    """Load hidden states saved by :func:`save_states`, all or nothing.

    Every entry is checked before any state is touched, and nothing is loaded when one check
    fails:

    * with ``strict``, the keys must be exactly the states declared under ``module``; without
      it, keys that name no state are ignored and states not named keep their value;
    * each value must be a dense (``torch.strided``) tensor on a real device (not ``meta``),
      of a real floating dtype (not integer, bool or complex), with ``num_neurons`` entries at
      the layer's ``dim``;
    * the states of one layer must share one shape, also with the live states of that layer
      that are not loaded (``strict=False``);
    * all the states loaded by one call must share one batch size. The batch size of a state
      is the size of its dimension 0, for a state with at least two dimensions whose
      dimension 0 is not the layer's feature dimension; other states (1-d, or with the
      features first) are not compared.

    A layer receives copies, on the device and floating dtype of its parameters (or of its
    floating buffers) when it has any: a ``float64`` snapshot loaded into a ``float32`` model
    is cast to ``float32``. A layer without parameters or buffers keeps the saved dtype.

    Args:
        module: The model (or any ``nn.Module``, or a single layer) to load into.
        states: A mapping from ``"<module path>.<state name>"`` to a tensor, as
            :func:`save_states` returns it.
        strict: Require the keys to match the declared states exactly.

    Raises:
        TypeError: ``states`` is not a mapping, or a value is not a tensor, not dense, or
            not of a real floating dtype.
        ValueError: missing or unknown keys (``strict``), a meta tensor, a wrong size at
            ``dim``, states of one layer with different shapes, or different batch sizes.
    """
    owner = type(module).__name__
    if not isinstance(states, Mapping):
        raise TypeError(
            f"{owner}.load_states: expected a mapping of tensors, got {type(states).__name__}; "
            f"nothing was loaded"
        )
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
            f"Pass strict=False to load the matching keys only (save_states() leaves out "
            f"states not created yet: to rewind to such a snapshot, call zero_states() first)"
        )
    plan: list[tuple[Layer, str, Tensor]] = []
    shapes: dict[int, tuple[str, torch.Size]] = {}
    batch: tuple[str, int] | None = None
    for key, value in states.items():
        if key not in targets:
            continue
        layer, name = targets[key]
        who = f"{owner}.load_states: {key!r} ({type(layer).__name__})"
        value = _check_state(who, layer, value)
        first = shapes.setdefault(id(layer), (key, value.shape))
        if first[1] != value.shape:
            raise ValueError(
                f"{who}: shape {tuple(value.shape)} differs from {first[0]!r} of the same layer "
                f"{tuple(first[1])}; nothing was loaded"
            )
        size = _batch_size(layer, value)
        if size is not None:
            batch = batch or (key, size)
            if size != batch[1]:
                raise ValueError(
                    f"{who}: batch size {size} (dim 0 of shape {tuple(value.shape)}) differs "
                    f"from {batch[1]} of {batch[0]!r}; the states loaded together must come "
                    f"from one batch, as save_states() returns them; nothing was loaded"
                )
        reference = layer._reference_tensor()  # the layer's own dtype policy
        if reference is None:
            value = value.detach().clone()
        else:
            value = value.detach().to(reference.device, reference.dtype, copy=True)
        plan.append((layer, name, value))
    loaded = {(id(layer), name) for layer, name, _ in plan}
    for layer, name in targets.values():
        live = getattr(layer, name)
        if (id(layer), name) in loaded or live is None or id(layer) not in shapes:
            continue
        key, shape = shapes[id(layer)]
        if live.shape != shape:
            raise ValueError(
                f"{owner}.load_states: {key!r} ({type(layer).__name__}): shape {tuple(shape)} "
                f"differs from the live state {name!r} of the same layer {tuple(live.shape)}, "
                f"which is not loaded; load all the states of the layer or call zero_states() "
                f"first; nothing was loaded"
            )
    for layer, name, value in plan:  # every value is checked and copied: this cannot fail
        setattr(layer, name, value)


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

    def run(self, xs: Tensor, mode: Mode = "step", compile: bool = False) -> Tensor:
        """Run over ``xs`` (``[T, ...]``) and stack the outputs; see :func:`tracetorch.run`."""
        return run(self, xs, mode, compile=compile)

    def TTcompile(self) -> None:  # noqa: N802 (public name of the API)
        """Bake transformed parameters for inference; see :func:`tracetorch.TTcompile`."""
        TTcompile(self)

    def TTdecompile(self) -> None:  # noqa: N802 (public name of the API)
        """Restore the raw trainable parameters; see :func:`tracetorch.TTdecompile`."""
        TTdecompile(self)
