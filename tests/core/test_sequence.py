"""Sequence mode (``forward_sequence``, ``tt.run``, ``tt.sequence_mode``, ``TimeDistributed``).

Every layer of the layer table computes in sequence mode what it computes step by step:
outputs, the states it leaves, and gradients with respect to the inputs and parameters, also
across a mid-sequence ``detach_states`` and when the two modes are mixed. The comparisons here
are written out (not through ``tt.testing.check_sequence``, which has its own tests).
"""

from __future__ import annotations

import copy

import pytest
import torch
from layer_table import LayerCase, all_cases
from torch import Tensor, nn

import tracetorch as tt

CASES = all_cases()
F64 = torch.float64
STEPS = 6
TOLERANCE = {torch.float32: {"rtol": 1e-4, "atol": 1e-5}, F64: {"rtol": 1e-10, "atol": 1e-12}}


def state_values(module: nn.Module) -> dict[str, Tensor | None]:
    """Every declared state under ``module`` (``None`` included), by ``path.name``."""
    return {
        f"{path}.{name}": getattr(layer, name)
        for path, layer in tt.layers(module)
        for name in layer.state_names
    }


def loss_of(ys: Tensor, states: dict[str, Tensor | None], seed: int = 1) -> Tensor:
    """Fixed random weights on every output and every live state: one scalar to backprop."""
    generator = torch.Generator().manual_seed(seed)
    terms = [ys, *(s for s in states.values() if s is not None)]
    weights = [torch.randn(t.shape, generator=generator, dtype=F64).to(t.dtype) for t in terms]
    return sum((t * w).sum() for t, w in zip(terms, weights, strict=True))


def run_in_halves(module: nn.Module, xs: Tensor, mode: str, detach: bool) -> Tensor:
    """Run the first half of ``xs``, optionally ``detach_states``, then the second half."""
    half = len(xs) // 2
    first = tt.run(module, xs[:half], mode=mode)
    if detach:
        tt.detach_states(module)
    return torch.cat([first, tt.run(module, xs[half:], mode=mode)])


def assert_close(got, expected, what: str, tolerance: dict[str, float]) -> None:
    if expected is None or got is None:
        assert got is None and expected is None, what
        return
    assert got.shape == expected.shape, what
    torch.testing.assert_close(got, expected, **tolerance, msg=lambda m: f"{what}: {m}")


def compare_modes(make, xs: Tensor, tolerance: dict[str, float], detach: bool = False) -> None:
    """Outputs, final states and gradients (input, parameters) are equal in the two modes.

    ``make()`` builds the module; the sequence-mode copy gets the same weights.
    """
    results = {}
    reference = make()
    for mode in ("step", "sequence"):
        module = copy.deepcopy(reference)
        leaf = xs.clone().requires_grad_()
        ys = run_in_halves(module, leaf, mode, detach)
        states = state_values(module)
        parameters = [p for p in module.parameters() if p.requires_grad]
        loss = loss_of(ys, states)
        grads = torch.autograd.grad(loss, [leaf, *parameters], allow_unused=True)
        results[mode] = ys, states, grads
    (ys, states, grads), (ys_seq, states_seq, grads_seq) = results["step"], results["sequence"]
    assert_close(ys_seq, ys, "outputs", tolerance)
    assert states_seq.keys() == states.keys()
    for key in states:
        assert_close(states_seq[key], states[key], f"state {key}", tolerance)
    names = ["xs", *(n for n, p in reference.named_parameters() if p.requires_grad)]
    for name, got, expected in zip(names, grads_seq, grads, strict=True):
        if got is None and expected is None:  # a parameter the layer never reads
            continue
        if got is None or expected is None:  # unused in one mode: zero in the other
            got = torch.zeros_like(expected) if got is None else got
            expected = torch.zeros_like(got) if expected is None else expected
        assert_close(got, expected, f"gradient w.r.t. {name}", tolerance)


def layer_inputs(case: LayerCase, dim: int, dtype: torch.dtype, seed: int = 0) -> Tensor:
    """``[T, *input_shape]`` for ``dim=-1``; ``[T, B, C, H, W]`` for ``dim=-3``."""
    features = case.input_shape[-1]
    shape = (STEPS, *case.input_shape) if dim == -1 else (STEPS, 2, features, 3, 2)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=F64).to(dtype)


