"""Running a model over a whole sequence: step by step, or each layer over all steps at once."""

from __future__ import annotations

import functools
import inspect
import itertools
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

__all__ = ["run", "sequence_mode"]

Mode = Literal["step", "sequence"]


def _sequence_modules(module: nn.Module) -> list[nn.Module]:
    """The outermost modules under ``module`` (itself included) that have ``forward_sequence``.

    A module inside another such module is left alone: the outer one decides how its
    children see time (the default ``forward_sequence`` loops over the outer ``forward``,
    which calls the children one step at a time). Each module counts once, however often
    it is registered.
    """
    return _survey(module)[0]


def _has_sequence_path(module: nn.Module) -> bool:
    return callable(getattr(type(module), "forward_sequence", None))


def _is_stateful(module: nn.Module) -> bool:
    """Whether ``module`` is a :class:`~tracetorch.Layer` (a module with hidden states)."""
    return bool(module.__dict__.get("_state_names"))


class _OncePerCall:
    """A module's ``forward`` in sequence mode: its ``forward_sequence``, once per call.

    Given to every switched module below the model; only those that hold states (their own,
    or those of layers inside them) count their calls.

    In step mode a layer that a model calls more than once per step (one instance in two
    places, or in a loop of sub-steps) advances its states once per call, interleaved with
    the other layers. In sequence mode each of those calls would run the whole sequence, one
    after the other, which computes something else: the second call raises instead.
    It counts the calls while ``watch`` is set: for the one call of the model :func:`run`
    makes, or, in :func:`sequence_mode`, during each call of the model (set and cleared by
    hooks on it; a layer called on its own in the block runs each time it is called).

    One per layer, kept while the layer lives (see :func:`_once_per_call`): a compiled model
    (``tt.run(..., compile=True)``) finds the same object in each call, where a new one
    would make it compile again. It refers to the layer and the model weakly.
    """

    def __init__(self, layer: nn.Module) -> None:
        self.layer = weakref.ref(layer)
        self.model: weakref.ReferenceType[nn.Module] | None = None  # set for each run
        self.watch = False
        self.called = False

    def __call__(self, x: Tensor, *args: object, **kwargs: object) -> Tensor:
        # named as forward's argument: a model may pass it by keyword (layer(x=h)); other
        # arguments go to forward_sequence, which a layer taking them overrides
        if self.watch:
            if self.called:
                raise RuntimeError(self._twice())
            self.called = True
        layer = self.layer()
        if args or kwargs:
            _takes(layer, x, args, kwargs)
        return layer.forward_sequence(x, *args, **kwargs)

    def _twice(self) -> str:
        layer, model = self.layer(), self.model()
        path = next(name for name, sub in model.named_modules() if sub is layer)
        return (
            f"{type(layer).__name__} (at {path!r} in {type(model).__name__}) was called a "
            f"second time in one sequence-mode call: a layer called more than once per step "
            f"(one instance in two places, or in a loop of sub-steps) advances its states "
            f"once per call in step mode, which sequence mode cannot reproduce (each call "
            f"runs the whole sequence); run this model with mode='step', or give each place "
            f"its own layer"
        )


def _takes(layer: nn.Module, x: object, args: tuple, kwargs: dict) -> None:
    """Raise a clear error unless ``layer.forward_sequence`` takes ``forward``'s arguments."""
    try:
        inspect.signature(layer.forward_sequence).bind(x, *args, **kwargs)
    except TypeError:
        name = type(layer).__name__
        given = [f"{len(args)} positional"] if args else []
        given += [f"keyword {', '.join(map(repr, kwargs))}"] if kwargs else []
        raise TypeError(
            f"{name}: in sequence mode the model called {name} with arguments besides the "
            f"input ({' and '.join(given)}), which {name}.forward_sequence does not take: "
            f"sequence mode passes them on to forward_sequence, which cannot know which of "
            f"them run per step; override forward_sequence to take them, or run the model "
            f"with mode='step'"
        ) from None


_ONCE: weakref.WeakKeyDictionary[nn.Module, _OncePerCall] = weakref.WeakKeyDictionary()


def _once_per_call(layer: nn.Module, model: nn.Module, count: bool) -> _OncePerCall:
    """The ``forward`` of ``layer`` in sequence mode, as a part of ``model``.

    ``count``: refuse a second call (a layer that holds states); otherwise it only
    dispatches to ``forward_sequence`` (``TimeDistributed``).
    """
    forward = _ONCE.get(layer)
    if forward is None:
        forward = _ONCE[layer] = _OncePerCall(layer)
    forward.model = weakref.ref(model)
    forward.watch = count
    forward.called = False
    return forward


