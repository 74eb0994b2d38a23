"""Recording hidden states and layer outputs over time, while a model runs.

:func:`tt.record <tracetorch.record>` is a context manager: within the block, every timestep
the chosen hidden states (``"net.2.mem"``, keyed like :func:`tracetorch.save_states`) and
module outputs (``"net.2"``, keyed by module path) are collected, in step mode (one call per
timestep) and in sequence mode (:func:`tracetorch.run` with ``mode="sequence"``) alike.
What it yields is a read-only mapping whose values are time-first ``[T, ...]`` tensors,
ready for :mod:`tracetorch.plot`.

Nothing is added to a model outside the block: forward hooks are registered on entry and
removed on exit (also when the block raises), so recording costs nothing when not in use.
"""

from __future__ import annotations

import numbers
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .core.layer import Layer
from .core.model import layers
from .core.sequence import _RUNNING, _sequence_modules
from .nn.time_distributed import TimeDistributed

__all__ = ["Recording", "record"]


class Recording(Mapping[str, Tensor]):
    """The steps collected by :func:`tt.record <tracetorch.record>`, by key, as ``[T, ...]``.

    Steps are kept as a list (a bounded ``deque`` with ``last``) and stacked when a key is
    read, once per new step. Keys that have not recorded a step yet (a layer that did not
    run) are not listed, and reading one raises ``KeyError``.

    Attributes:
        every: Every how many steps one is kept.
        last: How many kept steps are held at most (``None``: all).
    """

    def __init__(self, keys: Sequence[str], every: int, last: int | None) -> None:
        self.every = every
        self.last = last
        self._steps: dict[str, deque[Tensor] | list[Tensor]] = {
            key: (deque(maxlen=last) if last is not None else []) for key in keys
        }
        self._offered = dict.fromkeys(keys, 0)  # steps seen per key, kept or not
        self._stacked: dict[str, Tensor] = {}
        self._flush: Callable[[], None] | None = None  # the recorder's, while the block runs

    def _add(self, key: str, value: Tensor, detach: bool) -> None:
        """Offer one step of ``key``; kept when it is a multiple of ``every``."""
        if torch._C._functorch.is_batchedtensor(value):
            raise RuntimeError(
                f"record: {key!r} is computed inside torch.func.vmap, whose batched tensors "
                f"cannot leave it to be recorded; record outside vmap, or return what you "
                f"need from the vmapped function (tt.functional_call returns the states)"
            )
        seen = self._offered[key]
        self._offered[key] = seen + 1
        if seen % self.every:
            return
        # a copy: the caller may reuse or modify the tensor, and a step of a sequence is a
        # view that would keep the whole sequence alive (defeating ``last``)
        self._steps[key].append(value.detach().clone() if detach else value.clone())
        self._stacked.pop(key, None)

    def __getitem__(self, key: str) -> Tensor:
        if self._flush is not None:
            self._flush()
        steps = self._steps.get(key)
        if not steps:
            if steps is None:
                raise KeyError(f"Recording: {key!r} was not recorded; recorded: {list(self)}")
            raise KeyError(
                f"Recording: {key!r} has no step yet; run the model inside the "
                f"'with tt.record(...)' block"
            )
        stacked = self._stacked.get(key)
        if stacked is None:
            stacked = self._stacked[key] = torch.stack(list(steps))
        return stacked

    def __iter__(self) -> Iterator[str]:
        if self._flush is not None:
            self._flush()
        return (key for key, steps in self._steps.items() if steps)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{key!r}: {list(self[key].shape)}" for key in self)
        return f"Recording({{{shapes}}})"


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"record: expected {name} to be a positive int, got {value!r}")
    return int(value)


def _key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _chosen_states(module: nn.Module, states: bool | Sequence[str]) -> dict[str, tuple[Layer, str]]:
    """``key -> (layer, state name)`` for the states asked for (keys or layer paths)."""
    every_state = {
        _key(path, name): (layer, name)
        for path, layer in layers(module)
        for name in layer.state_names
    }
    if states is True:
        return every_state
    if states is False:
        return {}
    if isinstance(states, str) or not isinstance(states, Sequence):
        raise TypeError(
            f"record: expected states to be True, False or a list of keys, got {states!r}"
        )
    paths = dict(layers(module))
    chosen = {}
    for key in states:
        if key in every_state:
            chosen[key] = every_state[key]
        elif key in paths:  # a layer's path: all of its states
            chosen.update({_key(key, n): (paths[key], n) for n in paths[key].state_names})
        else:
            raise KeyError(
                f"record: {key!r} is neither a state key nor a layer path of "
                f"{type(module).__name__}; state keys (as save_states() names them): "
                f"{sorted(every_state)}"
            )
    return chosen


