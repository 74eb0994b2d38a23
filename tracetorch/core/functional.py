"""A pure-function view of any stateful model: states in, output and new states out.

A tracetorch model keeps its hidden states inside its layers, which is what makes it easy to
step. Tools that replay or transform a computation (activation checkpointing, ``torch.func``,
``torch.export``) need the opposite: a function whose result depends only on its arguments
and which changes nothing. :func:`functional_call` gives that view of any model without a
line of extra code in its layers: it lends the layers the given states for one call, takes
the states they leave behind, and puts the model's own states back. :func:`checkpoint` uses
it to run long sequences with activation memory bounded by a segment instead of the whole
sequence.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from .sequence import Mode, run, sequence_mode

if TYPE_CHECKING:
    from .layer import Layer

__all__ = ["checkpoint", "functional_call"]


class _OpenViews(threading.local):
    """How many pure views are open on this thread (each thread starts at 0).

    A layer step run inside one reads only the states it was lent, so a replay of it (a
    checkpoint recomputing it during backward) computes exactly what the first run did.
    """

    depth = 0


_views = _OpenViews()


def _recomputing() -> bool:
    """Whether a layer step running now is a replay of a forward, made during a backward pass.

    ``torch.utils.checkpoint`` recomputes a checkpointed function while the autograd engine
    executes a backward pass (inside the checkpoint's backward with ``use_reentrant=True``,
    inside the unpacking of a saved tensor otherwise), with grad mode enabled. A stateful
    layer replayed that way reads states its first run already advanced, and advances them
    again: the gradient is silently wrong. This is ``True`` exactly in that situation: the
    engine is running a backward pass on this thread, grad mode is on, and no pure view
    (:func:`functional_call`, :func:`checkpoint`) lent the layers their states. Code that runs
    the network from a backward hook under ``torch.no_grad()`` (the probes of
    :class:`~tracetorch.snn.Exciter` callbacks) is not a replay. While ``torch.compile``
    traces a step it is ``False``: the check is Python that a trace leaves out.

    Cheap enough for every step (a fraction of a microsecond); meant to be called where a
    layer step reads its states, raising :func:`_recomputation_error` when it is ``True``.
    """
    if not torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    return torch._C._current_graph_task_id() != -1 and _views.depth == 0


def _recomputation_error(who: str) -> RuntimeError:
    """The error a layer raises when :func:`_recomputing` says its step is being replayed."""
    return RuntimeError(
        f"{who}: this stateful layer is being recomputed during a backward pass (activation "
        f"checkpointing of plain module calls): the replay would read hidden states that the "
        f"first run already advanced, advance them again and give a wrong gradient; "
        f"use tt.checkpoint(model, xs), or checkpoint a function that steps the model with "
        f"tt.functional_call(model, states, x), which takes and returns the states explicitly"
    )


def _state_slots(module: nn.Module) -> dict[str, tuple[Layer, str]]:
    """Every declared state under ``module``: ``{"net.2.mem": (layer, "mem"), ...}``."""
    # Imported here, not at the top: layer.py imports this module (for _recomputing), and
    # model.py imports layer.py.
    from .model import _key, layers

    return {
        _key(path, name): (layer, name)
        for path, layer in layers(module)
        for name in layer.state_names
    }


class _View:
    """The states of the layers of one module, read as a dict keyed like ``save_states``."""

    def __init__(self, slots: dict[str, tuple[Layer, str]]) -> None:
        self.slots = slots

    def states(self) -> dict[str, Tensor]:
        """The states the layers hold now (not detached: they carry their autograd graph)."""
        found = {}
        for key, (layer, name) in self.slots.items():
            state = layer.__dict__[name]
            if state is not None:
                found[key] = state
        return found


def _checked_slots(
    module: nn.Module, states: Mapping[str, Tensor | None], who: str
) -> dict[str, tuple[Layer, str]]:
    """The state slots of ``module``, after checking that ``states`` can be lent to them.

    Raises:
        TypeError: ``states`` is not a mapping, or holds a value that is not a tensor or None,
            or not of a real floating dtype.
        ValueError: a key that names no state under ``module``, or a value without the
            layer's ``num_neurons`` entries at its ``dim``.
    """
    from .model import _check_state  # see _state_slots

    if not isinstance(states, Mapping):
        raise TypeError(
            f"{who}: expected states to be a mapping from state keys to tensors (as "
            f"tt.save_states returns it), got {type(states).__name__}"
        )
    slots = _state_slots(module)
    unknown = sorted(set(states) - set(slots))
    if unknown:
        raise ValueError(
            f"{who}: unknown state key(s) {unknown} for {type(module).__name__}; its states "
            f"are {sorted(slots) or 'none'} (the keys of tt.save_states: module path, then name)"
        )
    for key, value in states.items():
        if value is None:
            continue
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{who}: expected state {key!r} to be a tensor or None, got {type(value).__name__}"
            )
        layer = slots[key][0]
        what = f"{who}: state {key!r} ({type(layer).__name__})"
        # its dtype is the layer's input check's: parameters_and_buffers may change the layer's
        _check_state(what, layer, value, untouched="nothing was changed")
    return slots


def _by_layer(
    slots: dict[str, tuple[Layer, str]], states: Mapping[str, Tensor | None]
) -> list[tuple[Layer, dict[str, Tensor | None]]]:
    """``states`` regrouped per layer, every declared state set (``None`` where missing)."""
    grouped: dict[int, tuple[Layer, dict[str, Tensor | None]]] = {}
    for key, (layer, name) in slots.items():
        grouped.setdefault(id(layer), (layer, {}))[1][name] = states.get(key)
    return list(grouped.values())


@contextmanager
def _pure_view(module: nn.Module, states: Mapping[str, Tensor | None], who: str) -> Iterator[_View]:
    """Lend ``states`` to the layers of ``module`` for the block, then restore theirs.

    Every declared state is set: to its entry of ``states``, or ``None`` when it has none (the
    layer then starts it as zeros, as on a first step). On exit, also through an exception,
    each layer gets back the very tensor objects it held and its parameter-value cache.
    Raises as :func:`_checked_slots` before anything is changed.
    """
    slots = _checked_slots(module, states, who)
    lent = _by_layer(slots, states)
    saved = [
        (
            layer,
            {name: layer.__dict__[name] for name in layer.state_names},
            layer.__dict__["_tt_cache"],
        )
        for layer, _ in lent
    ]
    _views.depth += 1
    try:
        for layer, values in lent:
            # A fresh parameter-value cache: the transforms are computed inside the call, so
            # a replay of it (checkpointing) computes, and saves, exactly what the call did.
            layer.__dict__["_tt_cache"] = None
            layer._write_states(values)
        yield _View(slots)
    finally:
        for layer, values, cache in saved:
            layer._write_states(values)
            layer.__dict__["_tt_cache"] = cache
        _views.depth -= 1


def _call(
    module: nn.Module, args: tuple, parameters_and_buffers: Mapping[str, Tensor] | None
) -> object:
    if parameters_and_buffers is None:
        return module(*args)
    return torch.func.functional_call(module, dict(parameters_and_buffers), args)


def functional_call(
    module: nn.Module,
    states: Mapping[str, Tensor | None],
    args: Tensor | tuple,
    parameters_and_buffers: Mapping[str, Tensor] | None = None,
    *,
    mode: Mode = "step",
) -> tuple[object, dict[str, Tensor]]:
    """Call ``module`` as a pure function of its input, hidden states and parameters.

    The layers under ``module`` start the call from ``states`` instead of their own states;
    the call returns the output together with every state it left behind, and the module's
    own states are exactly what they were before (the same tensor objects), also when the
    call raises. Nothing is detached: the new states carry the autograd graph back to the
    input states and the parameters, so the call can be differentiated, replayed by
    activation checkpointing (see :func:`checkpoint`), transformed by :func:`torch.func.grad`,
    :func:`torch.func.jacrev` and :func:`torch.func.vmap`, and traced by :func:`torch.export`.
    It works for every :class:`~tracetorch.Layer`, built-in or user-written, with no extra
    code: the layers read and write their states as in any other call.

    Args:
        module: Any ``nn.Module`` holding tracetorch layers (a :class:`~tracetorch.Model`, an
            ``nn.Sequential``, a single layer).
        states: The states to start from, keyed like :func:`tracetorch.save_states`
            (``"net.2.mem"``). A state that is missing (or ``None``) starts as zeros, as on
            the first step of a fresh model: ``{}`` runs the model from rest.
        args: The input: a tensor, or a tuple of the positional arguments of ``forward``.
        parameters_and_buffers: Optional replacements for parameters and buffers by name
            (``module.named_parameters()`` names), applied as :func:`torch.func.functional_call`
            applies them; the others keep their value.
        mode: ``"step"`` calls ``module(*args)`` once; ``"sequence"`` calls it under
            :func:`tracetorch.sequence_mode`, so that ``args`` holds a whole sequence
            ``[T, ...]`` and each layer runs all steps at once.

    Returns:
        ``(output, new_states)``: what ``module`` returned, and the states after the call as a
        dict with the keys of :func:`tracetorch.save_states`. As there, states that are still
        ``None`` after the call (a layer the call did not reach) are left out.

    Raises:
        TypeError: ``states`` is not a mapping, or one of its values is neither a tensor
            nor ``None``, or not of a real floating dtype (checked before anything changes).
        ValueError: a key of ``states`` names no state under ``module``, a value without
            ``num_neurons`` entries at its layer's ``dim``, or an unknown ``mode``.

    Example:
        >>> import torch, tracetorch as tt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), tt.snn.LI(4))
        >>> x = torch.ones(2, 3)
        >>> y, states = tt.functional_call(net, {}, x)  # from rest
        >>> sorted(states), net[1].mem is None  # the model itself was not touched
        (['1.mem'], True)
        >>> y2, states2 = tt.functional_call(net, states, x)  # the next step
        >>> for _ in range(2):
        ...     y_stateful = net(x)
        >>> torch.equal(y2, y_stateful)
        True
    """
    if mode not in ("step", "sequence"):
        raise ValueError(f"functional_call: expected mode 'step' or 'sequence', got {mode!r}")
    if parameters_and_buffers is not None and not isinstance(parameters_and_buffers, Mapping):
        raise TypeError(
            f"functional_call: expected parameters_and_buffers to be a mapping from names to "
            f"tensors or None, got {type(parameters_and_buffers).__name__}"
        )
    args = args if isinstance(args, tuple) else (args,)
    with _pure_view(module, states, "functional_call") as view:
        if mode == "sequence":
            with sequence_mode(module):
                output = _call(module, args, parameters_and_buffers)
        else:
            output = _call(module, args, parameters_and_buffers)
        return output, view.states()


def _segment(
    module: nn.Module, mode: Mode, keys: tuple[str, ...], xs: Tensor, *values: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """``tt.run`` over ``xs`` as a pure function of ``xs`` and the states: the unit checkpointed.

    The states come as positional tensors (``values``, named by ``keys``) so that the
    checkpoint keeps them as it keeps every tensor argument, through autograd's saved-tensor
    mechanism (and its hooks: offloading them to the CPU works too).
    """
    with _pure_view(module, dict(zip(keys, values, strict=True)), "checkpoint") as view:
        return run(module, xs, mode), view.states()


def checkpoint(
    module: nn.Module,
    xs: Tensor,
    states: Mapping[str, Tensor | None] | None = None,
    *,
    segment: int | None = None,
    mode: Mode = "step",
) -> Tensor:
    """:func:`tracetorch.run` with activation checkpointing: memory for one segment, not T.

    The sequence is cut into segments of ``segment`` steps. Each runs as a pure function of
    its inputs and the states it starts from (see :func:`functional_call`) under
    ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``: the forward keeps only
    the states at the segment boundaries, and the backward recomputes one segment at a time
    to get its activations back. The outputs, gradients and final states are those of
    :func:`tracetorch.run` (the same operations run again on the same values; only sums
    over segments may round differently); the price is one more forward pass. Without grad
    mode (evaluation) the segments simply run.

    Like :func:`tracetorch.run`, it leaves the layers holding the states of the last step
    (with their autograd graph), so calls can be chained and mixed with :func:`tracetorch.run`
    and plain steps; ``zero_states()`` starts a new sequence.

    Args:
        module: Any ``nn.Module`` holding tracetorch layers.
        xs: The inputs, ``[T, *step_shape]`` with ``T >= 1``.
        states: The states to start from, keyed like :func:`tracetorch.save_states` (missing
            ones start as zeros); ``None`` (default): the states the layers hold now.
        segment: Steps per checkpointed segment; ``None`` (default): ``ceil(sqrt(T))``, which
            balances the boundary states kept (``T / segment`` of them) against the
            activations of the one segment recomputed at a time.
        mode: How each segment runs, as in :func:`tracetorch.run`: ``"step"`` (a step per
            call) or ``"sequence"`` (each layer over the whole segment at once).

    Returns:
        The outputs of every step, ``[T, *out_step_shape]``.

    Raises:
        ValueError: ``xs`` is not ``[T, ...]`` with ``T >= 1``, ``segment`` is not a
            positive int, an unknown ``mode``, or a key of ``states`` names no state.
        TypeError: a value of ``states`` is neither a tensor nor ``None``.

    Example:
        >>> import torch, tracetorch as tt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), tt.snn.LIF(8), torch.nn.Linear(8, 2))
        >>> xs = torch.rand(40, 5, 3)
        >>> ys = tt.checkpoint(net, xs, segment=10)  # 4 segments, one replayed at a time
        >>> ys.sum().backward()
        >>> grad = net[0].weight.grad.clone()
        >>> net.zero_grad(); tt.zero_states(net)
        >>> ys_plain = tt.run(net, xs)  # the same outputs and gradients as tt.run
        >>> ys_plain.sum().backward()
        >>> torch.allclose(ys, ys_plain), torch.allclose(net[0].weight.grad, grad)
        (True, True)
    """
    if mode not in ("step", "sequence"):
        raise ValueError(f"checkpoint: expected mode 'step' or 'sequence', got {mode!r}")
    if not isinstance(xs, Tensor) or xs.dim() < 1 or xs.shape[0] == 0:
        shape = tuple(xs.shape) if isinstance(xs, Tensor) else type(xs).__name__
        raise ValueError(
            f"checkpoint: expected xs of shape [T, *step_shape] with T >= 1, got {shape}"
        )
    steps = xs.shape[0]
    if segment is None:
        segment = math.ceil(math.sqrt(steps))
    elif isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
        raise ValueError(f"checkpoint: expected segment to be a positive int, got {segment!r}")
    if states is None:
        slots = _state_slots(module)
        states = _View(slots).states()
    else:
        slots = _checked_slots(module, states, "checkpoint")
    recording = torch.is_grad_enabled()
    outputs = []
    for begin in range(0, steps, segment):
        chunk = xs[begin : begin + segment]
        keys = tuple(key for key, value in states.items() if value is not None)
        args = (module, mode, keys, chunk, *(states[key] for key in keys))
        if recording:
            ys, states = torch.utils.checkpoint.checkpoint(_segment, *args, use_reentrant=False)
        else:
            ys, states = _segment(*args)
        outputs.append(ys)
    for layer, values in _by_layer(slots, states):
        layer._write_states(values)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