_END = object()  # in _survey's stack: the walk leaves the switched module it entered


class _Running:
    """The modules in sequence mode now (the ``module`` of each :func:`sequence_mode` and
    :func:`run` under way, outermost first) and a count of their calls.

    Read by :func:`tracetorch.record`, which must know how a module it hears from saw time.
    """

    def __init__(self) -> None:
        self.roots: list[nn.Module] = []
        self.calls = 0


_RUNNING = _Running()


def _survey(
    module: nn.Module,
) -> tuple[list[nn.Module], list[nn.Module], set[int], list[str]]:
    """One walk through ``module``: what sequence mode switches, and every layer.

    Returns:
        The outermost modules that have ``forward_sequence`` (in the order of
        ``named_modules()``, see :func:`_sequence_modules`); every module with hidden
        states under ``module`` (inside the switched ones too), each once; the ids of the
        switched modules that hold states, their own or those of layers inside them; and
        why sequence mode cannot run ``module``: a layer registered in two places that
        sequence mode runs differently (inside a switched module, which decides how its
        children see time, and outside it), which it cannot know how to run.
    """
    switched: list[nn.Module] = []
    stateful: list[nn.Module] = []
    holding: set[int] = set()
    runner: dict[int, nn.Module | None] = {}  # the switched module that runs each one seen
    mixed: list[str] = []
    pending: list[object] = [module]
    inside = False  # below a switched module (until its end mark is popped)
    while pending:
        sub = pending.pop()
        if sub is _END:
            inside = False
            continue
        if sub is None:
            continue
        sequence_path = not inside and _has_sequence_path(sub)  # switched here
        here = switched[-1] if inside else sub if sequence_path else None
        if id(sub) in runner:
            there = runner[id(sub)]
            if there is not here:
                if _has_sequence_path(sub) or _is_stateful(sub):
                    mixed.append(_registered_twice(sub, there, here))
                else:  # a plain container met in another place: so are the layers it holds
                    pending.extend(reversed(sub._modules.values()))
            continue
        runner[id(sub)] = here
        if sequence_path:
            switched.append(sub)
            inside = True
            pending.append(_END)
        if _is_stateful(sub):
            stateful.append(sub)
            if inside:
                holding.add(id(switched[-1]))
        if sub._modules:
            pending.extend(reversed(sub._modules.values()))
    return switched, stateful, holding, mixed


def _place(sub: nn.Module, runner: nn.Module | None) -> str:
    """Where sequence mode runs ``sub`` from, given the switched module that runs it."""
    if runner is None:
        return "outside any layer"
    if runner is sub:
        return "as a layer of its own"
    return f"inside {type(runner).__name__}"


def _registered_twice(sub: nn.Module, *runners: nn.Module | None) -> str:
    places = [_place(sub, runner) for runner in runners]
    return (
        f"sequence_mode: {type(sub).__name__} is registered in two places that sequence mode "
        f"runs differently ({places[0]}, and {places[1]}): a layer inside another layer runs "
        f"as that layer's forward_sequence decides, one outside it on its own, so sequence "
        f"mode cannot tell how it runs per step; run the model with mode='step', or give "
        f"each place its own layer"
    )


def _switch_to_sequences(
    module: nn.Module,
) -> tuple[list[nn.Module], list[_OncePerCall], list[nn.Module]]:
    """Switch the layers of :func:`sequence_mode`; returns them for :func:`_switch_back`.

    Returns:
        The modules switched; the ``forward`` of each among them below ``module`` that holds
        states, its own or those of layers inside it, whose calls are counted (``module``
        itself, when it is switched, runs its ``forward_sequence`` as is); and every module
        with hidden states under ``module``, switched or not.
    """
    switched, stateful, holding, mixed = _survey(module)
    if mixed:
        raise RuntimeError(mixed[0])
    for sub in switched:
        if "forward" in sub.__dict__:
            where = "" if sub is module else f" (its layer {type(sub).__name__})"
            raise RuntimeError(
                f"sequence_mode: {type(module).__name__}{where} is already in sequence mode "
                f"(or has an instance attribute 'forward')"
            )
    once = []
    for sub in switched:
        if sub is module:  # called by the caller, with xs
            sub.__dict__["forward"] = sub.forward_sequence
            continue
        count = id(sub) in holding
        forward = sub.__dict__["forward"] = _once_per_call(sub, module, count)
        if count:
            once.append(forward)
    _RUNNING.roots.append(module)
    return switched, once, stateful


