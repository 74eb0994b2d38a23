"""The stateful layer: hidden states kept inside a module, created lazily from the first input."""

from __future__ import annotations

import numbers
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, NoReturn

import torch
from torch import Tensor, nn

from .functional import _recomputation_error, _recomputing, _views
from .sequence import _restore, _states
from .walk import find_modules

__all__ = ["Layer"]

Transform = Callable[[Tensor], Tensor]


@dataclass(slots=True)
class _Constraint:
    """How one constrained parameter of a layer is stored and read (one per instance)."""

    transform: Transform | None  # None: identity, the raw tensor is the value
    inverse: Transform | None
    rank: int
    learnable: bool
    baked: bool = False  # True after TTcompile(): the value lives in a plain buffer
    kept: Tensor | None = None  # the raw tensor put aside while baked, reused by TTdecompile()
    baked_copy: Tensor | None = None  # the value as baked, to tell whether it was changed


@dataclass(slots=True)
class _ValueCache:
    """The transformed parameter values of one layer, valid while nothing they came from changed.

    ``sources`` names the tensors the values were computed from (raw parameters, or baked
    buffers), with their in-place version counters (``optimizer.step()``,
    ``load_state_dict`` and ``copy_`` bump them) and their ``requires_grad`` (which
    ``requires_grad_()`` changes without a version); ``grad`` is whether autograd was
    recording.
    ``viewed`` holds the values viewed to broadcast along ``dim``, by number of input
    dimensions.
    """

    grad: bool
    sources: tuple[tuple[dict, str, Tensor, int, bool], ...]  # ..., version, requires_grad
    values: dict[str, Tensor]
    viewed: dict[int, dict[str, Tensor]]


def _forget_values(layer_ref: weakref.ReferenceType, cache: _ValueCache) -> Callable:
    """A tensor hook that drops ``cache`` once a backward pass went through its values.

    A backward frees the graph between the raw tensors and the cached values, so values with
    a graph are used by one backward only; the next forward computes them again.
    """

    def hook(grad: Tensor) -> None:
        layer = layer_ref()
        if layer is not None and layer.__dict__.get("_tt_cache") is cache:
            layer.__dict__["_tt_cache"] = None

    return hook


def _definer(cls: type, name: str) -> type:
    """The class in ``cls``'s method resolution order that defines ``name``."""
    return next(c for c in cls.__mro__ if name in c.__dict__)


