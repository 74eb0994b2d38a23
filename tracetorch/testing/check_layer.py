"""The conformance check a stateful layer must pass: gradients, states, dim, save/load, sequence."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Sequence
from typing import NoReturn

import torch
from torch import Tensor, nn

from ..core.layer import Layer
from ..core.model import load_states, save_states
from ..core.sequence import sequence_mode
from .check_function import GradientCheckError, _compare_subsets, check_function
from .check_sequence import _kind, _live_states

__all__ = ["CHECKS", "LayerCheckError", "check_layer"]

CHECKS = (
    "lazy_states",
    "zero_states",
    "gradients",
    "detach_states",
    "dim",
    "ttcompile",
    "save_load",
    "sequence",
)
"""The checks :func:`check_layer` runs, in order; any of them can be skipped by name."""

Move = Callable[[Tensor], Tensor]  # moves the feature dimension of a tensor

_SAME = {"rtol": 1e-6, "atol": 1e-6}  # "equal" for float64 runs that may differ in rounding
# "equal" for float64 runs of one computation by two code paths (forward_sequence and the loop
# of forward): they differ by a few roundings, ~1e-16 relative, where a real bug shows at once
_EXACT = {"rtol": 1e-10, "atol": 1e-10}


class LayerCheckError(AssertionError):
    """A layer failed one of the checks of :func:`check_layer`.

    Attributes:
        layer: The class name of the layer.
        check: Which check failed (one of :data:`CHECKS`).
    """

    def __init__(self, message: str, *, layer: str, check: str) -> None:
        super().__init__(message)
        self.layer = layer
        self.check = check


class _Unroll(nn.Module):
    """Runs a layer over a sequence from zero states: a pure function of inputs and weights."""

    def __init__(self, layer: Layer, seed: int) -> None:
        super().__init__()
        self.layer = layer
        self.seed = seed

    def forward(self, *xs: Tensor) -> tuple[Tensor, ...]:
        self.layer.zero_states()
        torch.manual_seed(self.seed)
        outputs = tuple(self.layer(x) for x in xs)
        self.layer.zero_states()
        return outputs


class _Checker:
    """The state shared by the checks: the layer factory, the inputs and a reference layer."""

    def __init__(
        self,
        make_layer: Callable[..., Layer],
        input_shape: tuple[int, ...],
        steps: int,
        seed: int,
        device: torch.device,
        tolerances: dict[str, float],
        skip: Collection[str] = (),
    ) -> None:
        self.make_layer = make_layer
        self.tolerances = tolerances  # atol, rtol and eps of the gradient check
        self.skip = frozenset(skip)
        self.input_shape = input_shape
        self.steps = steps
        self.seed = seed
        self.device = device
        first = self._build(-1)
        if self._build(-1) is first:  # checked before anything changes the user's layer
            raise TypeError(
                f"check_layer: make_layer must build a new layer at each call; it returned "
                f"the same {type(first).__name__} twice (the checks change the layers they build)"
            )
        self.reference = first.to(device=self.device, dtype=torch.float64)
        self.name = type(self.reference).__name__
        self.weights = self.reference.state_dict()
        generator = torch.Generator().manual_seed(seed)
        self.xs = [self._randn(input_shape, generator) for _ in range(steps)]
        wide = (*input_shape[:-1], 2, input_shape[-1])  # one more dimension, before the features
        self.wide_xs = [self._randn(wide, generator) for _ in range(steps)]

    def _randn(self, shape: Sequence[int], generator: torch.Generator) -> Tensor:
        x = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
        return x.to(self.device)

    def _make(self, dim: int) -> Layer:
        return self._build(dim).to(device=self.device, dtype=torch.float64)

    def _build(self, dim: int) -> Layer:
        """``make_layer(dim=dim)``, checked, as it came."""
        layer = self.make_layer(dim=dim)
        if not isinstance(layer, Layer):
            raise TypeError(
                f"check_layer: make_layer(dim={dim}) must return a tracetorch Layer, got "
                f"{type(layer).__name__}"
            )
        if layer.dim != dim:
            raise LayerCheckError(
                f"check_layer: {type(layer).__name__} failed the 'dim' check: make_layer(dim="
                f"{dim}) built a layer with dim={layer.dim}; pass the dim keyword on to the layer",
                layer=type(layer).__name__,
                check="dim",
            )
        return layer

    def copy(self, dim: int = -1) -> Layer:
        """A fresh layer (built with ``dim``) holding the reference layer's weights."""
        layer = self._make(dim)
        layer.load_state_dict(self.weights)
        return layer

    def run(self, layer: Layer, xs: Sequence[Tensor], offset: int = 0) -> list[Tensor]:
        """The outputs of ``layer`` over ``xs``, with the global RNG seeded first."""
        torch.manual_seed(self.seed + offset)
        outputs = []
        for x in xs:
            y = layer(x)
            if not isinstance(y, Tensor):
                raise TypeError(f"forward must return one tensor, got {type(y).__name__}")
            outputs.append(y)
        return outputs

    def fail(self, check: str, how: str, cause: BaseException | None = None) -> NoReturn:
        raise LayerCheckError(
            f"check_layer: {self.name} failed the {check!r} check: {how}",
            layer=self.name,
            check=check,
        ) from cause

    def same(
        self,
        check: str,
        what: str,
        got: Sequence[Tensor],
        expected: Sequence[Tensor],
        tolerance: dict[str, float] = _SAME,
    ) -> None:
        """Fail ``check`` unless the two output sequences agree step by step."""
        for t, (a, b) in enumerate(zip(got, expected, strict=True)):
            if a.shape != b.shape:
                self.fail(
                    check,
                    f"{what}: at step {t} the output has shape {tuple(a.shape)}, expected "
                    f"{tuple(b.shape)}",
                )
            if not torch.allclose(a, b, **tolerance):
                diff = (a - b).abs().max().item()
                self.fail(check, f"{what}: the outputs differ at step {t} (max |diff| {diff:.3g})")

    def expected_state_shape(self, x: Tensor, dim: int) -> tuple[int, ...]:
        shape = list(x.shape)
        shape[dim] = self.reference.num_neurons
        return tuple(shape)

    # ---------------------------------------------------------------------------- checks

    def lazy_states(self) -> None:
        check = "lazy_states"
        layer = self.copy()
        if not all(isinstance(name, str) for name in layer.state_names):
            self.fail(check, f"state_names must be strings, got {layer.state_names!r}")
        for name in layer.state_names:
            if getattr(layer, name) is not None:
                self.fail(
                    check,
                    f"state {name!r} is not None before the first forward (declare it "
                    f"with _initialize_state and create it in forward with _ensure_states)",
                )
        x = self.xs[0]
        y = self.run(layer, [x])[0]
        if y.dtype != x.dtype or y.device != x.device:
            self.fail(
                check, f"the output is {y.dtype} on {y.device}, the input {x.dtype} on {x.device}"
            )
        expected = self.expected_state_shape(x, -1)
        for name in layer.state_names:
            state = getattr(layer, name)
            if state is None:
                self.fail(check, f"state {name!r} is still None after the first forward")
            if tuple(state.shape) != expected:
                self.fail(
                    check,
                    f"state {name!r} has shape {tuple(state.shape)} after a first input of shape "
                    f"{tuple(x.shape)}; expected {expected} (the input's shape with "
                    f"num_neurons={layer.num_neurons} at dim -1): create states with "
                    f"self._ensure_states(x)",
                )
            if state.dtype != x.dtype or state.device != x.device:
                self.fail(
                    check,
                    f"state {name!r} is {state.dtype} on {state.device}, the input "
                    f"{x.dtype} on {x.device}: states must follow the input's dtype and device",
                )

    def gradients(self) -> None:
        layer = self.copy()
        unroll = _Unroll(layer, self.seed)
        learnable = [(n, p) for n, p in unroll.named_parameters() if p.requires_grad]
        keys = [n for n, _ in learnable]

        def fn(*args: Tensor) -> tuple[Tensor, ...]:
            xs, weights = args[: self.steps], args[self.steps :]
            return torch.func.functional_call(unroll, dict(zip(keys, weights, strict=True)), xs)

        names = [f"x[t={t}]" for t in range(self.steps)]
        names += [f"parameter {n.removeprefix('layer.')!r}" for n in keys]
        inputs = [
            t.detach().clone().requires_grad_() for t in (*self.xs, *(p for _, p in learnable))
        ]
        # Fast mode compares one random projection of the Jacobians (cheap, and a wrong
        # gradient almost surely shows in it); on failure, check_function finds the culprit.
        options = self.tolerances
        if torch.autograd.gradcheck(fn, inputs, raise_exception=False, fast_mode=True, **options):
            self.gradients_of_subsets(fn, inputs, names)
            return
        try:
            check_function(fn, *inputs, names=names, check_gradgrad=False, **options)
        except GradientCheckError as err:
            self.fail(
                "gradients",
                f"over {self.steps} timesteps in float64: {err} (a layer with a surrogate "
                f"gradient cannot pass: build it with a smooth spike function for this check, "
                f"or skip 'gradients')",
                cause=err,
            )
        self.fail(
            "gradients",
            f"over {self.steps} timesteps in float64: torch.autograd.gradcheck (fast mode) "
            f"failed, though each Jacobian matches finite differences entry by entry",
        )

    def gradients_of_subsets(self, fn: Callable, inputs: list[Tensor], names: list[str]) -> None:
        """The gradients above, again with only some of the inputs requiring grad.

        Above, every input step and parameter requires grad; in training the inputs are
        data. A layer whose forward branches on ``requires_grad`` (or a Function on
        ``ctx.needs_input_grad``) must give the same gradients to what does require grad:
        the inputs data and the parameters learnable, the parameters frozen, and each one
        left out and alone.
        """
        wrt = list(range(len(inputs)))
        more = [frozenset(wrt[self.steps :]), frozenset(wrt[: self.steps])]
        tolerances = {"atol": self.tolerances["atol"], "rtol": self.tolerances["rtol"]}
        try:
            _compare_subsets(fn, inputs, wrt, names, names=names, more=more, **tolerances)
        except GradientCheckError as err:
            self.fail("gradients", f"over {self.steps} timesteps in float64: {err}", cause=err)

    def zero_states(self) -> None:
        layer = self.copy()
        first = self.run(layer, self.xs)
        layer.zero_states()
        for name in layer.state_names:
            if getattr(layer, name) is not None:
                self.fail("zero_states", f"state {name!r} is not None after zero_states()")
        again = self.run(layer, self.xs)
        self.same("zero_states", "a run after zero_states() vs a fresh run", again, first)

    def detach_states(self) -> None:
        check = "detach_states"
        layer = self.copy()
        split = self.steps // 2
        xs = [x.clone().requires_grad_() for x in self.xs]
        self.run(layer, xs[:split])
        before = {name: getattr(layer, name) for name in layer.state_names}
        layer.detach_states()
        for name, old in before.items():
            new = getattr(layer, name)
            if new is None or new.shape != old.shape or not torch.equal(new, old.detach()):
                self.fail(check, f"detach_states() changed the value of state {name!r}")
            if new.grad_fn is not None:
                self.fail(
                    check,
                    f"state {name!r} still has a grad_fn ({type(new.grad_fn).__name__}) after "
                    f"detach_states(): it must keep the values and cut the graph",
                )
            if new.requires_grad:
                self.fail(check, f"state {name!r} still requires grad after detach_states()")
        later = [y.sum() for y in self.run(layer, xs[split:], offset=split) if y.requires_grad]
        if not later:
            return
        grads = torch.autograd.grad(sum(later), xs[:split], allow_unused=True)
        for t, grad in enumerate(grads):
            if grad is not None and bool(grad.ne(0).any()):
                self.fail(
                    check,
                    f"the gradient of the outputs after detach_states() (called before step "
                    f"{split}) reaches the input of step {t}",
                )

    def moved_layouts(self) -> dict[int, tuple[Move, Move]]:
        """For each ``dim`` other than -1: how to move the wide inputs' features there, and back.

        The wide inputs have one more dimension before the features: their features go to
        ``-2`` (and its positive equivalent) by a transpose, and to ``0`` by a move.
        """
        rank = len(self.input_shape) + 1
        return {
            -2: (lambda t: t.transpose(-1, -2), lambda t: t.transpose(-1, -2)),
            rank - 2: (lambda t: t.transpose(-1, -2), lambda t: t.transpose(-1, -2)),
            0: (lambda t: t.movedim(-1, 0), lambda t: t.movedim(0, -1)),
        }

    def dim(self) -> None:
        """Same weights built with another ``dim`` on the permuted input: the permuted result."""
        check = "dim"
        layer = self.copy(-1)
        wide = [x.clone().requires_grad_() for x in self.wide_xs]
        expected = self.run(layer, wide)
        expected_states = {name: getattr(layer, name) for name in layer.state_names}
        generator = torch.Generator().manual_seed(self.seed + 2)
        terms = [*expected, *expected_states.values()]
        weights = [self._randn(t.shape, generator) for t in terms]
        expected_grads = self.weighted_gradients(layer, wide, terms, weights)
        for dim, (forth, back) in self.moved_layouts().items():
            moved = self.copy(dim)
            xs = [forth(x).detach().requires_grad_() for x in self.wide_xs]
            got = [back(y) for y in self.run(moved, xs)]
            what = (
                f"the layer built with dim={dim} on inputs of shape {tuple(xs[0].shape)} vs "
                f"dim=-1 on the same inputs with the features last"
            )
            self.same(check, what, got, expected)
            for name, state in expected_states.items():
                other = getattr(moved, name)
                want = self.expected_state_shape(xs[0], dim)
                if other is None or tuple(other.shape) != want:
                    shape = None if other is None else tuple(other.shape)
                    self.fail(
                        check,
                        f"with dim={dim} and inputs of shape {tuple(xs[0].shape)}, state "
                        f"{name!r} has shape {shape}, expected {want}",
                    )
                self.same(check, f"state {name!r} with dim={dim}", [back(other)], [state])
            states = [back(getattr(moved, name)) for name in expected_states]
            grads = self.weighted_gradients(moved, xs, [*got, *states], weights)
            for key, grad in grads.items():
                grad = back(grad) if key.startswith("the input") and grad is not None else grad
                a, b = _dense(grad, expected_grads[key]), _dense(expected_grads[key], grad)
                if a is not None and not torch.allclose(a, b, **_SAME):
                    diff = (a - b).abs().max().item()
                    self.fail(
                        check,
                        f"with dim={dim}, the gradient w.r.t. {key} differs from the one with "
                        f"dim=-1 (max |diff| {diff:.3g}; the loss weighs every output and "
                        f"final state)",
                    )

    def weighted_gradients(
        self, layer: Layer, xs: list[Tensor], terms: list[Tensor], weights: list[Tensor]
    ) -> dict[str, Tensor | None]:
        """Gradients of ``sum(term * weight)`` w.r.t. each input step and learnable parameter."""
        parameters = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
        keys = [f"the input of step {t}" for t in range(len(xs))]
        keys += [f"parameter {n!r}" for n, _ in parameters]
        loss = sum((t * w).sum() for t, w in zip(terms, weights, strict=True))
        if not loss.requires_grad:
            return dict.fromkeys(keys)
        inputs = [*xs, *(p for _, p in parameters)]
        return dict(zip(keys, torch.autograd.grad(loss, inputs, allow_unused=True), strict=True))

    def ttcompile(self) -> None:
        check = "ttcompile"
        layer = self.copy()
        expected = self.run(layer, self.xs)
        parameter_names = [n for n, _ in layer.named_parameters()]
        for step in ("TTcompile()", "TTcompile() twice", "TTdecompile()", "TTdecompile() twice"):
            (layer.TTcompile if "TTcompile" in step else layer.TTdecompile)()
            layer.zero_states()
            with torch.no_grad():  # a baked layer is for inference (with grad, it warns)
                got = self.run(layer, self.xs)
            self.same(check, f"after {step} vs before", got, expected)
        names = [n for n, _ in layer.named_parameters()]
        if names != parameter_names:
            self.fail(
                check,
                f"after TTcompile() and TTdecompile() the parameters are {names}, expected "
                f"{parameter_names}",
            )
        # A baked value changed after TTcompile() (quantized, pruned) comes back through the
        # inverse of its transform: nudge every value towards 0 (inside any bounds around it).
        layer.TTcompile()
        baked = dict(layer.named_buffers(recurse=False))
        with torch.no_grad():
            for name in layer.parameter_names:
                baked[name].mul_(1 - 1e-9)
            layer.zero_states()
            nudged = self.run(layer, self.xs)
        layer.TTdecompile()
        layer.zero_states()
        self.same(
            check,
            "after changing the baked values, TTdecompile() vs the baked layer (does each "
            "inverse undo its transform?)",
            self.run(layer, self.xs),
            nudged,
        )

    def save_load(self) -> None:
        check = "save_load"
        split = self.steps // 2
        layer = self.copy()
        self.run(layer, self.xs[:split])
        saved = save_states(layer)
        live = set(_live_states(layer))  # with those of the layers inside it, if any
        if set(saved) != live:
            self.fail(check, f"save_states() returned {sorted(saved)}, expected {sorted(live)}")
        expected = self.run(layer, self.xs[split:], offset=split)
        fresh = self.copy()
        load_states(fresh, saved)
        got = self.run(fresh, self.xs[split:], offset=split)
        self.same(
            check,
            f"{self.steps - split} steps after save_states() at step {split} vs the same steps "
            f"on a fresh copy after load_states() (is every hidden state declared with "
            f"_initialize_state, and every weight in state_dict?)",
            got,
            expected,
        )

    def sequence(self) -> None:
        """``forward_sequence`` equals the loop of ``forward``: outputs, states and gradients.

        Run on the inputs with the features last (``dim=-1``), on the wide inputs with the
        features moved as in the ``"dim"`` check (unless it is skipped: the layer may not take
        ``dim``), and on the inputs without their first dimension where ``forward`` takes
        them (no batch); each from zero states, and after one step of ``forward`` (a sequence
        starts from the live states).
        """
        layouts = [(-1, torch.stack(self.xs))]
        moved = {} if "dim" in self.skip else self.moved_layouts()
        for dim, (forth, _) in moved.items():
            layouts.append((dim, torch.stack([forth(x) for x in self.wide_xs])))
        if self.xs[0].dim() >= 2 and self.takes_batch_free():
            layouts.append((-1, torch.stack([x[0] for x in self.xs])))
        for dim, xs in layouts:
            for warm in (False, True):
                self.compare_sequence(dim, xs, warm)
        self.compare_sequence(-1, layouts[0][1][:1], warm=False)  # one step (T = 1)

    def takes_batch_free(self) -> bool:
        """Whether the layer steps through inputs without their first (batch) dimension.

        tracetorch's layers do; a user's layer may require a batch. Where it does not, its
        sequence path must take batch-free inputs too.
        """
        try:
            self.run(self.copy(), [x[0] for x in self.xs])
        except Exception:
            return False
        return True

    def compare_sequence(self, dim: int, xs: Tensor, warm: bool) -> None:
        """Step one copy of the layer through ``xs``; run copies in sequence mode and compare.

        The sequence runs start after one step of ``forward`` when ``warm``. One runs with
        autograd, one with autograd on inputs that do not require grad (data, as in
        training: a path of its own in a layer that branches on ``xs.requires_grad``), one
        under ``torch.no_grad()`` (a path of its own in a layer that branches on
        ``torch.is_grad_enabled()``).
        """
        check = "sequence"
        start = "after one step of forward" if warm else "from zero states"
        where = f"dim={dim}, xs of shape {tuple(xs.shape)}, forward_sequence {start}"
        stepped, sequenced, quiet = self.copy(dim), self.copy(dim), self.copy(dim)
        xs_step, xs_seq = xs.clone().requires_grad_(), xs.clone().requires_grad_()
        expected = torch.stack(self.run(stepped, xs_step.unbind(0)))
        what = f"forward_sequence vs forward step by step ({where})"
        got = self.run_sequence(sequenced, xs_seq, int(warm), expected, where)
        self.same(check, what, got.unbind(0), expected.unbind(0), _EXACT)
        self.same_states(what, sequenced, stepped)
        self.same_gradients(what, (stepped, xs_step, expected), (sequenced, xs_seq, got))
        data_where = f"{where}, xs not requiring grad"
        what = f"forward_sequence vs forward step by step ({data_where})"
        stepped, data = self.copy(dim), self.copy(dim)
        expected = torch.stack(self.run(stepped, xs.clone().unbind(0)))
        got = self.run_sequence(data, xs.clone(), int(warm), expected, data_where)
        self.same(check, what, got.unbind(0), expected.unbind(0), _EXACT)
        self.same_states(what, data, stepped)
        self.same_gradients(what, (stepped, None, expected), (data, None, got))
        where = f"{where}, under torch.no_grad()"
        what = f"forward_sequence vs forward step by step ({where})"
        with torch.no_grad():
            got = self.run_sequence(quiet, xs.clone(), int(warm), expected, where)
        self.same(check, what, got.unbind(0), expected.detach().unbind(0), _EXACT)
        self.same_states(what, quiet, stepped)

    def run_sequence(
        self, layer: Layer, xs: Tensor, split: int, expected: Tensor, where: str
    ) -> Tensor:
        """``split`` steps of ``forward``, then the rest in one call in sequence mode.

        The call is ``layer(xs)`` in :func:`tracetorch.sequence_mode`, as a model calls the
        layer: an override of ``forward_sequence`` that calls ``self(x)`` fails here as it
        would there.
        """
        check = "sequence"
        outputs = self.run(layer, xs[:split].unbind(0))  # seeds the RNG as the steps did
        try:
            with sequence_mode(layer):
                rest = layer(xs[split:])
        except Exception as err:
            self.fail(
                check,
                f"forward_sequence raised {type(err).__name__}: {err} (called as layer(xs) in "
                f"tt.sequence_mode(layer); {where})",
                err,
            )
        if not isinstance(rest, Tensor):
            self.fail(check, f"forward_sequence must return a tensor, got {type(rest).__name__}")
        want = (len(xs) - split, *expected.shape[1:])
        if tuple(rest.shape) != want or rest.dtype != expected.dtype:
            self.fail(
                check,
                f"forward_sequence returned a {rest.dtype} tensor of shape {tuple(rest.shape)}, "
                f"expected {expected.dtype} of shape {want}: the outputs of forward for each "
                f"step, stacked along a new dim 0 ({where})",
            )
        return torch.cat([*(y.unsqueeze(0) for y in outputs), rest])

    def same_states(self, what: str, sequenced: Layer, stepped: Layer) -> None:
        """Fail "sequence" unless both hold the same states (of the layers inside them too)."""
        check = "sequence"
        got, expected = _live_states(sequenced), _live_states(stepped)
        for name in sorted(got.keys() ^ expected.keys()):
            a, b = (None if s.get(name) is None else tuple(s[name].shape) for s in (got, expected))
            self.fail(
                check,
                f"{what}: state {name!r} is {a} after forward_sequence, {b} after the steps",
            )
        for name, b in expected.items():
            a = got[name]
            if a.shape != b.shape or a.dtype != b.dtype:
                self.fail(
                    check,
                    f"{what}: state {name!r} is {_kind(a)} after forward_sequence, {_kind(b)} "
                    f"after the steps",
                )
            if not torch.allclose(a, b, **_EXACT):
                diff = (a - b).abs().max().item()
                self.fail(
                    check,
                    f"{what}: state {name!r} differs after the sequence (max |diff| {diff:.3g});"
                    f" forward_sequence must leave the states of the last step",
                )

    def same_gradients(
        self,
        what: str,
        stepped: tuple[Layer, Tensor | None, Tensor],
        sequenced: tuple[Layer, Tensor | None, Tensor],
    ) -> None:
        """Fail "sequence" unless one loss of outputs and final states has equal gradients.

        Each run is ``(layer, inputs, outputs)``, ``inputs`` ``None`` where they are data
        (then only the parameters' gradients are compared). The loss weighs every output and
        every final state with fixed random weights, so the gradients reaching each input
        step and each parameter through either are compared.
        """
        layer, xs, expected = stepped
        inputs_too = xs is not None  # None: inputs that do not require grad (data)
        generator = torch.Generator().manual_seed(self.seed + 1)
        states = _live_states(layer)  # those of the layers inside it too
        weights = [self._randn(expected.shape, generator)]
        weights += [self._randn(state.shape, generator) for state in states.values()]
        keys = [f"parameter {n!r}" for n, p in layer.named_parameters() if p.requires_grad]
        keys = ["xs", *keys] if inputs_too else keys
        grads = []
        for layer, xs, ys in (stepped, sequenced):
            inputs = [p for _, p in layer.named_parameters() if p.requires_grad]
            inputs = [xs, *inputs] if inputs_too else inputs
            live = _live_states(layer)
            terms = [ys, *(live[name] for name in states)]
            loss = sum((t * w).sum() for t, w in zip(terms, weights, strict=True))
            if not loss.requires_grad or not inputs:
                grads.append([None] * len(inputs))
                continue
            grads.append(torch.autograd.grad(loss, inputs, allow_unused=True))
        for key, a, b in zip(keys, *grads, strict=True):
            a, b = _dense(a, b), _dense(b, a)
            if a is None or torch.allclose(a, b, **_EXACT):
                continue
            if key == "xs":
                steps = [t for t in range(len(a)) if not torch.allclose(a[t], b[t], **_EXACT)]
                key = f"the input of step {steps[0]}"
            diff = (a - b).abs().max().item()
            self.fail(
                "sequence",
                f"{what}: the gradient w.r.t. {key} differs (max |diff| {diff:.3g}; the loss "
                f"weighs every output and final state): the backward of forward_sequence "
                f"must be the one of the steps",
            )