def _chosen_outputs(module: nn.Module, outputs: bool | Sequence[str]) -> list[str]:
    """The module paths whose outputs are recorded (``True``: every tracetorch layer)."""
    if outputs is True:
        return [path for path, _ in layers(module)]
    if outputs is False:
        return []
    if isinstance(outputs, str) or not isinstance(outputs, Sequence):
        raise TypeError(
            f"record: expected outputs to be True, False or a list of module paths, got {outputs!r}"
        )
    modules = dict(module.named_modules())
    for path in outputs:
        if path not in modules:
            raise KeyError(
                f"record: {path!r} is not a module path of {type(module).__name__}; module "
                f"paths (as named_modules() names them, '' for the module itself): "
                f"{sorted(modules)}"
            )
    return list(dict.fromkeys(outputs))  # each once, in the order given


class _Recorder:
    """Installs and removes the hooks and sequence-mode loops of one :func:`record` block."""

    def __init__(
        self,
        module: nn.Module,
        states: dict[str, tuple[Layer, str]],
        outputs: list[str],
        recording: Recording,
        detach: bool,
    ) -> None:
        self.recording = recording
        self.detach = detach
        # the switched module each is part of, under the recorded module: which layers loop
        self.owners = _owners(module)
        modules = dict(module.named_modules())
        self.paths = {id(sub): path for path, sub in modules.items()}
        # per hooked module: (output keys, [(state key, name)] for its own states)
        self.plan: dict[int, tuple[nn.Module, list[str], list[tuple[str, str]]]] = {}
        for key, (layer, name) in states.items():
            self._entry(layer)[2].append((key, name))
        for path in outputs:
            sub = modules[path]
            prefix, _, name = path.rpartition(".")
            parent = modules[prefix] if path else None
            if isinstance(parent, TimeDistributed) and name == "module":
                # the wrapper returns what its module returns, but sees time as its own
                # input does (the module sees time merged into the batch in sequence mode)
                sub = parent
            self._entry(sub)[1].append(path)
        self.handles: list[Any] = []
        self.looped: list[tuple[Layer, Callable]] = []
        # outputs of calls that saw a whole sequence, per key, until the steps of every call
        # in one sequence-mode call of the model are interleaved as step mode orders them
        self.pending: dict[str, list[Tensor]] = {}
        self.pending_call = -1  # the model's call (_RUNNING.calls) they belong to
        self.views: dict[int, dict[int, tuple[str, nn.Module | None]]] = {}  # by running root

    def _entry(self, sub: nn.Module) -> tuple[nn.Module, list[str], list[tuple[str, str]]]:
        return self.plan.setdefault(id(sub), (sub, [], []))

    def install(self) -> None:
        # A switched layer whose own states, or whose layers' states or outputs, are recorded
        # runs its step in a loop while recording (its own forward_sequence, which may call
        # its layers' forward_sequence, would record none of them step by step).
        looped: dict[int, tuple[Layer, list[tuple[str, str]]]] = {}
        hooks = []
        for sub, output_keys, state_keys in self.plan.values():
            owner = self.owners[id(sub)]
            # its step loops for its own states, or for what is recorded inside it
            if isinstance(owner, Layer) and (owner is not sub or state_keys):
                entry = looped.setdefault(id(owner), (owner, []))
                if owner is sub:
                    entry[1].extend(state_keys)
            hooks.append((sub, self._hook(output_keys, state_keys)))
        for layer, _ in looped.values():
            if "forward_sequence" in layer.__dict__ or "forward" in layer.__dict__:
                raise RuntimeError(
                    f"record: {type(layer).__name__} at {self.paths[id(layer)]!r} is already "
                    f"being recorded or is in sequence mode; enter tt.record() once, around "
                    f"tt.run()"
                )
        for layer, state_keys in looped.values():
            loop = self._stepwise(layer, state_keys)
            layer.__dict__["forward_sequence"] = loop
            self.looped.append((layer, loop))
        for sub, hook in hooks:
            self.handles.append(sub.register_forward_hook(hook))
        self.recording._flush = self.flush

    def remove(self) -> None:
        self.flush()
        self.recording._flush = None
        for handle in self.handles:
            handle.remove()
        for layer, loop in self.looped:
            if layer.__dict__.get("forward_sequence") is loop:
                del layer.__dict__["forward_sequence"]
        self.handles, self.looped = [], []

    def _add_states(self, layer: Layer, state_keys: list[tuple[str, str]]) -> None:
        d = layer.__dict__
        for key, name in state_keys:
            if d[name] is not None:
                self.recording._add(key, d[name], self.detach)

    def _stepwise(self, layer: Layer, state_keys: list[tuple[str, str]]) -> Callable:
        """A ``forward_sequence`` that runs the layer's own step and records its states."""
        step = type(layer).forward

        def forward_sequence(xs: Tensor, *args: object, **kwargs: object) -> Tensor:
            if args or kwargs:
                name = type(layer).__name__
                raise TypeError(
                    f"record: {name} at {self.paths[id(layer)]!r} is given arguments besides "
                    f"the input, which its step loop (run while its states or those of its "
                    f"layers are recorded in sequence mode) cannot split into steps; record "
                    f"in step mode, or record only its output"
                )
            layer._check_sequence(xs)
            outs = []
            for x in xs:
                outs.append(step(layer, x))
                if not _replaying():
                    self._add_states(layer, state_keys)
            return torch.stack(outs)

        return forward_sequence

    def _view(self, module: nn.Module) -> tuple[str, int]:
        """How the call of ``module`` that just returned saw time, and how many steps it saw
        merged into its batch.

        ``("step", 0)``: one step; ``("sequence", 0)``: the steps first; ``("merged", T)``:
        ``T`` steps merged into the batch, inside a :class:`~tracetorch.nn.TimeDistributed`
        in sequence mode. Found from the modules in sequence mode now (not only those
        under the recorded module, which may be a part of the model that runs).
        """
        if "forward" in module.__dict__:  # switched: it ran forward_sequence
            return "sequence", 0
        if not _RUNNING.roots:
            return "step", 0
        root = _RUNNING.roots[-1]
        views = self.views.get(id(root))
        if views is None:
            views = self.views[id(root)] = _views(root)
        view, owner = views.get(id(module), ("step", None))
        if view == "merged":
            steps = owner.__dict__.get("_merged_steps")
            return ("step", 0) if steps is None else ("merged", steps)
        return view, 0

    def _pend(self, key: str, steps: Tensor) -> None:
        """Keep the ``[T, ...]`` output of one call until the model's call is over."""
        if self.pending_call != _RUNNING.calls:
            self.flush()
            self.pending_call = _RUNNING.calls
        self.pending.setdefault(key, []).append(steps)

    def flush(self) -> None:
        """Record the pending sequences, the steps of several calls interleaved: step 0 of
        each call in turn, then step 1, ..., the order of step mode."""
        pending, self.pending = self.pending, {}
        for key, calls in pending.items():
            for t in range(max(len(steps) for steps in calls)):
                for steps in calls:
                    if t < len(steps):
                        self.recording._add(key, steps[t], self.detach)

    def _hook(self, output_keys: list[str], state_keys: list[tuple[str, str]]) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if _replaying():  # a checkpoint's replay: its steps were recorded when they ran
                return
            view, steps = self._view(module)
            if output_keys:
                if not isinstance(output, Tensor):
                    raise TypeError(
                        f"record: {type(module).__name__} at {output_keys[0]!r} returned "
                        f"{type(output).__name__}; only tensor outputs can be recorded"
                    )
                for key in output_keys:
                    if view == "step":
                        if key in self.pending:
                            self.flush()
                        self.recording._add(key, output, self.detach)
                    else:
                        self._pend(key, output.unflatten(0, (steps, -1)) if steps else output)
            if state_keys and view == "step":  # in sequence mode the step loop records them
                self._add_states(module, state_keys)

        return hook