class Layer(nn.Module):
    """Base class of every stateful tracetorch layer.

    A layer keeps its hidden states as attributes that read ``None`` until the first
    forward, when they are created as zeros shaped like the input (with the size at ``dim``
    replaced by ``num_neurons``). One call per timestep; the states carry over between calls
    until :meth:`zero_states` or :meth:`detach_states`.

    States are read and written through one small interface: :meth:`_read_states` checks an
    input and returns the states a step starts from (zeros for states not created yet,
    nothing stored), :meth:`_write_states` stores new states, all of them together. A
    built-in layer computes every new state first and writes them once the step has
    succeeded, so a call that raises leaves the layer exactly as it was. Assigning a state
    (``self.mem = ...``) and :meth:`_ensure_states` go through the same interface.

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
        ...         x, states = self._read_states(x)
        ...         total = states["total"] + x
        ...         self._write_states({"total": total})
        ...         return total
        >>> layer = Accumulator(3)
        >>> layer.total is None
        True
        >>> _ = layer(torch.ones(2, 3)); layer(torch.ones(2, 3))
        tensor([[2., 2., 2.],
                [2., 2., 2.]])
        >>> layer.zero_states(); layer.total is None
        True
    """

    #: The step methods whose math a built-in layer's fast sequence path reproduces. A
    #: subclass that redefines one of them (``class Noisy(tt.snn.LIF)`` with its own
    #: ``forward``) would make that path compute something else; see :meth:`_follows_step`.
    _sequence_follows: ClassVar[tuple[str, ...]] = ("forward",)
    #: The classes that define those methods for this class (set when the class is defined).
    _step_definers: ClassVar[tuple[type, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._step_definers = tuple({_definer(cls, name) for name in cls._sequence_follows})

    def _follows_step(self, owner: type) -> bool:
        """Whether a fast sequence path written in class ``owner`` computes this layer's step.

        False when a class below ``owner`` redefines one of the step methods the path
        reproduces (:attr:`_sequence_follows`): that path then hands over to the default loop
        over ``forward`` (:meth:`Layer.forward_sequence`), which is always right.
        """
        return all(issubclass(owner, definer) for definer in type(self)._step_definers)

    def __init__(self, num_neurons: int, dim: int = -1, in_features: int | None = None) -> None:
        """Build the layer; the arguments are described on the class."""
        super().__init__()
        name = type(self).__name__
        self.num_neurons = _positive_int(name, "num_neurons", num_neurons)
        self.in_features = (
            None if in_features is None else _positive_int(name, "in_features", in_features)
        )
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
            raise TypeError(f"{name}: expected dim to be an int, got {dim!r}")
        self.dim = int(dim)
        self._state_names: tuple[str, ...] = ()
        self._tt_parameters: dict[str, _Constraint] = {}
        self._tt_cache: _ValueCache | None = None
        self._tt_warn_baked = False  # set by TTcompile(), cleared by the warning

    # ----------------------------------------------------------------------------- states

    def _check_new_name(self, name: str, kind: str) -> None:
        if "_state_names" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}: cannot register {kind} {name!r} before "
                f"Layer.__init__() has run; call super().__init__(...) first in __init__"
            )
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
            or hasattr(type(self), name)
        )
        if taken:
            raise ValueError(
                f"{type(self).__name__}: cannot register {kind} {name!r}: the name is already "
                f"used by an attribute, parameter, buffer, submodule or state"
            )

    def _initialize_state(self, name: str) -> None:
        """Declare a hidden state ``name``; it reads ``None`` until the first forward."""
        self._check_new_name(name, "state")
        self._state_names = (*self._state_names, name)
        self._write_states({name: None})

    def __setattr__(self, name: str, value: object) -> None:
        # Assigning a state (``self.mem = ...`` in a custom layer) is a state write like any
        # other; everything else is nn.Module's business.
        d = self.__dict__
        if name in d.get("_state_names", ()):
            old = d[name]
            self._write_states({name: value})
            # An assignment that cuts the graph behind a state (``layer.mem = layer.mem.detach()``,
            # ``layer.mem = None``) starts a new graph, as detach_states() does: the cached
            # parameter values belong to the old one (a backward through it frees them).
            cut = value is None or value.grad_fn is None
            if cut and old is not None and old.requires_grad:
                d["_tt_cache"] = None
        elif name in d.get("_tt_parameters", ()):
            raise AttributeError(
                f"{type(self).__name__}.{name} is read through a transform; assign to "
                f"raw_{name} (the raw value) or re-register the parameter instead"
            )
        else:
            super().__setattr__(name, value)

    def __getattr__(self, name: str) -> object:
        # Reached only when ordinary lookup fails: constrained parameters (``self.beta``) are
        # read here, through the layer's cache of transformed values; everything else is
        # nn.Module's (parameters, buffers, submodules).
        constraints = self.__dict__.get("_tt_parameters")
        if constraints is not None and name in constraints:
            return self._parameter_values()[name]
        return super().__getattr__(name)

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the hidden states this layer declared, in declaration order."""
        return self._state_names

    def _write_states(self, states: Mapping[str, Tensor | None]) -> None:
        """Store hidden states, all of them at once: the one way a state is ever written.

        Args:
            states: New values by state name (a tensor, or ``None`` to forget the state).
                Names not given keep their value.

        Raises:
            TypeError: a value that is neither a tensor nor ``None``.
            KeyError: a name that is not a declared state.
        """
        d = self.__dict__
        declared = d["_state_names"]
        for name, value in states.items():
            if name not in declared:
                raise KeyError(f"{type(self).__name__}: {name!r} is not a state of this layer")
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"{type(self).__name__}: state {name!r} must be a tensor or None, got "
                    f"{type(value).__name__}"
                )
        d.update(states)

    def _read_states(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Check ``x`` and return it with the states a step on it starts from.

        Live states are returned as they are; states not created yet come as zeros with
        ``x``'s shape (the size at ``dim`` replaced by ``num_neurons``), device and the
        layer's dtype. Nothing is stored: write the new states with :meth:`_write_states`
        once the step has succeeded.

        The input must be a floating tensor on a real device, of the layer's dtype (that of
        its live states, else of its floating parameters) and device, with ``in_features``
        at ``dim`` and, while states are live, their shape elsewhere. Under autocast an input
        of another floating dtype is cast to the layer's dtype (states keep one dtype).

        Returns:
            ``(x, states)``: the input (cast under autocast) and the states by name.

        Raises:
            TypeError: a non-tensor, integer, bool or complex input, or a floating dtype
                other than the layer's outside autocast.
            ValueError: a meta tensor, another device, ``dim`` out of range, a wrong size at
                ``dim`` or a shape that does not match the live states.
        """
        d = self.__dict__
        if torch.is_grad_enabled():
            # a checkpoint replaying this step would advance the states twice
            if _recomputing():
                raise _recomputation_error(type(self).__name__)
            if d["_tt_warn_baked"] and self.training:
                self._warn_baked()
        # Every step after the first: live states of x's dtype and of the state shape x
        # makes (x's, with num_neurons at dim) prove x valid, as they were created or loaded
        # with it. Another real device makes the step fail, then diagnosed; meta would not.
        if not isinstance(x, Tensor) or x.is_meta:
            return self._read_states_checked(x)
        shape, features, neurons = x.shape, d["in_features"], d["num_neurons"]
        if features != neurons:
            # an input projection, features last: only the batch dimensions must match
            if d["dim"] != -1 or not shape or (features is not None and shape[-1] != features):
                return self._read_states_checked(x)
            shape = (*shape[:-1], neurons)
        dtype = x.dtype
        states = {}
        for name in d["_state_names"]:
            state = d[name]
            if state is None or state.shape != shape or state.dtype != dtype:
                return self._read_states_checked(x)
            states[name] = state
        return (x, states) if states else self._read_states_checked(x)

    def _warn_baked(self) -> None:
        """Warn (once per ``TTcompile``) that a baked layer runs with autograd in training."""
        self.__dict__["_tt_warn_baked"] = False
        warnings.warn(
            f"{type(self).__name__}: running a TTcompile()d layer with autograd in training "
            f"mode: its baked parameters are buffers and will not learn; call TTdecompile() "
            f"before training again",
            stacklevel=4,
        )

    def _read_states_checked(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`_read_states` with every check made (first step, or a changed input)."""
        d = self.__dict__
        live = {name: d[name] for name in d["_state_names"] if d[name] is not None}
        x = self._check_input(x, next(iter(live.values()), None))
        shape = x.shape
        if shape[self.dim] != self.num_neurons:
            dim = self.dim % len(shape)
            shape = torch.Size((*shape[:dim], self.num_neurons, *shape[dim + 1 :]))
        for name, state in live.items():
            if state.shape != shape:
                fix = (
                    "pass states that match the input (these were given to "
                    "tt.functional_call, tt.checkpoint or an exported model)"
                    if _views.depth
                    else "call zero_states() before changing the batch or spatial shape"
                )
                raise ValueError(
                    f"{type(self).__name__}: input of shape {tuple(x.shape)} does not match "
                    f"the live state {name!r} of shape {tuple(state.shape)} (expected "
                    f"{tuple(shape)}); {fix}"
                )
        states = {}
        for name in d["_state_names"]:
            state = live.get(name)
            if state is None:  # one tensor each: a layer may update its states in place
                state = x.new_zeros(shape)
            states[name] = state
        return x, states

    def _check_input(self, x: Tensor, like: Tensor | None = None) -> Tensor:
        """Check an input's type, dtype, device and size at ``dim``; the one input check.

        Args:
            x: The input of one step.
            like: A live state, whose dtype and device the input must share (``None``: the
                layer's floating parameters decide, and any floating dtype is accepted by a
                layer without them).

        Returns:
            ``x``, cast to the layer's dtype when autocast is on and the dtypes differ.
        """
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"{name}: expected a floating-point input, got {x.dtype}"
                + (" (complex input is not supported)" if x.is_complex() else "")
            )
        if x.is_meta:
            raise ValueError(f"{name}: expected an input on a real device, got a meta tensor")
        reference = like if like is not None else self._reference_tensor()
        if reference is not None:
            if x.device != reference.device:
                raise ValueError(
                    f"{name}: expected an input on {reference.device} (the device of the "
                    f"layer's {'states' if like is not None else 'parameters'}), got "
                    f"{x.device}; move the input, or the model with .to()"
                )
            if x.dtype != reference.dtype:
                if torch.is_autocast_enabled(x.device.type):
                    x = x.to(reference.dtype)
                else:
                    held = "live states" if like is not None else "parameters"
                    raise TypeError(
                        f"{name}: expected a {reference.dtype} input (the dtype of the layer's "
                        f"{held}), got {x.dtype}; convert the input, or the model with .to() "
                        f"(call zero_states() first to drop states of the old dtype)"
                    )
        self._check_features(x, self.in_features)
        return x

    def _check_features(
        self, t: Tensor, size: int | None, what: str = "input", who: str | None = None
    ) -> None:
        """Raise a ValueError unless ``t`` has ``dim`` in range and ``size`` entries there.

        The one size check, shared by the layers, :func:`tracetorch.load_states` and
        :class:`~tracetorch.snn.Exciter`.

        Args:
            t: The tensor to check.
            size: The size it must have at ``dim`` (``None``: only ``dim`` is checked).
            what: What ``t`` is, for the message (``"input"``, ``"state"``).
            who: Who checks, for the message (default: the layer's class name).
        """
        who = who or type(self).__name__
        if not -t.dim() <= self.dim < t.dim():
            raise ValueError(
                f"{who}: dim={self.dim} is out of range for an {what} with {t.dim()} "
                f"dimension(s) (shape {tuple(t.shape)})"
            )
        if size is not None and t.shape[self.dim] != size:
            raise ValueError(
                f"{who}: expected {size} features at dim {self.dim}, got {what} of shape "
                f"{tuple(t.shape)}"
            )

    def _reference_tensor(self) -> Tensor | None:
        """A floating parameter or buffer of the layer: the dtype and device it works in."""
        # its own tensors first: no walk through submodules (and, under torch.compile, no
        # guards on them) when the layer has any
        for tensor in (*self._parameters.values(), *self._buffers.values()):
            if tensor is not None and tensor.is_floating_point():
                return tensor
        for tensor in self.parameters():
            if tensor.is_floating_point():
                return tensor
        for tensor in self.buffers():
            if tensor.is_floating_point():
                return tensor
        return None

    def _step_failed(self, x: Tensor, states: Mapping[str, Tensor], error: Exception) -> NoReturn:
        """Raise a clear error for a step that failed, when the input or states explain it.

        Called from a built-in layer's ``except`` clause, after which nothing was written.
        """
        name = type(self).__name__
        if torch.is_grad_enabled() and any(s.is_inference() for s in states.values()):
            raise RuntimeError(
                f"{name}: the live states were created under torch.inference_mode() and cannot "
                f"take part in autograd; call zero_states() (or load_states(save_states())) "
                f"before training"
            ) from error
        if torch.is_grad_enabled() and x.is_inference() and "Inference tensors" in str(error):
            raise RuntimeError(
                f"{name}: the input was made under torch.inference_mode(), and the step needs "
                f"to save it for the backward; pass a clone made outside inference mode "
                f"(x.clone()), or run the layer under torch.no_grad()"
            ) from error
        self._check_input(x, next(iter(states.values()), None))
        raise error

    def _ensure_states(self, x: Tensor) -> None:
        """Check ``x`` against the layer and create every ``None`` state as zeros.

        For layers written as in the custom-layer tutorial, which call it first in ``forward``
        and assign their states (``self.mem = ...``). See :meth:`_read_states` for the checks;
        live states whose other dimensions differ from ``x`` are an error (never broadcast):
        call :meth:`zero_states` before a new batch shape.

        Raises:
            TypeError, ValueError: as :meth:`_read_states`, before any state is changed.
        """
        d = self.__dict__
        _, states = self._read_states(x)
        created = {name: s for name, s in states.items() if d[name] is None}
        if created:
            self._write_states(created)

    def forward(self, x: Tensor) -> Tensor:
        """One timestep: ``x`` in, the output out. Every layer defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define forward(x), one timestep")

    # -------------------------------------------------------------------- sequence mode

    def forward_sequence(self, xs: Tensor) -> Tensor:
        """Run a whole sequence, ``[T, *step_shape]`` in, ``[T, *out_step_shape]`` out.

        Equal to stacking ``forward(x)`` for every ``x`` in ``xs`` (outputs, gradients, and
        the states left behind: those of the last step). This default implementation is that
        loop, so every layer has a correct sequence mode; the built-in layers override it
        with faster paths. A subclass of a built-in layer that redefines ``forward`` (or
        ``_step``, for the recurrent cells) gets this loop over its own step, not the
        built-in's fast path, unless it also redefines ``forward_sequence``. ``dim`` keeps
        meaning the feature dimension of one step. A call that raises leaves every state as
        it found it (this layer's and those of the layers inside it), as a failed step does.

        Args:
            xs: The inputs of ``T >= 1`` steps, time first.

        Returns:
            The outputs of every step, time first.
        """
        self._check_sequence(xs)
        step = type(self).forward
        # a step that raises after others succeeded puts back the states the call found
        # (this layer's and those of the layers inside it), so a failed call leaves no trace
        found = _states([m for m in self.modules() if isinstance(m, Layer)])
        try:
            return torch.stack([step(self, x) for x in xs])
        except BaseException:
            _restore(found)
            raise

    def _check_sequence(self, xs: Tensor) -> None:
        """Raise a clear error unless ``xs`` is a tensor with a time dimension first."""
        if not isinstance(xs, Tensor):
            raise TypeError(f"{type(self).__name__}: expected a tensor, got {type(xs).__name__}")
        if xs.dim() < 2 or xs.shape[0] == 0:
            raise ValueError(
                f"{type(self).__name__}: sequence mode expects [T, *step_shape] with T >= 1 "
                f"(time first), got shape {tuple(xs.shape)}"
            )

    def _read_sequence_states(self, xs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`_read_states` for a sequence: checks its first step, returns ``(xs, states)``.

        Every step of ``xs`` shares the first step's shape, dtype and device, so checking one
        checks all; under autocast the whole sequence is cast like a step would be.
        """
        self._check_sequence(xs)
        try:
            x0, states = self._read_states(xs[0])
        except (TypeError, ValueError) as error:
            raise type(error)(f"{error} (sequence mode: xs is [T, *step_shape])") from None
        if x0.dtype != xs.dtype:
            xs = xs.to(x0.dtype)
        return xs, states

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

    def _inner_layers(self) -> list[Layer]:
        """The outermost layers inside this one (a layer built from others), each once.

        :meth:`zero_states`, :meth:`detach_states`, :meth:`TTcompile` and
        :meth:`TTdecompile` act on them too, each through its own method (which reaches the
        layers inside it in turn).
        """
        if not self._modules:
            return []
        found = [
            layer
            for child in self._modules.values()
            if child is not None
            for layer in _outermost_layers(child)
        ]
        return list(dict.fromkeys(found))

    def zero_states(self) -> None:
        """Forget every hidden state: each reads ``None`` until the next forward.

        The layers inside this one, if any, forget theirs too.
        """
        self._write_states(dict.fromkeys(self._state_names))
        self.__dict__["_tt_cache"] = None
        for layer in self._inner_layers():
            layer.zero_states()

    def detach_states(self) -> None:
        """Cut the autograd graph behind every hidden state, keeping its values (truncated BPTT).

        The layers inside this one, if any, cut theirs too.
        """
        d = self.__dict__
        live = {name: d[name] for name in self._state_names if d[name] is not None}
        self._write_states({name: state.detach() for name, state in live.items()})
        self.__dict__["_tt_cache"] = None
        for layer in self._inner_layers():
            layer.detach_states()

    def _apply(self, fn, recurse=True):
        # .to(), .cuda(), .double(), ... move the live states along with the parameters.
        super()._apply(fn, recurse)
        d = self.__dict__
        live = {name: d[name] for name in self._state_names if d[name] is not None}
        self._write_states({name: fn(state) for name, state in live.items()})
        for constraint in self._tt_parameters.values():
            if constraint.baked:
                kept = constraint.kept
                kept.data = fn(kept.data)
                if kept.grad is not None:
                    kept.grad = fn(kept.grad)
                constraint.baked_copy = fn(constraint.baked_copy)
        self.__dict__["_tt_cache"] = None
        return self

    def __getstate__(self) -> dict[str, object]:
        # copy.deepcopy and pickle: live states are copied without their autograd graph (a
        # copy cannot share the original's history), and the value cache is left behind.
        state = self.__dict__.copy()
        for name in self._state_names:
            if state[name] is not None:
                state[name] = state[name].detach()
        state["_tt_cache"] = None
        return state

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

        Nothing is added to the class: ``self.<name>`` is looked up per instance, and its
        transform is computed once and reused until the raw tensor changes (an optimizer
        step, ``load_state_dict``), the graph behind it is used by a backward pass, the grad
        mode changes, or :meth:`zero_states` / :meth:`detach_states` is called. The raw
        tensor is stored in the default dtype (``torch.get_default_dtype()``), whatever the
        dtype of ``value``, so that a layer has one dtype (``.double()`` changes it).

        Two consequences of the reuse:

        - A change must go through the raw tensor's version counter, as every in-place
          operation does (``with torch.no_grad(): layer.raw_beta -= lr * g``, ``copy_``,
          optimizers, ``load_state_dict``). Writes through ``.data`` (``p.data = ...``,
          ``p.data.fill_(...)``, ``torch.nn.utils.vector_to_parameters``) bypass it and are
          seen only after :meth:`zero_states` or :meth:`detach_states`.
        - While training, ``self.<name>`` is the very tensor the steps use. A loss built
          from it (a regularizer) and the task loss share its graph: backpropagate their sum,
          or pass ``retain_graph=True`` to the first of two ``backward()`` calls.

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
            ValueError: bad rank, wrong length, NaN/inf or out-of-bounds value, a meta
                tensor, or a name already in use.
            TypeError: a value that is neither a real number nor a real tensor, or a
                ``learnable`` that is not a bool.
        """
        layer = type(self).__name__
        self._check_new_name(name, "parameter")
        if "raw_" + name in self._parameters or "raw_" + name in self._buffers:
            raise ValueError(f"{layer}: cannot register parameter {name!r}: raw_{name} exists")
        if rank not in (0, 1) or isinstance(rank, bool):
            raise ValueError(f"{layer}: expected {name}_rank to be 0 or 1, got {rank!r}")
        if not isinstance(learnable, bool):
            raise TypeError(f"{layer}: expected learn_{name} to be a bool, got {learnable!r}")
        tensor = _real_tensor(layer, name, value)
        if tensor.dim() == 1:
            allowed = (1,) if rank == 0 else (1, self.num_neurons)
            if tensor.numel() not in allowed:
                raise ValueError(
                    f"{layer}: expected {name} of length {' or '.join(map(str, allowed))} "
                    f"(rank {rank}, num_neurons={self.num_neurons}), got length {tensor.numel()}"
                )
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{layer}: {name} must be finite, got {value!r}")
        bounds = f"({'-inf' if low is None else low}, {'inf' if high is None else high})"
        exact = tensor.double() if not isinstance(value, Tensor) else tensor
        if _outside(exact, low, high):
            raise ValueError(f"{layer}: expected {name} in {bounds}, got {value!r}")
        tensor = tensor.to(torch.get_default_dtype())  # one dtype per layer, as nn.Linear has
        if _outside(tensor, low, high):
            raise ValueError(
                f"{layer}: {name}={value!r} rounds to {tensor.flatten()[0].item()!r} in "
                f"{tensor.dtype}, outside {bounds}; use a value further from the bound or "
                f"a float64 default dtype (torch.set_default_dtype)"
            )
        tensor = tensor.reshape(()) if rank == 0 else tensor.expand(self.num_neurons).clone()
        raw = tensor if inverse is None else inverse(tensor)
        if not torch.isfinite(raw).all():
            raise ValueError(f"{layer}: {name}={value!r} is too close to its bounds to store")
        if learnable:
            self.register_parameter("raw_" + name, nn.Parameter(raw))
        else:
            self.register_buffer("raw_" + name, raw)
        self._tt_parameters[name] = _Constraint(transform, inverse, rank, learnable)
        self.__dict__["_tt_cache"] = None

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the constrained parameters registered with :meth:`_register_parameter`."""
        return tuple(self._tt_parameters)

    def _parameter_values(self, ndim: int | None = None) -> dict[str, Tensor]:
        """The value of every constrained parameter by name, transforms computed once.

        The values are cached while the tensors they come from are unchanged (the same
        objects, at the same in-place version, frozen or not as they were) and the grad mode
        is the same (values from inference tensors, made under ``torch.inference_mode``,
        which keep no version, are never cached); a backward pass through them,
        :meth:`zero_states`, :meth:`detach_states`, an assignment that cuts the graph behind
        a state (``layer.mem = layer.mem.detach()``), ``.to()``, :meth:`TTcompile` and
        :meth:`TTdecompile` drop the cache. Under ``torch.compile`` and ``torch.func``
        transforms they are computed afresh each time (a compiled graph fuses the transforms
        into the step).

        Args:
            ndim: With the number of dimensions of an input, the values come viewed to
                broadcast along ``dim`` (see :meth:`_along_dim`); ``None``: as stored.
        """
        if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
            values = self._compute_values(cache=False)
            return values if ndim is None else self._viewed(values, ndim)
        cache = self.__dict__["_tt_cache"]
        if cache is not None and cache.grad is torch.is_grad_enabled():
            for store, key, tensor, version, requires_grad in cache.sources:
                if (
                    tensor._version != version
                    or store.get(key) is not tensor
                    or tensor.requires_grad is not requires_grad
                ):
                    break
            else:
                if ndim is None:
                    return cache.values
                viewed = cache.viewed.get(ndim)
                if viewed is not None:
                    return viewed
                viewed = cache.viewed[ndim] = self._viewed(cache.values, ndim)
                return viewed
        values = self._compute_values(cache=True)
        if ndim is None:
            return values
        viewed = self._viewed(values, ndim)
        cache = self.__dict__["_tt_cache"]
        if cache is not None:  # None: values not cached (inference tensors)
            cache.viewed[ndim] = viewed
        return viewed

    def _viewed(self, values: dict[str, Tensor], ndim: int) -> dict[str, Tensor]:
        if self.dim == -1 or ndim - 1 - self.dim % ndim == 0:
            return values
        return {name: self._along_dim(value, ndim) for name, value in values.items()}

    def _compute_values(self, cache: bool) -> dict[str, Tensor]:
        """Every value through its transform, cached with what it came from when ``cache``."""
        values: dict[str, Tensor] = {}
        sources = []
        for name, c in self._tt_parameters.items():
            if c.baked:
                store, key = self._buffers, name
            else:
                store, key = (self._parameters if c.learnable else self._buffers), "raw_" + name
            tensor = store.get(key)
            if tensor is None:  # moved out by torch.nn.utils.parametrize or pruning: computed
                tensor = getattr(self, key)  # each read (and never matches the store below)
            if cache:
                if tensor.is_inference():  # made under inference_mode: no version to watch
                    cache = False
                    self.__dict__["_tt_cache"] = None
                else:
                    sources.append((store, key, tensor, tensor._version, tensor.requires_grad))
            if c.baked or c.transform is None:
                values[name] = tensor
            else:
                values[name] = c.transform(tensor)
        if not cache:
            return values
        grad = torch.is_grad_enabled()
        entry = _ValueCache(grad, tuple(sources), values, {})
        if grad:
            hook = None
            for value in values.values():
                if value.grad_fn is not None:
                    hook = hook or _forget_values(weakref.ref(self), entry)
                    value.register_hook(hook)
        self.__dict__["_tt_cache"] = entry
        return values

    @torch.no_grad()
    def TTcompile(self) -> None:  # noqa: N802 (public name of the API)
        """Bake every transformed parameter into a plain buffer, for inference.

        ``self.<name>`` then reads the stored value without recomputing the transform. Calling
        it again does nothing. :meth:`TTdecompile` undoes it. Running a baked layer with
        autograd in training mode warns once: its parameters do not learn while baked. A raw
        tensor under ``torch.nn.utils.parametrize`` (or pruning) is left as it is: its value
        is still computed at each read.
        """
        for name, c in self._tt_parameters.items():
            store = self._parameters if c.learnable else self._buffers
            if c.baked or "raw_" + name not in store:  # parametrized (or pruned): left as is
                continue
            raw = store.pop("raw_" + name)
            value = raw if c.transform is None else c.transform(raw)
            self._buffers[name] = value.detach().clone()
            c.kept, c.baked, c.baked_copy = raw, True, value.detach().clone()
            self.__dict__["_tt_warn_baked"] = True
        self.__dict__["_tt_cache"] = None
        for layer in self._inner_layers():
            layer.TTcompile()

    @torch.no_grad()
    def TTdecompile(self) -> None:  # noqa: N802 (public name of the API)
        """Restore the raw trainable form of every baked parameter.

        The original ``nn.Parameter`` objects come back (so an optimizer that holds them keeps
        working). When the baked value was not changed they hold exactly the raw values they
        held before :meth:`TTcompile` (bit for bit, whatever the transform rounded); when it
        was changed, they hold its inverse transform, computed in float64 and kept finite.
        Calling it again does nothing.
        """
        for name, c in self._tt_parameters.items():
            if not c.baked:
                continue
            value = self._buffers.pop(name)
            raw = c.kept
            if not torch.equal(value, c.baked_copy):
                raw.data = _stable_inverse(c, value).to(raw.dtype)
            store = self._parameters if c.learnable else self._buffers
            store["raw_" + name] = raw
            c.kept, c.baked, c.baked_copy = None, False, None
        self.__dict__["_tt_cache"] = None
        self.__dict__["_tt_warn_baked"] = False
        for layer in self._inner_layers():
            layer.TTdecompile()

    # ------------------------------------------------------------------------------- repr

    def extra_repr(self) -> str:
        parts = [f"num_neurons={self.num_neurons}", f"dim={self.dim}"]
        if self.in_features is not None and self.in_features != self.num_neurons:
            parts.insert(0, f"in_features={self.in_features}")
        with torch.no_grad():
            values = self._parameter_values()
        for name, c in self._tt_parameters.items():
            value = values[name]
            low, high = value.min().item(), value.max().item()
            shown = f"{low:.4g}" if low == high else f"[{low:.4g}..{high:.4g}]"
            flags = ["per neuron" if c.rank else "shared"]
            flags.append("learnable" if c.learnable else "fixed")
            if c.baked:
                flags.append("baked")
            parts.append(f"{name}={shown} ({', '.join(flags)})")
        states = []
        for name in self._state_names:
            state = self.__dict__[name]
            states.append(f"{name}: {'None' if state is None else list(state.shape)}")
        parts.append("states={" + ", ".join(states) + "}")
        return ", ".join(parts)


def _outermost_layers(module: nn.Module) -> list[Layer]:
    """The layers under ``module`` (itself included) not inside another layer, each once.

    Their :meth:`~Layer.zero_states`, :meth:`~Layer.detach_states`, :meth:`~Layer.TTcompile`
    and :meth:`~Layer.TTdecompile` reach the layers inside them.
    """
    return find_modules(  # type: ignore[return-value]
        module, lambda sub: isinstance(sub, Layer), enter_matches=False
    )


def _positive_int(layer: str, arg: str, value: object) -> int:
    """``value`` as an int when it is a positive integer (``numpy.int64`` too, not bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{layer}: expected {arg} to be a positive int, got {value!r}")
    return int(value)


def _real_tensor(layer: str, name: str, value: object) -> Tensor:
    """A parameter's starting value as a 0-d/1-d real tensor (a copy), or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Tensor)):
        raise TypeError(
            f"{layer}: expected {name} to be a float or a 0-d/1-d tensor, got "
            f"{type(value).__name__}"
        )
    if not isinstance(value, Tensor):
        return torch.tensor(float(value), dtype=torch.float64)
    if value.is_meta:
        raise ValueError(f"{layer}: expected {name} on a real device, got a meta tensor")
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{layer}: expected {name} to be a real tensor, got {value.dtype}")
    if value.dim() > 1:
        raise ValueError(
            f"{layer}: expected {name} to be a float or a 0-d/1-d tensor, got a tensor of "
            f"shape {tuple(value.shape)}"
        )
    return value.detach().clone()


def _outside(tensor: Tensor, low: float | None, high: float | None) -> bool:
    return (low is not None and bool((tensor <= low).any())) or (
        high is not None and bool((tensor >= high).any())
    )


def _stable_inverse(c: _Constraint, value: Tensor) -> Tensor:
    """The raw tensor for a changed baked value: the inverse in float64, kept finite.

    A value the transform cannot reach exactly in its dtype (a decay that rounded to 1.0)
    maps to the largest finite raw value instead of ``inf``.
    """
    if c.inverse is None:
        return value
    raw = c.inverse(value.double())
    big = torch.finfo(value.dtype).max
    return torch.nan_to_num(raw, nan=0.0, posinf=min(big, 1e300), neginf=-min(big, 1e300))
