"""The forward, parameters, initialisation and PyTorch conversion shared by SimpleRNN, GRU, LSTM."""

from __future__ import annotations

import math
from typing import ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ..autograd.function import _transformed
from ..core.layer import _definer, _positive_int
from .layer import Layer

__all__ = ["CellLayer"]

_Cell = TypeVar("_Cell", bound="CellLayer")

_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class CellLayer(Layer):
    """Base of the recurrent layers laid out like PyTorch's ``nn.RNNCell`` family.

    Holds ``weight_ih`` ``[G * H, I]``, ``weight_hh`` ``[G * H, H]`` and, with ``bias``,
    ``bias_ih`` and ``bias_hh`` ``[G * H]``, where ``G`` is the number of gate blocks of the
    subclass, all drawn from ``uniform(-1/sqrt(H), 1/sqrt(H))`` as PyTorch does. Subclasses
    set the class attributes below (``cell_states`` names the states, the first is also the
    output) and write :meth:`_step`, the math of one step on features-last tensors. A
    subclass of a built-in cell may declare more states of its own (``_initialize_state``
    after ``super().__init__``, updated in its own ``forward``): the step leaves them alone.
    Sequence mode calls the subclass's :meth:`_sequence_kernel` (a fused multi-step kernel)
    where it has one written for its own :meth:`_step`, and loops over :meth:`forward`
    otherwise.

    Args:
        in_features: Features of the input at ``dim`` (``I``).
        out_features: Features of the hidden state and output (``H``).
        dim: The feature dimension of the input.
        bias: Learn the two bias vectors (``False``: no biases, like PyTorch's ``bias=False``).
    """

    #: Number of gate blocks stacked in the weights (1 RNN, 3 GRU, 4 LSTM).
    num_gates: ClassVar[int]
    #: The PyTorch cell and sequence module with the same parameter layout.
    torch_cell: ClassVar[type[nn.RNNCellBase]]
    torch_sequence: ClassVar[type[nn.RNNBase]]
    #: Constructor options shared with the PyTorch modules, read as attributes of both.
    torch_options: ClassVar[tuple[str, ...]] = ()
    #: The states :meth:`_step` takes and returns, in order; ``__init__`` declares them.
    #: Left empty, the step takes every state the layer declares (in declaration order).
    cell_states: ClassVar[tuple[str, ...]] = ()
    # the fast sequence path is the multi-step kernel, written for the step of the class that
    # defines it (_kernel_owner, set when a class is defined)
    _sequence_follows: ClassVar[tuple[str, ...]] = ("forward", "_step")
    _kernel_owner: ClassVar[type]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._kernel_owner = _definer(cls, "_sequence_kernel")

    def __init__(
        self, in_features: int, out_features: int, dim: int = -1, bias: bool = True
    ) -> None:
        """Build the layer; the arguments are described on the class."""
        name = type(self).__name__
        if not hasattr(self, "num_gates"):
            raise TypeError(
                f"{name}: CellLayer is a base class: subclass it with num_gates, _step and "
                f"cell_states (see tt.rnn.GRU), or use tt.rnn.GRU, LSTM or SimpleRNN"
            )
        _positive_int(name, "out_features", out_features)  # by its name here, not num_neurons
        super().__init__(out_features, dim=dim, in_features=in_features)
        if not isinstance(bias, bool):
            raise TypeError(f"{type(self).__name__}: expected bias to be a bool, got {bias!r}")
        self.bias = bias
        rows = self.num_gates * out_features
        self.weight_ih = nn.Parameter(torch.empty(rows, in_features))
        self.weight_hh = nn.Parameter(torch.empty(rows, out_features))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(rows))
            self.bias_hh = nn.Parameter(torch.empty(rows))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()
        for name in self.cell_states:
            self._initialize_state(name)

    def _step(self, x: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        """The new states from the input and the states, in declaration order, features last."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """One timestep: the new states from ``x`` and the states; returns the first state.

        Args:
            x: The input, ``(*, in_features, *)`` with the features at ``dim``.

        Returns:
            The new hidden state, shaped like ``x`` with ``out_features`` at ``dim``.
        """
        x, states = self._read_states(x)
        names = self.cell_states or self._state_names  # those the step takes
        try:
            new = self._step(
                self._to_working_dim(x), *(self._to_working_dim(states[n]) for n in names)
            )
        except Exception as error:  # nothing was written: say why if the input explains it
            self._step_failed(x, states, error)
        # under autocast the kernels compute in low precision; states keep the layer's dtype
        new = [self._from_working_dim(s if s.dtype == x.dtype else s.to(x.dtype)) for s in new]
        self._write_states(dict(zip(names, new, strict=True)))
        return new[0]

    def forward_sequence(self, xs: Tensor) -> Tensor:
        """A whole sequence in one call of PyTorch's fused multi-step kernel (``torch.gru``, ...).

        ``xs`` is ``[T, *step_shape]``; every step's leading dimensions are flattened into
        one batch for the kernel (the one ``nn.GRU``/``nn.LSTM``/``nn.RNN`` call) and
        restored after. Equal to calling :meth:`forward` on each step; the states left are
        the last step's.
        """
        kernel = type(self)._kernel_owner
        if not self._follows_step(kernel) or _transformed():
            # a subclass that redefined the step (or wrote only _step: no kernel), or
            # torch.func (vmap, jacrev), for which PyTorch's multi-step kernels have no
            # batching rule, or dual tensors (forward mode), which the CPU's float32 LSTM
            # kernel (mkldnn) cannot carry: the loop over forward
            return super().forward_sequence(xs)
        xs, states = self._read_sequence_states(xs)
        steps = xs.shape[0]
        step_dim = self.dim if self.dim < 0 else self.dim + 1  # dim counted in one step
        seq = xs if step_dim == -1 or step_dim == xs.dim() - 1 else xs.movedim(step_dim, -1)
        batch_shape, n = seq.shape[1:-1], self.num_neurons
        flat = len(batch_shape) == 1  # [T, B, F]: the kernel's own layout, nothing to reshape
        rows = seq if flat else seq.reshape(steps, -1, seq.shape[-1])
        names = self.cell_states or self._state_names  # those the step takes
        first = [self._to_working_dim(states[name]) for name in names]
        first = [s[None] if flat else s.reshape(1, -1, n) for s in first]
        try:
            out, *last = self._sequence_kernel(rows, first)
        except Exception as error:  # nothing was written: say why if the input explains it
            self._step_failed(xs[0], states, error)
        if out.dtype != xs.dtype:  # autocast computed in low precision: keep the layer's dtype
            out, last = out.to(xs.dtype), [s.to(xs.dtype) for s in last]
        if not flat:
            out = out.reshape(steps, *batch_shape, n)
        if not (step_dim == -1 or step_dim == xs.dim() - 1):
            out = out.movedim(-1, step_dim)
        new = [self._from_working_dim(s[0] if flat else s.reshape(*batch_shape, n)) for s in last]
        self._write_states(dict(zip(names, new, strict=True)))
        return out

    def _sequence_kernel(self, xs: Tensor, states: list[Tensor]) -> tuple[Tensor, ...]:
        """``(outputs, *last_states)`` from ``[T, R, I]`` inputs and ``[1, R, H]`` states."""
        raise NotImplementedError

    @property
    def _flat_weights(self) -> list[Tensor]:
        """The weights as PyTorch's multi-step kernels take them (biases only with ``bias``)."""
        return list(self._weights[: 4 if self.bias else 2])

    @property
    def _weights(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """``(weight_ih, weight_hh, bias_ih, bias_hh)``, as the step functions take them.

        Read from ``_parameters`` directly: this runs at every step, and attribute lookup of a
        parameter goes through ``__getattr__`` (under ``torch.func.functional_call`` the
        swapped-in tensors are in ``_parameters`` too). A weight that
        ``torch.nn.utils.parametrize``, pruning or ``weight_norm`` moved out of
        ``_parameters`` is read as an attribute, which computes it.
        """
        p = self._parameters
        try:
            return p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
        except KeyError:
            return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    @property
    def out_features(self) -> int:
        """Features of the hidden state and output (the same as ``num_neurons``)."""
        return self.num_neurons

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw every weight and bias from ``uniform(-1/sqrt(H), 1/sqrt(H))``."""
        bound = 1.0 / math.sqrt(self.num_neurons)
        for parameter in self.parameters(recurse=False):
            parameter.uniform_(-bound, bound)

    # ----------------------------------------------------------------- PyTorch conversion

    @classmethod
    def from_torch(cls: type[_Cell], module: nn.Module, dim: int = -1) -> _Cell:
        """Build a layer holding a copy of the weights of a PyTorch recurrent module.

        Stepping the layer over a sequence, from zero states, then gives the outputs of the
        PyTorch module run on the whole sequence (``batch_first`` plays no part: the layer
        takes one timestep per call). The layer takes the module's dtype and device.

        Args:
            module: The matching cell (e.g. ``nn.GRUCell`` for :class:`GRU`) or sequence
                module (e.g. ``nn.GRU``) with one layer, one direction and, for ``nn.LSTM``,
                no projection (``proj_size=0``).
            dim: The feature dimension of the layer's input.

        Raises:
            TypeError: ``module`` is not the matching PyTorch cell or sequence module.
            ValueError: the sequence module has several layers, two directions or a
                projection, which a single tracetorch layer cannot hold.
        """
        name = f"{cls.__name__}.from_torch"
        cell, sequence = cls.torch_cell.__name__, cls.torch_sequence.__name__
        if isinstance(module, cls.torch_cell):
            suffix = ""
        elif isinstance(module, cls.torch_sequence):
            unsupported = []
            if module.num_layers != 1:
                unsupported.append(f"num_layers={module.num_layers} (expected 1)")
            if module.bidirectional:
                unsupported.append("bidirectional=True (expected False)")
            if getattr(module, "proj_size", 0):
                unsupported.append(f"proj_size={module.proj_size} (expected 0)")
            if unsupported:
                raise ValueError(
                    f"{name}: unsupported nn.{sequence} configuration: "
                    f"{', '.join(unsupported)}; build one tracetorch layer per layer and "
                    f"direction instead"
                )
            suffix = "_l0"
        else:
            raise TypeError(
                f"{name}: expected an nn.{sequence} or nn.{cell}, got {type(module).__name__}"
            )
        options = {option: getattr(module, option) for option in cls.torch_options}
        layer = cls(module.input_size, module.hidden_size, dim=dim, bias=module.bias, **options)
        source = module.weight_ih if suffix == "" else module.weight_ih_l0
        layer.to(device=source.device, dtype=source.dtype)
        layer._copy_weights(module, suffix, to_torch=False)
        return layer

    def to_torch(self, sequence: bool = False) -> nn.Module:
        """A PyTorch module holding a copy of this layer's weights.

        Args:
            sequence: Return the sequence module (e.g. ``nn.GRU``, one layer, input
                ``[L, B, I]``) instead of the cell (e.g. ``nn.GRUCell``, one step).

        Returns:
            The PyTorch module, on this layer's dtype and device.
        """
        module_type = self.torch_sequence if sequence else self.torch_cell
        options = {option: getattr(self, option) for option in self.torch_options}
        module = module_type(
            self.in_features,
            self.num_neurons,
            bias=self.bias,
            device=self.weight_ih.device,
            dtype=self.weight_ih.dtype,
            **options,
        )
        self._copy_weights(module, "_l0" if sequence else "", to_torch=True)
        return module

    @torch.no_grad()
    def _copy_weights(self, module: nn.Module, suffix: str, to_torch: bool) -> None:
        for name in _WEIGHTS if self.bias else _WEIGHTS[:2]:
            ours, theirs = getattr(self, name), getattr(module, name + suffix)
            (theirs if to_torch else ours).copy_(ours if to_torch else theirs)

    # ------------------------------------------------------------------------------- repr

    def extra_repr(self) -> str:
        options = "".join(f", {name}={getattr(self, name)!r}" for name in self.torch_options)
        return super().extra_repr() + options + ("" if self.bias else ", bias=False")


CellLayer._kernel_owner = CellLayer  # its _sequence_kernel is the one that raises