def _switch_back(module: nn.Module, switched: list[nn.Module]) -> None:
    for sub in switched:
        sub.__dict__.pop("forward", None)
    roots = _RUNNING.roots
    for i in range(len(roots) - 1, -1, -1):
        if roots[i] is module:
            del roots[i]
            break


def _count_call(*_: object) -> None:
    if not torch.compiler.is_compiling():  # a compiled model would guard on the count
        _RUNNING.calls += 1


def _watch(once: list[_OncePerCall], watch: bool) -> None:
    """Count the calls of each layer (during a call of the model), or stop counting them."""
    for forward in once:
        forward.watch = watch
        forward.called = False


@contextmanager
def sequence_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every tracetorch layer under ``module`` takes ``[T, ...]`` per call.

    Each layer's ``forward`` dispatches to its ``forward_sequence`` (and
    :class:`tracetorch.nn.TimeDistributed` merges time into the batch), so calling
    ``module(xs)`` once runs the whole sequence layer by layer. Stateless modules that accept
    extra leading dimensions (``nn.Linear``, activations, ``nn.Dropout``) work unchanged;
    wrap those that need ``[B, ...]`` (``nn.Conv2d``, pooling, ``nn.BatchNorm2d``,
    ``nn.Flatten``) in :class:`~tracetorch.nn.TimeDistributed`. Every layer is switched back
    on exit, also when an exception is raised. Each call of ``module`` in the block runs the
    next sequence; within one call, a layer below ``module`` may run only once (a layer
    called twice per step raises, see :func:`run`). A call that raises leaves the layers that
    ran before the failure ``T`` steps on; :func:`run` puts every state back, so use it where
    a failing call must leave no trace.

    Raises:
        RuntimeError: ``module`` is already in sequence mode.
    """
    switched, once, _ = _switch_to_sequences(module)
    _watch(once, False)
    hooks = [module.register_forward_pre_hook(_count_call)]
    if once:
        hooks.append(module.register_forward_pre_hook(lambda *_: _watch(once, True)))
        hooks.append(module.register_forward_hook(lambda *_: _watch(once, False), always_call=True))
    try:
        yield module
    finally:
        for hook in hooks:
            hook.remove()
        _switch_back(module, switched)


def _states(layers: list[nn.Module]) -> list[tuple[nn.Module, dict[str, Tensor | None]]]:
    """The states of ``layers``, to put back with :func:`_restore`."""
    return [
        (layer, {name: layer.__dict__[name] for name in layer.__dict__["_state_names"]})
        for layer in layers
    ]


def _restore(saved: list[tuple[nn.Module, dict[str, Tensor | None]]]) -> None:
    for layer, states in saved:
        layer._write_states(states)


_COMPILED: weakref.WeakKeyDictionary[
    nn.Module, dict[str, tuple[Callable[[Tensor], Tensor], _Inductor]]
] = weakref.WeakKeyDictionary()


@functools.cache
def _isolated() -> dict[str, bool]:
    """``torch.compile``'s argument that gives each model its own recompile limit.

    In a torch without it, every model compiled by :func:`run` counts against one shared
    limit, since they share one function.
    """
    if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
        return {"isolate_recompiles": True}
    return {}


class _Inductor(torch._TorchCompileInductorWrapper):
    """Inductor as ``torch.compile(backend="inductor", options=...)`` has it; dynamo set for us.

    Two of dynamo's settings are read when it compiles a frame, after it has called the
    backend for that frame's graph (when it builds the guards and the bytecode that calls
    the graph), so the backend sets them, only when something compiles, and
    :func:`_run_compiled` restores the user's values when the call returns:

    - ``skip_nnmodule_hook_guards`` off: by default dynamo does not guard on the hooks of
      modules, so a hook registered after the first call would be ignored;
    - ``record_runtime_overhead`` off: otherwise every call marks where its bytecode before
      the graph starts and ends, for profiler traces (about 25 Python calls: 7 µs per call
      back to back, 14 to 24 µs call by call at batch 1).

    A call that compiles nothing (every call after the first, as long as the guards hold)
    does not touch the settings: setting one twice per call cost 9 µs back to back. A
    setting this torch does not have (``record_runtime_overhead`` is recent) is left out.
    """

    SETTINGS: ClassVar[dict[str, bool]] = {
        "skip_nnmodule_hook_guards": False,
        "record_runtime_overhead": False,
    }

    def __init__(self, options: dict[str, object]) -> None:
        super().__init__(None, options, None)
        self.saved: dict[str, object] | None = None  # the user's values, while a call compiles

    def __call__(self, model: torch.fx.GraphModule, inputs: list[object], **kwargs: object):
        config = torch._dynamo.config
        settings = {name: v for name, v in self.SETTINGS.items() if hasattr(config, name)}
        if self.saved is None:
            self.saved = {name: getattr(config, name) for name in settings}
        for name, value in settings.items():
            setattr(config, name, value)
        return super().__call__(model, inputs, **kwargs)

    def restore(self) -> None:
        """Give dynamo's settings back the values they had before the call compiled."""
        if self.saved is not None:
            config = torch._dynamo.config
            for name, value in self.saved.items():
                setattr(config, name, value)
            self.saved = None


