"""The stateful layer: hidden states kept inside a module, created lazily from the first input."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Layer"]

Transform = Callable[[Tensor], Tensor]


@dataclass(slots=True)
class _ParameterSpec:
    """How one constrained parameter of a layer is stored and read."""

    transform: Transform | None  # None: identity, the raw tensor is the value
    inverse: Transform | None
    rank: int
    learnable: bool
    baked: bool = False  # True after TTcompile(): the value lives in a plain buffer
    kept: Tensor | None = None  # the raw tensor put aside while baked, reused by TTdecompile()


class _TransformedProperty(property):
    """Marks the properties :meth:`Layer._register_parameter` installs on a layer class."""


def _transformed_property(name: str) -> property:
    """A class-level property that reads parameter ``name`` through its transform.

    A plain property keeps the per-timestep read cheap (no ``__getattr__`` detour, no
    parametrization module call) and is traced by ``torch.compile`` like any Python code.
    """
    raw_name = "raw_" + name

    def fget(self: Layer) -> Tensor:
        spec = self._tt_parameters.get(name)
        if spec is None:
            raise AttributeError(f"{type(self).__name__} has no parameter {name!r}")
        if spec.baked:
            return self._buffers[name]
        raw = self._parameters[raw_name] if spec.learnable else self._buffers[raw_name]
        return raw if spec.transform is None else spec.transform(raw)

    def fset(self: Layer, value: object) -> None:
        raise AttributeError(
            f"{type(self).__name__}.{name} is read through a transform; assign to "
            f"{raw_name} (the raw value) or re-register the parameter instead"
        )

    return _TransformedProperty(fget, fset, doc=f"The constrained parameter {name!r} (read-only).")


class Layer(nn.Module):
    """Base class of every stateful tracetorch layer.

    A layer keeps its hidden states as attributes that read ``None`` until the first
    forward, when :meth:`_ensure_states` creates them as zeros shaped like the input (with
    the size at ``dim`` replaced by ``num_neurons``). One call per timestep; the states carry
    over between calls until :meth:`zero_states` or :meth:`detach_states`.

    Args:
        num_neurons: Size of the feature dimension of the states (and of the output).
        dim: The feature dimension of the input, counted as in PyTorch (``-1``: last;
            ``-3`` on ``[B, C, H, W]``: channels).
        in_features: Size the input must have at ``dim``; ``None`` leaves it unchecked
            (a subclass with its own input projection checks it there).

    Example:
        >>> import torch, tracetorch as tt
        >>> class Accumulator(tt.Layer):
        ...     def __init__(self, n):
        ...         super().__init__(n, in_features=n)
        ...         self._initialize_state("total")
        ...     def forward(self, x):
        ...         self._ensure_states(x)
        ...         self.total = self.total + x
        ...         return self.total
        >>> layer = Accumulator(3)
        >>> layer.total is None
        True
        >>> _ = layer(torch.ones(2, 3)); layer(torch.ones(2, 3))
        tensor([[2., 2., 2.],
                [2., 2., 2.]])
        >>> layer.zero_states(); layer.total is None
        True
    """

    def __init__(self, num_neurons: int, dim: int = -1, in_features: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        checked = {"num_neurons": num_neurons}
        if in_features is not None:
            checked["in_features"] = in_features
        for arg, value in checked.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected {arg} to be a positive int, got {value!r}")
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"{name}: expected dim to be an int, got {dim!r}")
        self.num_neurons = num_neurons
        self.dim = dim
        self.in_features = in_features
        self._state_names: tuple[str, ...] = ()
        self._tt_parameters: dict[str, _ParameterSpec] = {}

    # ----------------------------------------------------------------------------- states

    def _check_new_name(self, name: str, kind: str) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"{type(self).__name__}: {kind} name must be an identifier, got {name!r}"
            )
        taken = (
            name in self._state_names
            or name in self._tt_parameters
            or name in self.__dict__
            or name in self._parameters
            or name in self._buffers
            or name in self._modules
            or (
                hasattr(type(self), name)
                # another instance of this class registered the same parameter name
                and not (
                    kind == "parameter"
                    and isinstance(getattr(type(self), name), _TransformedProperty)
                )
            )
        )
        if taken:
            raise ValueError(
                f"{type(self).__name__}: cannot register {kind} {name!r}: the name is already "
                f"used by an attribute, parameter, buffer, submodule or state"
            )

    def _initialize_state(self, name: str) -> None:
        """Declare a hidden state ``name``; it reads ``None`` until the first forward."""
        self._check_new_name(name, "state")
        object.__setattr__(self, name, None)
        self._state_names = (*self._state_names, name)

    def __setattr__(self, name: str, value: object) -> None:
        # Writing a state is the per-timestep hot path: store it directly, skipping
        # nn.Module's parameter/buffer/submodule bookkeeping (a state is none of those).
        if name in self.__dict__.get("_state_names", ()):
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"{type(self).__name__}: state {name!r} must be a tensor or None, got "
                    f"{type(value).__name__}"
                )
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the hidden states this layer declared, in declaration order."""
        return self._state_names

    def _ensure_states(self, x: Tensor) -> None:
        """Check ``x`` against the layer and create every ``None`` state as zeros.

        The states take ``x``'s shape with the size at ``dim`` replaced by ``num_neurons``,
        and ``x``'s device and dtype. Live states whose other dimensions differ from ``x``
        are an error (never broadcast): call :meth:`zero_states` before a new batch shape.

        Raises:
            ValueError: ``dim`` out of range, wrong size at ``dim``, or a shape mismatch with
                the live states. Raised before any state is changed.
        """
        shape = x.shape
        d = self.__dict__
        if d["in_features"] == d["num_neurons"] and d["_state_names"]:
            # Fast path of every step after the first: live states of exactly x's shape
            # prove x valid (they were created or loaded with num_neurons at dim).
            for name in d["_state_names"]:
                state = d[name]
                if state is None or state.shape != shape:
                    break
            else:
                return
        try:
            size = shape[self.dim]
        except IndexError:
            raise ValueError(
                f"{type(self).__name__}: dim={self.dim} is out of range for an input with "
                f"{x.dim()} dimension(s) (shape {tuple(shape)})"
            ) from None
        if self.in_features is not None and size != self.in_features:
            raise ValueError(
                f"{type(self).__name__}: expected {self.in_features} features at dim "
                f"{self.dim}, got input of shape {tuple(shape)}"
            )
        if size != self.num_neurons:
            dim = self.dim % len(shape)
            shape = torch.Size((*shape[:dim], self.num_neurons, *shape[dim + 1 :]))
        missing = False
        for name in self._state_names:
            state = getattr(self, name)
            if state is None:
                missing = True
            elif state.shape != shape:
                raise ValueError(
                    f"{type(self).__name__}: input of shape {tuple(x.shape)} does not match "
                    f"the live state {name!r} of shape {tuple(state.shape)} (expected "
                    f"{tuple(shape)}); call zero_states() before changing the batch or "
                    f"spatial shape"
                )
        if missing:
            for name in self._state_names:
                if getattr(self, name) is None:
                    setattr(self, name, x.new_zeros(shape))

    def _to_working_dim(self, t: Tensor) -> Tensor:
        """Move ``dim`` to the last position (no copy when it already is last)."""
        dim = self.dim
        if dim == -1 or dim == t.dim() - 1:
            return t
        return t.movedim(dim, -1)

    def _from_working_dim(self, t: Tensor) -> Tensor:
        """Move the last dimension back to ``dim`` (inverse of :meth:`_to_working_dim`)."""
        dim = self.dim
        if dim == -1 or dim == t.dim() - 1:
            return t
        return t.movedim(-1, dim)

    def _along_dim(self, value: Tensor, ndim: int) -> Tensor:
        """View a per-neuron value (``[num_neurons]``) so it broadcasts along ``dim``.

        For an ``ndim``-dimensional tensor with the neurons at ``dim``, a 1-d value becomes
        ``[num_neurons, 1, ..., 1]`` (one trailing 1 per dimension after ``dim``); a scalar,
        or any value when ``dim`` is last, is returned as it is. An elementwise step can then
        run on states and inputs in their own layout, with no dimension moved.

        Example:
            >>> import torch, tracetorch as tt
            >>> tt.snn.Decay(3, dim=-3)._along_dim(torch.ones(3), 4).shape
            torch.Size([3, 1, 1])
        """
        trailing = ndim - 1 - self.dim % ndim
        if trailing == 0 or value.dim() == 0:
            return value
        return value.view(-1, *(1,) * trailing)

    def zero_states(self) -> None:
        """Forget every hidden state: each reads ``None`` until the next forward."""
        for name in self._state_names:
            setattr(self, name, None)

    def detach_states(self) -> None:
        """Cut the autograd graph behind every state, keeping its values (truncated BPTT)."""
        for name in self._state_names:
            state = getattr(self, name)
            if state is not None:
                setattr(self, name, state.detach())

    def _apply(self, fn, recurse=True):
        # .to(), .cuda(), .double(), ... move the live states along with the parameters.
        super()._apply(fn, recurse)
        for name in self._state_names:
            state = getattr(self, name)
            if state is not None:
                setattr(self, name, fn(state))
        return self

    # ------------------------------------------------------------------------- parameters

    def _register_parameter(
        self,
        name: str,
        value: float | Tensor,
        rank: int = 1,
        learnable: bool = True,
        transform: Transform | None = None,
        inverse: Transform | None = None,
        low: float | None = None,
        high: float | None = None,
    ) -> None:
        """Register a parameter stored raw as ``raw_<name>`` and read as ``self.<name>``.

        Args:
            name: Public name; ``self.<name>`` returns ``transform(raw_<name>)``.
            value: The value the parameter starts with (not the raw value): a float or a
                0-d / 1-d tensor (1-d of length ``num_neurons``).
            rank: 0 for one scalar shared by the layer, 1 for one value per neuron.
            learnable: Store the raw tensor as an ``nn.Parameter`` (True) or a buffer (False).
            transform: Maps the raw tensor to the value (``None``: identity).
            inverse: Maps a value to the raw tensor (``None``: identity).
            low, high: Open bounds the value must lie within (``None``: unbounded).

        Raises:
            ValueError: bad rank, wrong length, NaN/inf or out-of-bounds value, or a name
                already in use.
            TypeError: a value that is neither a real number nor a tensor.
        """
        layer = type(self).__name__
        self._check_new_name(name, "parameter")
        if "raw_" + name in self._parameters or "raw_" + name in self._buffers:
            raise ValueError(f"{layer}: cannot register parameter {name!r}: raw_{name} exists")
        if rank not in (0, 1) or isinstance(rank, bool):
            raise ValueError(f"{layer}: expected {name}_rank to be 0 or 1, got {rank!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
            raise TypeError(
                f"{layer}: expected {name} to be a float or a 0-d/1-d tensor, got "
                f"{type(value).__name__}"
            )
        if isinstance(value, Tensor):
            tensor = value.detach().clone()
            if not tensor.is_floating_point():
                tensor = tensor.to(torch.get_default_dtype())
        else:
            tensor = torch.tensor(float(value), dtype=torch.get_default_dtype())
        if tensor.dim() > 1:
            raise ValueError(
                f"{layer}: expected {name} to be a float or a 0-d/1-d tensor, got a tensor of "
                f"shape {tuple(tensor.shape)}"
            )
        if tensor.dim() == 1:
            allowed = (1,) if rank == 0 else (1, self.num_neurons)
            if tensor.numel() not in allowed:
                raise ValueError(
                    f"{layer}: expected {name} of length {' or '.join(map(str, allowed))} "
                    f"(rank {rank}, num_neurons={self.num_neurons}), got length {tensor.numel()}"
                )
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{layer}: {name} must be finite, got {value!r}")
        too_low = low is not None and bool((tensor <= low).any())
        too_high = high is not None and bool((tensor >= high).any())
        if too_low or too_high:
            bounds = f"({'-inf' if low is None else low}, {'inf' if high is None else high})"
            raise ValueError(f"{layer}: expected {name} in {bounds}, got {value!r}")
        tensor = tensor.reshape(()) if rank == 0 else tensor.expand(self.num_neurons).clone()
        raw = tensor if inverse is None else inverse(tensor)
        if not torch.isfinite(raw).all():
            raise ValueError(f"{layer}: {name}={value!r} is too close to its bounds to store")
        if learnable:
            self.register_parameter("raw_" + name, nn.Parameter(raw))
        else:
            self.register_buffer("raw_" + name, raw)
        self._tt_parameters[name] = _ParameterSpec(transform, inverse, rank, learnable)
        cls = type(self)
        if not isinstance(getattr(cls, name, None), _TransformedProperty):
            setattr(cls, name, _transformed_property(name))

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the constrained parameters registered with :meth:`_register_parameter`."""
        return tuple(self._tt_parameters)

    @torch.no_grad()
    def TTcompile(self) -> None:  # noqa: N802 (public name of the API)
        """Bake every transformed parameter into a plain buffer, for inference.

        ``self.<name>`` then reads the stored value without recomputing the transform. Calling
        it again does nothing. :meth:`TTdecompile` undoes it.
        """
        for name, spec in self._tt_parameters.items():
            if spec.baked:
                continue
            store = self._parameters if spec.learnable else self._buffers
            raw = store.pop("raw_" + name)
            value = raw if spec.transform is None else spec.transform(raw)
            self._buffers[name] = value.detach().clone()
            spec.kept, spec.baked = raw, True

    @torch.no_grad()
    def TTdecompile(self) -> None:  # noqa: N802 (public name of the API)
        """Restore the raw trainable form of every baked parameter through its inverse.

        The original ``nn.Parameter`` objects come back (so an optimizer that holds them keeps
        working), holding the inverse transform of the baked value. Calling it again does
        nothing.
        """
        for name, spec in self._tt_parameters.items():
            if not spec.baked:
                continue
            value = self._buffers.pop(name)
            raw = spec.kept
            raw.data = value if spec.inverse is None else spec.inverse(value)
            store = self._parameters if spec.learnable else self._buffers
            store["raw_" + name] = raw
            spec.kept, spec.baked = None, False

    # ------------------------------------------------------------------------------- repr

    def extra_repr(self) -> str:
        parts = [f"num_neurons={self.num_neurons}", f"dim={self.dim}"]
        if self.in_features is not None and self.in_features != self.num_neurons:
            parts.insert(0, f"in_features={self.in_features}")
        for name, spec in self._tt_parameters.items():
            value = getattr(self, name).detach()
            low, high = value.min().item(), value.max().item()
            shown = f"{low:.4g}" if low == high else f"[{low:.4g}..{high:.4g}]"
            flags = ["per neuron" if spec.rank else "shared"]
            flags.append("learnable" if spec.learnable else "fixed")
            if spec.baked:
                flags.append("baked")
            parts.append(f"{name}={shown} ({', '.join(flags)})")
        states = []
        for name in self._state_names:
            state = getattr(self, name)
            states.append(f"{name}: {'None' if state is None else list(state.shape)}")
        parts.append("states={" + ", ".join(states) + "}")
        return ", ".join(parts)