def _replaying() -> bool:
    """Whether a forward running now is a replay made during a backward pass (a checkpoint
    recomputing its segment); an Exciter callback's probe, under ``torch.no_grad()``, is not."""
    return torch.is_grad_enabled() and torch._C._current_graph_task_id() != -1


def _owners(root: nn.Module) -> dict[int, nn.Module | None]:
    """For every module under ``root``, the module sequence mode switches that it is part of
    (itself, when it is switched), or ``None`` outside them all."""
    modules = dict(root.named_modules())
    paths = {id(sub): path for path, sub in modules.items()}
    outer = [(paths[id(o)], o) for o in _sequence_modules(root)]
    return {
        id(sub): next((o for p, o in outer if p in ("", path) or path.startswith(p + ".")), None)
        for path, sub in modules.items()
    }


def _views(root: nn.Module) -> dict[int, tuple[str, nn.Module | None]]:
    """For every module under ``root`` in sequence mode, how a call of it sees time.

    ``"sequence"``: outside every module sequence mode switches (it is called with the
    steps first); ``"step"``: inside a switched layer, which calls it one step at a time;
    ``"merged"``: inside a switched :class:`~tracetorch.nn.TimeDistributed` (time merged
    into the batch), with that wrapper. A switched module itself is told by its ``forward``.
    """
    views: dict[int, tuple[str, nn.Module | None]] = {}
    for key, owner in _owners(root).items():
        if owner is None or id(owner) == key:
            views[key] = ("sequence", None)
        elif isinstance(owner, TimeDistributed):
            views[key] = ("merged", owner)
        else:
            views[key] = ("step", None)
    return views