def _dense(grad: Tensor | None, other: Tensor | None) -> Tensor | None:
    """A gradient, or zeros for a missing one (``None``: unused) when the other is present."""
    if grad is None and other is not None:
        return torch.zeros_like(other)
    return grad


def check_layer(
    make_layer: Callable[..., Layer],
    input_shape: Sequence[int],
    steps: int = 3,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    atol: float = 1e-5,
    rtol: float = 1e-3,
    eps: float = 1e-6,
    skip: Collection[str] = (),
) -> bool:
    """Checks that a stateful layer behaves like every tracetorch layer.

    Run it on your own :class:`tracetorch.Layer` subclass. Everything runs in float64 on
    ``device``, on random inputs, from fresh layers that share one set of weights (copied
    through ``state_dict``). The checks, in order (skip any by name with ``skip``):

    - ``"lazy_states"``: every state is None before the first forward; after it, each has
      the input's shape with ``num_neurons`` at ``dim``, and the input's dtype and device.
    - ``"zero_states"``: after ``zero_states()`` every state is None, and a new run gives the
      outputs of a fresh run.
    - ``"gradients"``: over ``steps`` timesteps from zero states, the gradients of all outputs
      with respect to every input and every learnable parameter match finite differences
      (:func:`torch.autograd.gradcheck` in fast mode; on a failure, :func:`check_function`
      names the input or parameter whose gradient is wrong); and they stay the same when only
      some of them require grad (the inputs data, as in training; the parameters frozen).
    - ``"detach_states"``: ``detach_states()`` keeps the values and cuts the graph: the
      gradient of a later output does not reach inputs fed before it.
    - ``"dim"``: with an extra dimension before the features, the layer built with ``dim=-2``
      (and its positive equivalent, and ``dim=0``) on the permuted input gives the permuted
      outputs, states and gradients (w.r.t. the inputs and every learnable parameter) of the
      layer built with ``dim=-1``.
    - ``"ttcompile"``: ``TTcompile()`` and ``TTdecompile()`` (each twice) leave the outputs
      unchanged, and the parameters are restored; baked values changed before
      ``TTdecompile()`` come back through the inverse of their transform.
    - ``"save_load"``: a fresh copy given the states from ``save_states()`` after some steps
      continues exactly like the original.
    - ``"sequence"``: ``forward_sequence(xs)`` (sequence mode, see :func:`tracetorch.run`)
      equals calling ``forward`` on each step of ``xs`` to rounding (``1e-10``): the outputs,
      the states left behind, and the gradients of the outputs and final states with respect
      to the inputs and every learnable parameter (the states of layers inside the layer
      included), with autograd (on inputs that require grad, and on data inputs, which do
      not) and under ``torch.no_grad()``. The layer runs as a model runs
      it (``layer(xs)`` in :func:`tracetorch.sequence_mode`). Checked with ``dim=-1``, with the
      layouts of ``"dim"`` (unless skipped) and without the batch dimension (where
      ``forward`` takes such input), from zero states and from live states, and over a
      single step (``T = 1``). The default
      ``forward_sequence`` is that loop; this check is for layers that override it.

    Random layers are fine: the global RNG is seeded with ``seed`` before every run, so
    repeated runs draw the same numbers; the caller's RNG state is restored afterwards. (Their
    draws land on different elements once the input is permuted, so skip ``"dim"`` for them,
    and ``"sequence"`` when their ``forward_sequence`` draws in another order than the steps.)

    Args:
        make_layer: Builds a new layer at each call; called with the keyword ``dim``
            (``-1``, ``-2``, a positive equivalent, ``0``).
        input_shape: Shape of one timestep's input with the features last, e.g.
            ``(batch, features)``.
        steps: Timesteps per run (at least 2).
        seed: Seed of the inputs and of the global RNG during runs.
        device: Where to run the layer.
        atol: Absolute tolerance of the gradient check.
        rtol: Relative tolerance of the gradient check.
        eps: Finite-difference step of the gradient check.
        skip: Names of checks (see :data:`CHECKS`) not to run (``"compile"``, the old name
            of ``"ttcompile"``, is still understood, with a ``FutureWarning``).

    Returns:
        True when every check passes.

    Raises:
        LayerCheckError: A check failed; the message names the layer, the check and what
            went wrong (``err.layer``, ``err.check``).
        ValueError: Bad ``input_shape``, ``steps`` or ``skip``.
        TypeError: ``make_layer`` does not return a tracetorch Layer, or returns the same
            one twice (it must build a new layer at each call).

    Example:
        >>> import torch, tracetorch as tt
        >>> from tracetorch.testing import check_layer
        >>> class Leaky(tt.snn.Layer):
        ...     def __init__(self, n, dim=-1):
        ...         super().__init__(n, dim=dim)
        ...         self._register_decay("beta", 0.8)
        ...         self._initialize_state("mem")
        ...     def forward(self, x):
        ...         self._ensure_states(x)
        ...         mem = self._to_working_dim(self.mem) * self.beta + self._to_working_dim(x)
        ...         self.mem = self._from_working_dim(mem)
        ...         return self.mem
        >>> check_layer(lambda dim: Leaky(4, dim=dim), (2, 4))
        True
        >>> class Careless(Leaky):  # broadcasts beta against the last dim, whatever dim is
        ...     def forward(self, x):
        ...         self._ensure_states(x)
        ...         self.mem = self.mem * self.beta + x
        ...         return self.mem
        >>> check_layer(lambda dim: Careless(4, dim=dim), (2, 4), skip=["gradients"])
        Traceback (most recent call last):
        ...
        tracetorch.testing.check_layer.LayerCheckError: check_layer: Careless failed the 'dim' check: the layer raised RuntimeError: The size of tensor a (2) must match the size of tensor b (4) at non-singleton dimension 2
    """  # noqa: E501
    input_shape = tuple(input_shape)
    if not input_shape or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_shape
    ):
        raise ValueError(
            f"check_layer: expected input_shape to be a non-empty sequence of positive ints, "
            f"got {input_shape!r}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"check_layer: expected steps to be an int >= 2, got {steps!r}")
    if not isinstance(skip, str) and "compile" in skip:
        # the check's name before it was named after what it tests (TTcompile, not
        # torch.compile): still understood, for code written against it
        warnings.warn(
            "check_layer: the check 'compile' is now named 'ttcompile'; skip 'ttcompile'",
            FutureWarning,
            stacklevel=2,
        )
        skip = [("ttcompile" if name == "compile" else name) for name in skip]
    unknown = sorted(set(skip) - set(CHECKS))
    if isinstance(skip, str) or unknown:
        raise ValueError(
            f"check_layer: unknown check(s) in skip: {unknown or skip!r}; expected names from "
            f"{list(CHECKS)}"
        )
    device = torch.device(device)
    devices = []  # the CUDA generators fork_rng saves and restores, besides the CPU one
    if device.type == "cuda":
        devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=devices):
        tolerances = {"atol": atol, "rtol": rtol, "eps": eps}
        checker = _Checker(make_layer, input_shape, steps, seed, device, tolerances, skip)
        for check in CHECKS:
            if check in skip:
                continue
            try:
                getattr(checker, check)()
            except LayerCheckError:
                raise
            except Exception as err:
                raise LayerCheckError(
                    f"check_layer: {checker.name} failed the {check!r} check: the layer raised "
                    f"{type(err).__name__}: {err}",
                    layer=checker.name,
                    check=check,
                ) from err
    return True