# ------------------------------------------------------------------ every layer of the table


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("dim", [-1, -3])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_sequence_mode_equals_step_mode(case: LayerCase, dim: int, dtype: torch.dtype) -> None:
    xs = layer_inputs(case, dim, dtype)
    for detach in (False, True):
        compare_modes(lambda: case.make(dim=dim).to(dtype), xs, TOLERANCE[dtype], detach)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_detach_states_between_sequences_cuts_the_gradient(case: LayerCase) -> None:
    layer = case.make().double()
    xs = layer_inputs(case, -1, F64).requires_grad_()
    tt.run(layer, xs[:3], mode="sequence")
    tt.detach_states(layer)
    later = tt.run(layer, xs[3:], mode="sequence")
    (grad,) = torch.autograd.grad(loss_of(later, state_values(layer)), [xs])
    assert not grad[:3].any()
    assert grad[3:].any()


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_sequence_mode_under_autocast_keeps_the_dtypes_of_step_mode(case: LayerCase) -> None:
    torch.manual_seed(0)
    layer = case.make()
    stepped = copy.deepcopy(layer)
    xs = layer_inputs(case, -1, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = tt.run(stepped, xs, mode="step")
        got = tt.run(layer, xs, mode="sequence")
    assert got.dtype == expected.dtype
    for key, state in state_values(stepped).items():  # states keep the layer's dtype
        assert state_values(layer)[key].dtype == state.dtype == torch.float32, key
    torch.testing.assert_close(got.float(), expected.float(), rtol=1e-2, atol=1e-2)


# ------------------------------------------------------------------------ mixing the modes


class Mixed(tt.Model):
    """A linear layer, spiking, recurrent and readout layers, in an nn.Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, 4),
            tt.snn.LIB(4, spike_fn=tt.functional.sigmoid4x),
            tt.rnn.GRU(4, 5),
            tt.snn.SLI(5),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def test_warm_up_in_sequence_mode_then_step_equals_all_step_mode() -> None:
    torch.manual_seed(0)
    reference = Mixed().double()
    xs = torch.randn(8, 2, 3, dtype=F64)
    results = []
    for modes in (("step", "step"), ("sequence", "step")):
        model = copy.deepcopy(reference)
        leaf = xs.clone().requires_grad_()
        warm = model.run(leaf[:5], mode=modes[0])
        saved = model.save_states()
        ys = torch.cat([warm, model.run(leaf[5:], mode=modes[1])])
        grads = torch.autograd.grad(loss_of(ys, state_values(model)), [leaf, *model.parameters()])
        results.append((ys, saved, model.save_states(), grads))
    (ys, saved, final, grads), (ys_mixed, saved_mixed, final_mixed, grads_mixed) = results
    tolerance = TOLERANCE[F64]
    assert_close(ys_mixed, ys, "outputs", tolerance)
    for after, a, b in (("warm-up", saved_mixed, saved), ("run", final_mixed, final)):
        assert a.keys() == b.keys() == {"net.1.mem", "net.2.h", "net.3.mem", "net.3.syn"}
        for key in b:
            assert_close(a[key], b[key], f"save_states after the {after}: {key}", tolerance)
    for got, expected in zip(grads_mixed, grads, strict=True):  # through the warm-up too
        assert_close(got, expected, "gradient", tolerance)
    assert grads[0][:5].abs().sum() > 0


def test_step_then_sequence_continues_from_the_live_states() -> None:
    torch.manual_seed(0)
    model = Mixed().double()
    xs = torch.randn(7, 2, 3, dtype=F64)
    expected = model.run(xs, mode="step")
    model.zero_states()
    ys = torch.cat([model.run(xs[:2], mode="step"), model.run(xs[2:], mode="sequence")])
    torch.testing.assert_close(ys, expected, **TOLERANCE[F64])


# ------------------------------------------------------------------------------ a conv SNN


class ConvSNN(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.conv = tt.nn.TimeDistributed(nn.Conv2d(2, 4, 3, padding=1))
        self.lib = tt.snn.LIB(4, dim=-3, spike_fn=tt.functional.sigmoid4x)
        self.flatten = tt.nn.TimeDistributed(nn.Flatten())
        self.fc = nn.Linear(4 * 5 * 5, 3)
        self.readout = tt.snn.LI(3)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.fc(self.flatten(self.lib(self.conv(x)))))


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["float32", "float64"])
def test_conv_snn_equal_in_both_modes(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    reference = ConvSNN().to(dtype)
    xs = torch.rand(5, 2, 2, 5, 5, dtype=dtype)
    for detach in (False, True):
        compare_modes(lambda: reference, xs, TOLERANCE[dtype], detach)


def test_conv_snn_calls_the_conv_once_per_sequence() -> None:
    model = ConvSNN()
    shapes = []
    model.conv.module.register_forward_hook(lambda m, args, out: shapes.append(args[0].shape))
    ys = model.run(torch.rand(5, 2, 2, 5, 5), mode="sequence")
    assert ys.shape == (5, 2, 3)
    assert shapes == [torch.Size([10, 2, 5, 5])]


# ----------------------------------------------------------- gradcheck of the sequence path


class _FromZero(nn.Module):
    """``forward_sequence`` from zero states, returning the outputs and the final states."""

    def __init__(self, layer: tt.Layer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, xs: Tensor) -> tuple[Tensor, ...]:
        self.layer.zero_states()
        ys = self.layer.forward_sequence(xs)
        final = tuple(getattr(self.layer, name) for name in self.layer.state_names)
        self.layer.zero_states()
        return (ys, *final)


@pytest.mark.parametrize(
    "make",
    [
        lambda: tt.snn.SLIB(4, spike_fn=tt.functional.sigmoid4x),
        lambda: tt.snn.LI(4),
        lambda: tt.snn.SLIEMA(4, alpha=0.3),
        lambda: tt.snn.LIB(4, dim=-2, spike_fn=tt.functional.sigmoid4x),
    ],
    ids=["SLIB", "LI", "SLIEMA", "LIB-dim-2"],
)
def test_gradcheck_through_the_sequence_path(make) -> None:
    torch.manual_seed(0)
    layer = make().double()
    with torch.no_grad():  # per-neuron values away from the defaults
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    wrapper = _FromZero(layer)
    names = [n for n, _ in wrapper.named_parameters()]
    shape = (5, 2, 4) if layer.dim == -1 else (5, 2, 4, 3)
    xs = torch.randn(shape, dtype=F64, requires_grad=True)
    raw = [p.detach().clone().requires_grad_() for p in wrapper.parameters()]

    def fn(xs: Tensor, *raw: Tensor) -> tuple[Tensor, ...]:
        weights = dict(zip(names, raw, strict=True))
        return torch.func.functional_call(wrapper, weights, (xs,))

    assert len(names) >= 1
    assert torch.autograd.gradcheck(fn, (xs, *raw), eps=1e-6, atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_bad_sequences_are_rejected_naming_the_layer_and_changing_nothing(case) -> None:
    layer = case.make().double()
    name = type(layer).__name__
    xs = layer_inputs(case, -1, F64)
    wrong = xs.new_zeros((*xs.shape[:-1], xs.shape[-1] + 1))
    for first_call in (True, False):
        before = {n: getattr(layer, n) for n in layer.state_names}
        for bad, message in ((xs[0].flatten(), "sequence mode"), (wrong, "features")):
            for call in (layer.forward_sequence, lambda xs: tt.run(layer, xs, "sequence")):
                with pytest.raises(ValueError, match=message) as info:
                    call(bad)
                assert str(info.value).startswith(f"{name}: ")
                after = {n: getattr(layer, n) for n in layer.state_names}
                assert after.keys() == before.keys()
                for n, state in before.items():
                    assert after[n] is state  # the very same tensor (or still None)
                assert "forward" not in layer.__dict__
        if first_call:
            layer(xs[0])  # live states for the second round
            assert all(getattr(layer, n) is not None for n in layer.state_names)


def test_run_rejects_a_bad_mode_and_a_sequence_without_steps() -> None:
    model = Mixed()
    with pytest.raises(ValueError, match="expected mode 'step' or 'sequence', got 'steps'"):
        tt.run(model, torch.rand(4, 2, 3), mode="steps")
    with pytest.raises(ValueError, match="T >= 1"):
        model.run(torch.rand(0, 2, 3), mode="sequence")
    assert model.save_states() == {}
    assert not any("forward" in m.__dict__ for m in model.modules())


class Exploding(tt.Model):
    """Raises after its first layer has run."""

    def __init__(self) -> None:
        super().__init__()
        self.first = tt.snn.LI(3)
        self.inner = nn.Sequential(tt.snn.LIB(3), tt.nn.TimeDistributed(nn.Flatten()))

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(self.first(x) + torch.ones(7))  # 7 does not broadcast against 3


def test_an_exception_in_sequence_mode_switches_every_layer_back() -> None:
    model = Exploding()
    with pytest.raises(RuntimeError, match="size of tensor"):
        model.run(torch.rand(4, 2, 3), mode="sequence")
    assert not any("forward" in m.__dict__ for m in model.modules())
    ys = model.first(torch.rand(2, 3))  # step mode again: one step, [B, C]
    assert ys.shape == (2, 3)


def test_sequence_mode_switches_the_outermost_modules_and_does_not_nest() -> None:
    model = Exploding()
    with tt.sequence_mode(model) as same:
        assert same is model
        switched = {n for n, m in model.named_modules() if "forward" in m.__dict__}
        assert switched == {"first", "inner.0", "inner.1"}
        with pytest.raises(RuntimeError, match="already in sequence mode"), tt.sequence_mode(model):
            pass
        with pytest.raises(RuntimeError, match="already in sequence mode"):
            tt.run(model.inner, torch.rand(4, 2, 3), mode="sequence")
        assert {n for n, m in model.named_modules() if "forward" in m.__dict__} == switched
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_a_layer_registered_twice_is_switched_once_and_restored() -> None:
    shared = tt.snn.LI(3)
    model = nn.Sequential(shared, nn.Sequential(nn.Identity(), shared), tt.snn.LIF(3))
    with tt.sequence_mode(model):
        assert "forward" in shared.__dict__
        assert "forward" in model[2].__dict__
    assert not any("forward" in m.__dict__ for m in model.modules())


class Holder(tt.Layer):
    """A layer that keeps another layer as a child without calling it."""

    def __init__(self, partner: tt.Layer) -> None:
        super().__init__(3)
        self.partner = partner
        self._initialize_state("acc")

    def forward(self, x: Tensor) -> Tensor:
        self._ensure_states(x)
        self.acc = 0.5 * self.acc + x
        return self.acc


class HeldAndCalled(tt.Model):
    """Its LI is registered inside ``holder`` and as a layer of its own, called per step."""

    def __init__(self) -> None:
        super().__init__()
        self.li = tt.snn.LI(3)
        self.holder = Holder(self.li)

    def forward(self, x: Tensor) -> Tensor:
        return self.holder(self.li(x))


class HeldThroughAContainer(tt.Model):
    """Like :class:`HeldAndCalled`, the LI inside a plain container that both places share."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Identity(), tt.snn.LI(3))
        self.holder = Holder(self.block)  # registered first: the walk meets block inside it

    def forward(self, x: Tensor) -> Tensor:
        return self.holder(self.block(x))


def test_a_layer_shared_through_a_plain_container_is_refused_too() -> None:
    model = HeldThroughAContainer()
    model._modules = dict(reversed(model._modules.items()))  # holder first
    with pytest.raises(RuntimeError, match=r"LI is registered in two places .* \(inside Holder"):
        model.run(torch.rand(4, 2, 3), mode="sequence")


@pytest.mark.parametrize("order", ["held first", "own first"])
def test_a_layer_both_inside_a_layer_and_on_its_own_is_refused(order: str) -> None:
    model = HeldAndCalled()
    if order == "held first":  # the walk meets it inside holder first
        model._modules = dict(reversed(model._modules.items()))
    xs = torch.rand(4, 2, 3)
    model(xs[0])
    before = model.save_states()
    with pytest.raises(RuntimeError, match=r"LI is registered in two places .*mode='step'"):
        model.run(xs, mode="sequence")
    after = model.save_states()
    assert all(torch.equal(after[k], before[k]) for k in before) and after.keys() == before.keys()
    assert not any("forward" in m.__dict__ for m in model.modules())
    assert model.run(xs).shape == (4, 2, 3)  # step mode runs it


class Twice(tt.Model):
    """One LI layer applied twice per step."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.li = nn.Linear(3, 3), tt.snn.LI(3)

    def forward(self, x: Tensor) -> Tensor:
        return self.li(self.li(self.fc(x)))


class SubSteps(tt.Model):
    """Three sub-steps of one spiking layer per input step, as some SNNs are written."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.lif = nn.Linear(3, 3), tt.snn.LIB(3)

    def forward(self, x: Tensor) -> Tensor:
        current = self.fc(x)
        for _ in range(3):
            spikes = self.lif(current)
        return spikes


class SharedGRU(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.gru = tt.rnn.GRU(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.gru(self.gru(x))


class Pair(tt.Layer):
    """A layer built from two LI layers: no states of its own, its layers' instead."""

    def __init__(self) -> None:
        super().__init__(3)
        self.a, self.b = tt.snn.LI(3, beta=0.5), tt.snn.LI(3, beta=0.8)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(self.a(x))


class SharedPair(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair()

    def forward(self, x: Tensor) -> Tensor:
        return self.pair(self.pair(x))


@pytest.mark.parametrize(
    ("model", "where"),
    [
        (Twice, "'li' in Twice"),
        (SubSteps, "'lif' in SubSteps"),
        (SharedGRU, "'gru'"),
        (SharedPair, "'pair' in SharedPair"),
    ],
)
def test_a_layer_called_twice_per_step_is_refused_in_sequence_mode_changing_nothing(
    model, where
) -> None:
    torch.manual_seed(0)
    model = model()
    xs = torch.rand(5, 2, 3)
    model(xs[0])  # live states, to be kept
    before = model.save_states()
    with pytest.raises(RuntimeError, match=rf"\(at {where}.*called a second time.*mode='step'"):
        model.run(xs, mode="sequence")
    after = model.save_states()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not any("forward" in m.__dict__ for m in model.modules())
    with pytest.raises(tt.testing.SequenceCheckError, match="called a second time"):
        tt.testing.check_sequence(model, xs)
    with pytest.raises(RuntimeError, match="called a second time"), tt.sequence_mode(model):
        model(xs)
    assert model.run(xs).shape == (5, 2, 3)  # step mode is right for it


def test_each_call_of_the_model_in_sequence_mode_may_call_each_layer_once() -> None:
    torch.manual_seed(0)
    model = Mixed()
    xs = torch.rand(6, 2, 3)
    expected = model.run(xs)
    model.zero_states()
    with tt.sequence_mode(model):  # two sequences in a row, continuing the states
        ys = torch.cat([model(xs[:3]), model(xs[3:])])
        model.net[1](torch.rand(3, 2, 4))  # a layer called on its own, twice
        model.net[1](torch.rand(3, 2, 4))
    torch.testing.assert_close(ys, expected)
    model.zero_states()
    ys, _ = tt.functional_call(model, {}, xs, mode="sequence")
    torch.testing.assert_close(ys, expected)


def test_a_model_failing_in_sequence_mode_leaves_every_state_as_it_was() -> None:
    model = Exploding()
    model.first(torch.rand(2, 3))
    model.inner(torch.rand(2, 3))
    before = model.save_states()
    with pytest.raises(RuntimeError, match="size of tensor"):
        model.run(torch.rand(4, 2, 3), mode="sequence")  # fails after 'first' ran 4 steps
    after = model.save_states()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


class Pairs(tt.Model):
    """Returns a tuple per step (a model tt.run cannot stack)."""

    def __init__(self) -> None:
        super().__init__()
        self.li = tt.snn.LI(3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self.li(x)
        return y, -y


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_a_model_returning_no_tensor_is_refused_leaving_the_states(mode: str) -> None:
    model = Pairs()
    model(torch.rand(2, 3))
    before = model.li.mem
    match = "returned tuple at step 0, expected one tensor" if mode == "step" else "returned tuple"
    with pytest.raises((TypeError, ValueError), match=match):
        model.run(torch.rand(4, 2, 3), mode=mode)
    assert model.li.mem is before


def test_a_model_failing_in_step_mode_leaves_every_state_as_it_was() -> None:
    model = Exploding()
    model.first(torch.rand(2, 3))
    before = model.first.mem
    with pytest.raises(RuntimeError, match="size of tensor"):
        model.run(torch.rand(4, 2, 3), mode="step")  # fails after 'first' ran one step
    assert model.first.mem is before and model.inner[0].mem is None


class ByKeyword(tt.Model):
    """Passes each module its input by keyword, as forward names it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.li = tt.nn.TimeDistributed(nn.Linear(3, 4)), tt.snn.LI(4)

    def forward(self, x: Tensor) -> Tensor:
        return self.li(x=self.fc(x=x))


class Gated(tt.Layer):
    """A layer taking a second argument, in both of its paths."""

    def __init__(self) -> None:
        super().__init__(4)
        self._initialize_state("mem")

    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        self._ensure_states(x)
        self.mem = 0.5 * self.mem + (x if gate is None else x * gate)
        return self.mem

    def forward_sequence(self, xs: Tensor, gate: Tensor | None = None) -> Tensor:
        gates = [None] * len(xs) if gate is None else gate
        return torch.stack([Gated.forward(self, x, g) for x, g in zip(xs, gates, strict=True)])


class GatedNet(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.gated = nn.Linear(3, 4), Gated()

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        return self.gated(h, gate=torch.sigmoid(h))


@pytest.mark.parametrize("model", [ByKeyword, GatedNet], ids=["by keyword", "more arguments"])
def test_how_a_model_passes_arguments_is_kept_in_sequence_mode(model: type[tt.Model]) -> None:
    """Inputs passed by keyword, and arguments a layer's own forward_sequence takes."""
    model = model()
    xs = torch.rand(5, 2, 3)
    expected = model.run(xs)
    model.zero_states()
    torch.testing.assert_close(model.run(xs, mode="sequence"), expected)


class GatedStepOnly(Gated):
    """Takes a gate in forward but keeps the default forward_sequence (xs alone)."""

    forward_sequence = tt.Layer.forward_sequence


class GatedStepOnlyNet(GatedNet):
    def __init__(self) -> None:
        super().__init__()
        self.gated = GatedStepOnly()


def test_arguments_the_sequence_path_does_not_take_are_refused_clearly() -> None:
    model = GatedStepOnlyNet()
    xs = torch.rand(5, 2, 3)
    model(xs[0])
    before = model.save_states()
    with pytest.raises(
        TypeError,
        match=r"GatedStepOnly: in sequence mode the model called GatedStepOnly with arguments "
        r"besides the input \(keyword 'gate'\), which GatedStepOnly.forward_sequence does not "
        r"take: .*override forward_sequence to take them, or run the model with mode='step'",
    ):
        model.run(xs, mode="sequence")
    assert all(torch.equal(v, before[k]) for k, v in model.save_states().items())


# -------------------------------------------------------------------------- TimeDistributed


def test_time_distributed_rejects_stateful_or_non_modules() -> None:
    with pytest.raises(TypeError, match=r"contains tracetorch layers \(1\)"):
        tt.nn.TimeDistributed(nn.Sequential(nn.Linear(4, 4), tt.snn.LI(4)))
    with pytest.raises(TypeError, match=r"contains tracetorch layers \(itself\)"):
        tt.nn.TimeDistributed(tt.snn.LI(4))
    with pytest.raises(TypeError, match=r"expected an nn\.Module"):
        tt.nn.TimeDistributed(torch.tanh)


def test_time_distributed_refuses_a_layer_put_in_after_construction() -> None:
    # the layer's states would see the T steps as T * B samples of one step: refused before
    # anything runs, the other layers' states left as they were
    torch.manual_seed(0)
    wrapped = tt.nn.TimeDistributed(nn.Sequential(nn.Linear(4, 4)))
    wrapped.module.append(tt.snn.LI(4))
    model = nn.Sequential(tt.snn.LI(4), wrapped)
    xs = torch.rand(3, 2, 4)
    tt.run(model, xs)  # step mode: each step is one call of the module, which is right
    before = [model[0].mem, wrapped.module[1].mem]
    with pytest.raises(TypeError, match=r"contains tracetorch layers \(1\)"):
        tt.run(model, xs, mode="sequence")
    assert model[0].mem is before[0] and wrapped.module[1].mem is before[1]
    with pytest.raises(TypeError, match=r"contains tracetorch layers \(1\)"):
        wrapped.forward_sequence(xs)


def test_time_distributed_step_and_sequence() -> None:
    torch.manual_seed(0)
    pool = tt.nn.TimeDistributed(nn.Sequential(nn.Conv2d(2, 3, 3), nn.MaxPool2d(2)))
    xs = torch.rand(4, 5, 2, 6, 6)
    torch.testing.assert_close(pool(xs[1]), pool.module(xs[1]))  # step: the module itself
    ys = pool.forward_sequence(xs)
    assert ys.shape == (4, 5, 3, 2, 2)
    torch.testing.assert_close(ys, torch.stack([pool.module(x) for x in xs]))
    torch.testing.assert_close(tt.run(pool, xs, mode="sequence"), tt.run(pool, xs, mode="step"))
    with pytest.raises(ValueError, match=r"TimeDistributed: sequence mode expects \[T, B"):
        pool.forward_sequence(torch.rand(4))


def test_time_distributed_splits_each_tensor_a_module_returns() -> None:
    pool = tt.nn.TimeDistributed(nn.MaxPool2d(2, return_indices=True))
    xs = torch.rand(3, 2, 4, 4, 4)
    ys, indices = pool.forward_sequence(xs)
    for t in range(3):
        y, index = pool(xs[t])
        assert torch.equal(ys[t], y) and torch.equal(indices[t], index)
    top = tt.nn.TimeDistributed(_MaxOverFeatures()).forward_sequence(xs[..., 0, 0])
    assert isinstance(top, torch.return_types.max) and top.values.shape == (3, 2)
    with pytest.raises(
        TypeError, match=r"TimeDistributed: .* the wrapped _Total returned a tensor "
    ):
        tt.nn.TimeDistributed(_Total()).forward_sequence(xs)


class _MaxOverFeatures(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.return_types.max:
        return x.max(dim=1)


class _Total(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum()


def test_batch_norm_in_time_distributed() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        tt.nn.TimeDistributed(nn.Conv2d(1, 2, 3, padding=1)),
        tt.nn.TimeDistributed(nn.BatchNorm2d(2)),
        tt.snn.LIB(2, dim=-3),
    ).double()
    xs = torch.rand(6, 4, 1, 5, 5, dtype=F64)
    bn = model[1].module
    # training mode: the statistics of sequence mode cover every step of the batch at once
    ys = tt.run(model[:2], xs, mode="sequence")
    torch.testing.assert_close(ys.mean(dim=(0, 1, 3, 4)), torch.zeros(2, dtype=F64))
    assert int(bn.num_batches_tracked) == 1
    # evaluation mode: the running statistics, the same in both modes
    model.eval()
    compare_modes(lambda: model, xs, TOLERANCE[F64], detach=True)


# ------------------------------------------------------------------- a user-written layer


class TutorialLeaky(tt.snn.Layer):
    """Written as the custom-layer tutorial shows: no forward_sequence of its own."""

    def __init__(self, num_neurons: int, beta: float = 0.9, dim: int = -1) -> None:
        super().__init__(num_neurons, dim=dim)
        self._initialize_state("mem")
        self._register_decay("beta", beta, rank=1, learnable=True)

    def forward(self, x: Tensor) -> Tensor:
        self._ensure_states(x)
        mem = self._to_working_dim(self.mem) * self.beta + self._to_working_dim(x)
        self.mem = self._from_working_dim(mem)
        return self.mem


@pytest.mark.parametrize("dim", [-1, -3])
def test_a_tutorial_layer_runs_in_sequence_mode_through_the_default_loop(dim: int) -> None:
    torch.manual_seed(0)
    if dim == -1:
        model = nn.Sequential(nn.Linear(3, 4), TutorialLeaky(4), tt.snn.LI(4)).double()
        xs = torch.randn(6, 2, 3, dtype=F64)
    else:
        model = nn.Sequential(
            tt.nn.TimeDistributed(nn.Conv2d(1, 4, 3)), TutorialLeaky(4, dim=-3)
        ).double()
        xs = torch.randn(6, 2, 1, 5, 5, dtype=F64)
    compare_modes(lambda: model, xs, TOLERANCE[F64], detach=True)
    assert type(model[1]).forward_sequence is tt.Layer.forward_sequence


def test_a_layer_with_no_states_yet_keeps_none_after_a_failed_sequence() -> None:
    layer = TutorialLeaky(4)
    with pytest.raises(ValueError, match="TutorialLeaky: expected 4 features"):
        tt.run(layer, torch.rand(3, 2, 5), mode="sequence")
    assert layer.mem is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: tt.snn.LIB(64, learn_beta=False),
        lambda: tt.snn.SLIB(64, learn_beta=False, learn_alpha=False),
    ],
    ids=["LIB", "SLIB"],
)
def test_a_first_step_without_gradients_rounds_as_in_step_mode(make) -> None:
    # Live states without a graph, an input without one and a fixed decay: step mode fuses
    # the first step's leak (one addcmul) although the threshold and bias learn, and the
    # fused and unfused forms can differ in the last bit. Sequence mode must do the same.
    torch.manual_seed(0)
    layer = make()
    xs = torch.rand(2, 10, 4, 64) * 0.6
    tt.run(layer, xs[0], mode="step")
    start = tt.save_states(layer)  # detached
    results = {}
    for mode in ("step", "sequence"):
        tt.load_states(layer, start)
        ys = tt.run(layer, xs[1], mode=mode)
        results[mode] = ys, tt.save_states(layer)
    (ys, states), (ys_seq, states_seq) = results["step"], results["sequence"]
    assert torch.equal(ys_seq, ys)
    for key, state in states.items():
        assert torch.equal(states_seq[key], state), key


# ------------------------------------------------ subclasses that redefine the step


class NoisyLIF(tt.snn.LIF):
    """A built-in layer with its own step: the built-in fast path would ignore it."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x * 0.5 + 0.25)


class TanhGRU(tt.rnn.GRU):
    """The GRU's cell with a changed step (what torch.gru does not compute)."""

    def _step(self, x: Tensor, h: Tensor) -> tuple[Tensor]:
        (new,) = super()._step(x, h)
        return (torch.tanh(2 * new),)


class OwnCell(tt.rnn.CellLayer):
    """A user's recurrent cell that writes only ``_step`` (no multi-step kernel)."""

    num_gates = 1
    torch_cell = nn.RNNCell
    torch_sequence = nn.RNN

    def __init__(self, in_features: int, out_features: int, dim: int = -1) -> None:
        super().__init__(in_features, out_features, dim=dim)
        self._initialize_state("h")

    def _step(self, x: Tensor, h: Tensor) -> tuple[Tensor]:
        return (torch.sigmoid(x @ self.weight_ih.T + h @ self.weight_hh.T + self.bias_ih),)


class NoisyLIFWithItsOwnSequence(NoisyLIF):
    def forward_sequence(self, xs: Tensor) -> Tensor:
        return super().forward_sequence(xs)


@pytest.mark.parametrize(
    "make",
    [
        lambda dim=-1: NoisyLIF(4, surrogate="atan", dim=dim),
        lambda dim=-1: TanhGRU(4, 4, dim=dim),
        lambda dim=-1: OwnCell(4, 4, dim=dim),
    ],
    ids=["NoisyLIF", "TanhGRU", "OwnCell"],
)
@pytest.mark.parametrize("dim", [-1, 1])
def test_a_subclass_that_redefines_the_step_gets_the_loop_over_it(make, dim: int) -> None:
    torch.manual_seed(0)
    assert not _fast(make())
    # [T, B, 4] with the features last, or [T, B, 4, 3] with the features at dim 1 of a step
    xs = torch.randn(5, 2, 4, dtype=F64) if dim == -1 else torch.randn(5, 2, 4, 3, dtype=F64)
    compare_modes(lambda: make(dim).double(), xs * 2, TOLERANCE[F64], detach=True)
    # the "sequence" check of check_layer agrees (a surrogate fails "gradients" by design)
    assert tt.testing.check_layer(make, (3, 4), skip=["ttcompile", "gradients"])


def _fast(layer: tt.Layer) -> bool:
    """Whether ``layer``'s own fast sequence path runs (not the default loop)."""
    for owner in type(layer).__mro__:
        if "forward_sequence" in owner.__dict__:
            break
    if isinstance(layer, tt.rnn.CellLayer):
        owner = type(layer)._kernel_owner
    return layer._follows_step(owner)


def test_built_in_layers_keep_their_fast_paths_and_a_redefined_path_is_used() -> None:
    for make in (
        lambda: tt.snn.LIF(3),
        lambda: tt.snn.Decay(3),
        lambda: tt.snn.ALIF(3),
        lambda: tt.snn.Exciter(3),
        lambda: tt.rnn.GRU(3, 3),
        lambda: tt.rnn.LSTM(3, 3),
        lambda: tt.rnn.SimpleRNN(3, 3),
        lambda: tt.rnn.MiniGRU(3, 3),
    ):
        assert _fast(make()), make()
    assert not _fast(NoisyLIF(3)) and not _fast(TanhGRU(3, 3)) and not _fast(OwnCell(3, 3))
    # a subclass whose own forward_sequence hands over to the built-in path still gets the
    # loop over its redefined step: the built-in path checks that it reproduces that step
    assert not NoisyLIFWithItsOwnSequence(3)._follows_step(tt.snn.LeakyIntegrator)
    torch.manual_seed(0)
    xs = torch.randn(4, 2, 3, dtype=F64)
    compare_modes(lambda: NoisyLIFWithItsOwnSequence(3).double(), xs, TOLERANCE[F64])
    # what a class reads is set when the class is made, never by an instance
    before = dict(vars(NoisyLIF))
    NoisyLIF(3)(torch.ones(1, 3))
    assert dict(vars(NoisyLIF)) == before


def test_a_model_with_masked_linear_runs_in_sequence_mode() -> None:
    torch.manual_seed(0)
    mask = torch.rand(4, 3) > 0.3
    model = nn.Sequential(tt.nn.MaskedLinear(3, 4, mask), tt.snn.LIB(4), nn.Linear(4, 2))
    compare_modes(lambda: model.double(), torch.randn(6, 2, 3, dtype=F64), TOLERANCE[F64])


class FailsAtStep(TutorialLeaky):
    """A custom layer (default sequence loop) that raises at its fourth step."""

    def __init__(self, num_neurons: int) -> None:
        super().__init__(num_neurons)
        self.inner = tt.snn.LI(num_neurons)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == 4:
            raise RuntimeError("step four")
        return self.inner(super().forward(x))


def test_the_default_loop_puts_the_states_back_when_a_later_step_raises() -> None:
    layer = FailsAtStep(3)
    layer(torch.ones(2, 3))
    before = tt.save_states(layer)
    with pytest.raises(RuntimeError, match="step four"):
        layer.forward_sequence(torch.ones(5, 2, 3))
    assert layer.calls == 4  # three steps ran (and wrote) before the fourth raised
    after = tt.save_states(layer)
    assert after.keys() == before.keys() and set(after) == {"mem", "inner.mem"}
    for key, value in before.items():
        assert torch.equal(after[key], value), key