@contextmanager
def record(
    module: nn.Module,
    states: bool | Sequence[str] = True,
    outputs: bool | Sequence[str] = False,
    *,
    detach: bool = True,
    every: int = 1,
    last: int | None = None,
) -> Iterator[Recording]:
    """Record hidden states and module outputs at every timestep while ``module`` runs.

    Within the ``with`` block, each timestep appends the chosen states and outputs to the
    yielded :class:`~tracetorch.recording.Recording`, whose values read as time-first
    ``[T, ...]`` tensors (a step of a batched layer is ``[B, ...]``, so a value is
    ``[T, B, ...]``), ready for :func:`tracetorch.plot.raster`,
    :func:`~tracetorch.plot.traces` and :func:`~tracetorch.plot.rates`. The recording stays
    readable after the block.

    Both ways of running a model are recorded the same way, step after step:

    - step mode (``model(x)`` once per step, or :func:`tracetorch.run`): one step per call;
    - sequence mode (:func:`tracetorch.run` with ``mode="sequence"``): outputs ``[T, ...]``
      are split into their steps (``[T * B, ...]`` inside a
      :class:`~tracetorch.nn.TimeDistributed` too), the steps of a module called more than
      once per step in step mode's order; a layer whose states are recorded runs its own
      step in a loop inside the block (its states only exist between steps), so it gives up
      its fast sequence path while recorded. Sequence mode reads that loop when it starts,
      so the ``with tt.record(...)`` block must enclose the ``tt.run`` call.

    A forward replayed during a backward pass (the segments of :func:`tracetorch.checkpoint`)
    is not recorded again.

    Forward hooks are registered on entry and removed on exit, also when the block raises:
    outside the block nothing is left on the model and nothing costs time.

    Args:
        module: The model (any ``nn.Module``, or a single layer).
        states: ``True`` for every hidden state of every tracetorch layer under ``module``,
            ``False`` for none, or a list of keys as :func:`tracetorch.save_states` names
            them (``"net.2.mem"``) or of layer paths (``"net.2"``: all of its states).
        outputs: ``True`` for the output of every tracetorch layer, ``False`` for none, or a
            list of module paths, any module (``"net.0"``, an ``nn.Linear``; ``""`` is
            ``module`` itself). A recorded output is keyed by its path.
        detach: Record copies cut from the autograd graph (default). ``False`` keeps the
            graph, to put a recorded state into a loss (and keeps its memory alive).
        every: Keep one step in ``every`` (steps 0, every, 2*every, ...).
        last: Keep only the last ``last`` kept steps (a bounded buffer); ``None``: all.

    Yields:
        The :class:`~tracetorch.recording.Recording`, filled as the model runs.

    Raises:
        KeyError: A state key, layer path or module path that ``module`` does not have.
        TypeError: ``states``/``outputs`` of another type, a recorded module returning
            something other than a tensor, or, in sequence mode, a layer whose states are
            recorded given arguments besides its input.
        ValueError: ``every`` or ``last`` not a positive int.
        RuntimeError: ``module`` is already being recorded, or already in sequence mode.

    Example:
        >>> import torch, tracetorch as tt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), tt.snn.LIF(4))
        >>> with tt.record(net, outputs=["0", "1"]) as rec:
        ...     ys = tt.run(net, torch.rand(20, 2, 3), mode="sequence")
        >>> sorted(rec), rec["1.mem"].shape, torch.equal(rec["1"], ys)
        (['0', '1', '1.mem'], torch.Size([20, 2, 4]), True)
        >>> net[1]._forward_hooks  # nothing left behind
        OrderedDict()
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"record: expected an nn.Module, got {type(module).__name__}")
    every = _positive("every", every)
    if last is not None:
        last = _positive("last", last)
    if not isinstance(detach, bool):
        raise TypeError(f"record: expected detach to be a bool, got {detach!r}")
    chosen_states = _chosen_states(module, states)
    chosen_outputs = _chosen_outputs(module, outputs)
    recording = Recording([*chosen_states, *chosen_outputs], every, last)
    recorder = _Recorder(module, chosen_states, chosen_outputs, recording, detach)
    try:
        recorder.install()
        yield recording
    finally:
        recorder.remove()