def _compiled(
    module: nn.Module, device: torch.device
) -> tuple[Callable[[Tensor], Tensor], _Inductor]:
    """``module(xs)`` under ``torch.compile``, made on first use and kept while ``module`` lives.

    One compiled callable (and its backend) per device type; on the CPU its kernels are
    called from C++ (inductor's ``cpp_wrapper``), which takes less time per call than the
    Python wrapper. The graph does not assert its inputs' sizes and strides (inductor's
    ``size_asserts``): the guards dynamo checks before every call already match each input
    tensor's sizes, strides, dtype and device, and repeating it cost 7 to 17 µs per call at
    batch 1. The compiled callable holds ``module`` weakly, so the cache does not keep it
    alive.
    """
    per_device = _COMPILED.get(module)
    if per_device is None:
        per_device = _COMPILED[module] = {}
    compiled = per_device.get(device.type)
    if compiled is None:
        ref = weakref.ref(module)
        options: dict[str, object] = {"size_asserts": False}
        if device.type == "cpu":
            options["cpp_wrapper"] = True
        backend = _Inductor(options)
        fn = torch.compile(lambda xs: ref()(xs), backend=backend, **_isolated())
        compiled = per_device[device.type] = (fn, backend)
    return compiled


def _run_compiled(module: nn.Module, xs: Tensor) -> Tensor:
    """``module(xs)`` compiled, with guards on the modules' hooks (see :class:`_Inductor`)."""
    compiled, backend = _compiled(module, xs.device)
    try:
        return compiled(xs)
    finally:
        backend.restore()


def run(module: nn.Module, xs: Tensor, mode: Mode = "step", compile: bool = False) -> Tensor:
    """Run ``module`` over the sequence ``xs`` (time first) and stack its outputs.

    ``mode="step"`` calls ``module(x)`` for each step: always correct, whatever the model
    does with its input. ``mode="sequence"`` calls ``module(xs)`` once in
    :func:`sequence_mode`, so that every layer runs all steps at once (much faster, see the
    "Sequence mode" page); it needs a forward that treats the time dimension as an extra
    leading dimension, which :func:`tracetorch.testing.check_sequence` verifies. Both
    leave every hidden state as the last step left it, so the modes can be mixed. The states
    are not reset first: call ``zero_states()`` to start a new sequence.

    The default is ``"step"`` because it gives the right answer for every model; a model
    whose forward reshapes or indexes its input by position (``x.view(B, -1)``,
    ``x[:, 0]``) would silently compute something else in sequence mode. A layer that the
    model calls more than once per step (one instance in two places, or in a loop of
    sub-steps) cannot run in sequence mode: its second call raises a ``RuntimeError`` that
    names it. A call that raises, in either mode, leaves every state as it found it.

    Args:
        module: Any ``nn.Module`` (a :class:`tracetorch.Model`, an ``nn.Sequential``, a
            single layer).
        xs: The inputs, ``[T, *step_shape]``.
        mode: ``"step"`` or ``"sequence"``.
        compile: Sequence mode only: run ``module(xs)`` through ``torch.compile``, which
            unrolls the time loop of every layer and fuses it into a few kernels (on the
            CPU they are called from C++, inductor's ``cpp_wrapper``, rather than from a
            Python wrapper). The compiled callable is made on the first call and kept
            (weakly) for ``module``, one per device type. Its fused kernels may round
            differently (a fused multiply-add where eager code rounds twice), so it agrees
            with the eager modes to rounding, not bit for bit.
            The first call compiles, which takes seconds to minutes: about 10 to 30 s for a
            784-256-256-10 network at ``T = 25`` on a 2-core CPU, more for longer sequences
            (the loop is unrolled: about 3 minutes at ``T = 100``). A new sequence length,
            dtype, device or grad mode, ``TTcompile()``, a changed attribute and a hook
            registered or removed compile again (each model has its own
            ``torch._dynamo.config.recompile_limit``, 8 by default, where torch.compile
            takes ``isolate_recompiles``, as torch 2.13 does; beyond it the model runs
            eagerly). It pays off in
            inference at small batch sizes, where the eager sequence mode is bound by one
            kernel launch per operation and step; in training it was slower than the eager
            sequence mode (see the "Performance" page), so leave it off there. Dual
            tensors (``torch.autograd.forward_ad``) are refused with a
            ``NotImplementedError``: compiled graphs have no forward-mode rule.

    Returns:
        The outputs of every step, ``[T, *out_step_shape]``.

    Example:
        >>> import torch, tracetorch as tt
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), tt.snn.LIF(8), torch.nn.Linear(8, 2))
        >>> xs = torch.rand(25, 3, 4)
        >>> tt.zero_states(net)
        >>> ys = tt.run(net, xs, mode="sequence")
        >>> tt.zero_states(net)
        >>> torch.allclose(ys, tt.run(net, xs, mode="step"))
        True
    """
    if mode not in ("step", "sequence"):
        raise ValueError(f"run: expected mode 'step' or 'sequence', got {mode!r}")
    if compile and mode != "sequence":
        raise ValueError(
            f"run: compile=True needs mode='sequence', got mode={mode!r}; pass "
            f"mode='sequence', or compile=False to run step by step"
        )
    if not isinstance(xs, Tensor) or xs.dim() < 1 or xs.shape[0] == 0:
        shape = tuple(xs.shape) if isinstance(xs, Tensor) else type(xs).__name__
        raise ValueError(f"run: expected xs of shape [T, *step_shape] with T >= 1, got {shape}")
    if compile and _carries_tangents(module, xs):
        raise NotImplementedError(
            "run: compile=True cannot carry forward-mode tangents (dual tensors of "
            "torch.autograd.forward_ad): the graphs torch.compile makes have no forward-mode "
            "rule; pass compile=False (torch.func.jvp and jacfwd work with either)"
        )
    if mode == "step":
        saved = _states(_survey(module)[1])
        try:
            return torch.stack([_one_step(module, x, t) for t, x in enumerate(xs)])
        except BaseException:  # all or nothing, as in sequence mode
            _restore(saved)
            raise
    switched, _, stateful = _switch_to_sequences(module)  # sequence_mode(), one call, no hook
    saved = _states(stateful)
    try:
        _count_call()
        ys = _run_compiled(module, xs) if compile else module(xs)
        if not isinstance(ys, Tensor) or ys.dim() < 1 or ys.shape[0] != xs.shape[0]:
            got = tuple(ys.shape) if isinstance(ys, Tensor) else type(ys).__name__
            raise ValueError(
                f"run: in sequence mode {type(module).__name__} returned {got}, expected a "
                f"tensor with the {xs.shape[0]} timesteps first; check the model with "
                f"tt.testing.check_sequence"
            )
    except BaseException:  # all or nothing: no layer is left steps ahead of the others
        _restore(saved)
        raise
    finally:
        _switch_back(module, switched)
    return ys


def _carries_tangents(module: nn.Module, xs: Tensor) -> bool:
    """Whether ``xs`` or a parameter or buffer of ``module`` is a dual tensor (forward mode)."""
    if torch.autograd.forward_ad._current_level < 0:  # no dual level: nothing can be dual
        return False
    tensors = itertools.chain((xs,), module.parameters(), module.buffers())
    return any(torch.autograd.forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def _one_step(module: nn.Module, x: Tensor, t: int) -> Tensor:
    """``module(x)``, which must be one tensor for :func:`run` to stack."""
    y = module(x)
    if not isinstance(y, Tensor):
        raise TypeError(
            f"run: {type(module).__name__} returned {type(y).__name__} at step {t}, expected "
            f"one tensor per step (run stacks them); for other outputs, call the model in "
            f"your own loop"
        )
    return y
