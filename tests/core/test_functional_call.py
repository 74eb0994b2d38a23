"""The pure view of a stateful model: ``tt.functional_call``, ``tt.checkpoint``, ``torch.func``.

For every layer of the layer table, ``functional_call`` computes what a stateful step
computes from the same states, returns the new states with their autograd graph, and leaves
the layer's own states as the very same tensor objects. ``checkpoint`` gives the outputs,
gradients (float64) and final states of ``tt.run`` while autograd keeps a fraction of the
activations. ``_recomputing`` tells a replayed layer step from a first run.
"""

from __future__ import annotations

import copy

import pytest
import torch
from layer_table import LayerCase, all_cases
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as torch_checkpoint

import tracetorch as tt
from tracetorch.autograd.leaky_scan import scan_supported
from tracetorch.core.functional import _recomputing
from tracetorch.snn.leaky import LeakyIntegrator

CASES = all_cases()
STATEFUL = [case for case in CASES if case.make().state_names]
F64 = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def live_states(module: nn.Module) -> dict[str, Tensor | None]:
    """Every declared state under ``module`` (``None`` included), the objects themselves."""
    return {
        f"{path}.{name}" if path else name: layer.__dict__[name]
        for path, layer in tt.layers(module)
        for name in layer.state_names
    }


def assert_same_objects(before: dict[str, Tensor | None], module: nn.Module) -> None:
    after = live_states(module)
    assert after.keys() == before.keys()
    for key, state in before.items():
        assert after[key] is state, f"{key} was replaced"


def warmed_up(case: LayerCase, steps: int = 3) -> tuple[tt.Layer, Tensor]:
    """A float64 layer of ``case`` after a few steps (live states), and an input."""
    torch.manual_seed(0)
    layer = case.make().double()
    with torch.no_grad():
        for _ in range(steps):
            layer(torch.randn(*case.input_shape, dtype=F64))
    return layer, torch.randn(*case.input_shape, dtype=F64)


def perturbed(states: dict[str, Tensor], seed: int = 1) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        key: value + 0.3 * torch.randn(value.shape, generator=generator, dtype=value.dtype)
        for key, value in states.items()
    }


# ------------------------------------------------------------------- every layer, generic


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_a_pure_call_is_the_stateful_step_from_the_given_states(case: LayerCase, mode: str):
    layer, x = warmed_up(case)
    if mode == "sequence":
        x = torch.randn(4, *case.input_shape, dtype=F64)
    before = live_states(layer)
    states = perturbed(tt.save_states(layer))
    output, new = tt.functional_call(layer, states, x, mode=mode)
    assert_same_objects(before, layer)

    reference = copy.deepcopy(layer)
    tt.load_states(reference, states)
    expected = tt.run(reference, x, mode) if mode == "sequence" else reference(x)
    torch.testing.assert_close(output, expected, **TIGHT)
    expected_states = tt.save_states(reference)
    assert new.keys() == expected_states.keys()
    for key, value in expected_states.items():
        torch.testing.assert_close(new[key], value, **TIGHT, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("case", STATEFUL, ids=repr)
def test_missing_states_start_as_zeros_like_a_fresh_layer(case: LayerCase):
    layer, x = warmed_up(case)
    output, new = tt.functional_call(layer, {}, x)
    fresh = copy.deepcopy(layer)
    fresh.zero_states()
    torch.testing.assert_close(output, fresh(x), **TIGHT)
    assert sorted(new) == sorted(tt.save_states(fresh))


@pytest.mark.parametrize("case", STATEFUL, ids=repr)
def test_the_new_states_carry_the_graph_back_to_the_given_states(case: LayerCase):
    layer, x = warmed_up(case)
    states = {k: v.requires_grad_() for k, v in perturbed(tt.save_states(layer)).items()}
    _, new = tt.functional_call(layer, states, x)
    assert all(value.requires_grad for value in new.values()), sorted(new)
    loss = sum(value.sum() for value in new.values())
    grads = torch.autograd.grad(loss, list(states.values()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def _scans(case: LayerCase) -> bool:
    """Whether the layer's sequence mode is the leaky scan (one autograd function)."""
    layer = case.make()
    return isinstance(layer, LeakyIntegrator) and scan_supported(
        layer.config, layer.spike_fn, layer.quant_fn, layer.reset
    )


def _step_input(case: LayerCase, mode: str) -> Tensor:
    torch.manual_seed(2)
    shape = case.input_shape if mode == "step" else (4, *case.input_shape)
    return torch.randn(*shape, dtype=F64)


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("case", STATEFUL, ids=repr)
def test_torch_func_grad_with_respect_to_the_states(case: LayerCase, mode: str):
    layer, _ = warmed_up(case)
    x = _step_input(case, mode)
    states = perturbed(tt.save_states(layer))
    output, _ = tt.functional_call(layer, states, x, mode=mode)
    weights = torch.randn(output.shape, dtype=F64)

    def loss(s: dict[str, Tensor]) -> Tensor:
        output, _ = tt.functional_call(layer, s, x, mode=mode)
        return (output * weights).sum()

    grads = torch.func.grad(loss)(states)
    leaves = {k: v.clone().requires_grad_() for k, v in states.items()}
    expected = torch.autograd.grad(loss(leaves), list(leaves.values()), allow_unused=True)
    for (key, got), want in zip(grads.items(), expected, strict=True):
        want = torch.zeros_like(got) if want is None else want
        torch.testing.assert_close(got, want, **TIGHT, msg=lambda m, key=key: f"{key}: {m}")
    assert_same_objects(live_states(layer), layer)


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("case", STATEFUL, ids=repr)
def test_torch_func_jacrev_of_one_step_with_respect_to_the_states(case: LayerCase, mode: str):
    layer, _ = warmed_up(case)
    x = _step_input(case, mode)
    states = perturbed(tt.save_states(layer))
    keys = list(states)

    def step(s: dict[str, Tensor]) -> dict[str, Tensor]:
        return tt.functional_call(layer, s, x, mode=mode)[1]

    jacobians = torch.func.jacrev(step)(states)
    expected = torch.autograd.functional.jacobian(
        lambda *values: tuple(step(dict(zip(keys, values, strict=True))).values()),
        tuple(states.values()),
    )
    for i, out_key in enumerate(step(states)):
        for j, in_key in enumerate(keys):
            torch.testing.assert_close(jacobians[out_key][in_key], expected[i][j], **TIGHT)


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("case", STATEFUL, ids=repr)
def test_vmap_over_a_batch_of_independent_state_sets(case: LayerCase):
    layer, x = warmed_up(case)
    sets = [perturbed(tt.save_states(layer), seed) for seed in range(4)]
    batched = {key: torch.stack([s[key] for s in sets]) for key in sets[0]}
    outputs, new = torch.func.vmap(lambda s: tt.functional_call(layer, s, x))(batched)
    for i, states in enumerate(sets):
        output, expected = tt.functional_call(layer, states, x)
        torch.testing.assert_close(outputs[i], output, **TIGHT)
        for key, value in expected.items():
            torch.testing.assert_close(new[key][i], value, **TIGHT)


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("case", STATEFUL, ids=repr)
def test_vmap_over_state_sets_in_sequence_mode(case: LayerCase):
    layer, _ = warmed_up(case)
    xs = torch.randn(3, *case.input_shape, dtype=F64)
    sets = [perturbed(tt.save_states(layer), seed) for seed in range(3)]
    batched = {key: torch.stack([s[key] for s in sets]) for key in sets[0]}
    outputs, _ = torch.func.vmap(lambda s: tt.functional_call(layer, s, xs, mode="sequence"))(
        batched
    )
    for i, states in enumerate(sets):
        output, _ = tt.functional_call(layer, states, xs, mode="sequence")
        torch.testing.assert_close(outputs[i], output, **TIGHT)


# ------------------------------------------------------------------- functional_call itself


def snn(dtype: torch.dtype = F64) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), tt.snn.LIF(8), nn.Linear(8, 5), tt.rnn.GRU(5, 4))
    return net.to(dtype)


def test_unknown_keys_and_bad_values_are_rejected_naming_them():
    net = snn()
    x = torch.rand(2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"unknown state key\(s\) \['1.men', 'x'\].*'1.mem'"):
        tt.functional_call(net, {"1.men": torch.zeros(2, 8), "x": None}, x)
    with pytest.raises(
        TypeError, match=r"expected state '1\.mem' to be a tensor or None, got list"
    ):
        tt.functional_call(net, {"1.mem": [0.0]}, x)
    with pytest.raises(TypeError, match="expected states to be a mapping"):
        tt.functional_call(net, [torch.zeros(2, 8)], x)
    with pytest.raises(ValueError, match="expected mode 'step' or 'sequence', got 'steps'"):
        tt.functional_call(net, {}, x, mode="steps")
    with pytest.raises(TypeError, match="parameters_and_buffers to be a mapping"):
        tt.functional_call(net, {}, x, [torch.zeros(1)])
    # the value itself, named by its key, before the layer sees it as a live state
    with pytest.raises(ValueError, match=r"state '1\.mem' \(LIF\): expected 8 features at dim"):
        tt.functional_call(net, {"1.mem": torch.zeros(2, 5, dtype=F64)}, x)
    with pytest.raises(TypeError, match=r"state '3\.h' \(GRU\): expected a real floating"):
        tt.functional_call(net, {"3.h": torch.zeros(2, 4, dtype=torch.long)}, x)
    with pytest.raises(ValueError, match=r"pass states that match the input \(these were"):
        tt.functional_call(net, {"1.mem": torch.zeros(3, 8, dtype=F64)}, x)  # batch 3, not 2


def test_a_call_that_raises_leaves_every_state_and_cache_as_it_was():
    net = snn()
    for _ in range(2):
        net(torch.rand(2, 3, dtype=F64))
    before = live_states(net)
    cache = net[1]._tt_cache
    with pytest.raises(ValueError, match="does not match the live state"):
        # the given states have batch 3, the input batch 2: the GRU refuses the step
        tt.functional_call(net, {"3.h": torch.zeros(3, 4, dtype=F64)}, torch.rand(2, 3, dtype=F64))
    assert_same_objects(before, net)
    assert net[1]._tt_cache is cache


def test_states_none_after_the_call_are_left_out():
    class Skips(tt.Model):
        def __init__(self):
            super().__init__()
            self.used, self.unused = tt.snn.LI(3), tt.snn.LIF(3)

        def forward(self, x):
            return self.used(x)

    _, new = tt.functional_call(Skips(), {}, torch.rand(2, 3))
    assert sorted(new) == ["used.mem"]


def test_parameters_and_buffers_are_replaced_for_the_call_only():
    net = snn()
    untouched = copy.deepcopy(net)
    x = torch.rand(2, 3, dtype=F64)
    states = perturbed(tt.functional_call(net, {}, x)[1])
    replaced = {"0.weight": torch.zeros(8, 3, dtype=F64), "1.raw_beta": torch.zeros(8, dtype=F64)}
    output, new = tt.functional_call(net, states, x, replaced)

    reference = copy.deepcopy(net)
    with torch.no_grad():
        reference[0].weight.zero_()
        reference[1].raw_beta.zero_()
    expected, expected_states = tt.functional_call(reference, states, x)
    torch.testing.assert_close(output, expected, **TIGHT)
    torch.testing.assert_close(new["1.mem"], expected_states["1.mem"], **TIGHT)
    # the model itself still computes with its own parameters (no stale cached transform)
    torch.testing.assert_close(net[1].beta, torch.sigmoid(net[1].raw_beta))
    plain, plain_states = tt.functional_call(net, states, x)
    expected, expected_states = tt.functional_call(untouched, states, x)
    torch.testing.assert_close(plain, expected, **TIGHT)
    torch.testing.assert_close(plain_states["1.mem"], expected_states["1.mem"], **TIGHT)
    assert not torch.allclose(plain_states["1.mem"], new["1.mem"])


def test_a_user_layer_works_without_extra_code_and_tuple_arguments():
    class Accumulator(tt.Layer):
        def __init__(self, n):
            super().__init__(n, in_features=n)
            self._initialize_state("total")

        def forward(self, x, scale):
            self._ensure_states(x)
            self.total = self.total * 0.5 + x * scale
            return self.total

    layer = Accumulator(3)
    x = torch.ones(2, 3)
    output, new = tt.functional_call(layer, {"total": torch.full((2, 3), 4.0)}, (x, 2.0))
    assert torch.equal(output, torch.full((2, 3), 4.0)) and new["total"] is output
    assert layer.total is None


def test_sequence_mode_runs_the_whole_sequence_in_one_call():
    net = snn()
    xs = torch.rand(6, 2, 3, dtype=F64)
    states = perturbed(tt.functional_call(net, {}, xs[0])[1])
    ys, new = tt.functional_call(net, states, xs, mode="sequence")
    for i, x in enumerate(xs):
        y, states = tt.functional_call(net, states, x)
        torch.testing.assert_close(ys[i], y, **TIGHT)
    for key, value in states.items():
        torch.testing.assert_close(new[key], value, **TIGHT)


# --------------------------------------------------------------------------------- checkpoint


class Net(tt.Model):
    """Spiking, leaky and recurrent layers, with dropout to check the RNG replay."""

    def __init__(self):
        super().__init__()
        self.fc1, self.lif = nn.Linear(4, 16), tt.snn.LIF(16)
        self.drop = nn.Dropout(0.2)
        self.fc2, self.sli = nn.Linear(16, 8), tt.snn.SLI(8)
        self.gru = tt.rnn.GRU(8, 6)

    def forward(self, x):
        return self.gru(self.sli(self.fc2(self.drop(self.lif(self.fc1(x))))))


def gradients_of(run, seed: int = 0) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """Outputs, gradients (inputs and parameters) and final states of ``run(model, xs)``."""
    torch.manual_seed(0)
    model = Net().double()
    xs = torch.randn(37, 3, 4, dtype=F64, requires_grad=True)
    torch.manual_seed(seed)
    ys = run(model, xs)
    weights = torch.randn(ys.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    (ys * weights).sum().backward()
    grads = {"xs": xs.grad, **{name: p.grad for name, p in model.named_parameters()}}
    return ys, grads, tt.save_states(model)


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("segment", [None, 1, 5, 37, 100])
def test_checkpoint_gives_the_outputs_gradients_and_states_of_run(segment, mode):
    ys, grads, states = gradients_of(lambda m, xs: tt.run(m, xs, mode))
    got_ys, got_grads, got_states = gradients_of(
        lambda m, xs: tt.checkpoint(m, xs, segment=segment, mode=mode)
    )
    # step mode replays the very operations of tt.run: bit for bit; sequence mode's kernels
    # (the leaky scan, torch.gru) round differently over shorter sequences
    same = {"rtol": 0, "atol": 0} if mode == "step" else TIGHT
    torch.testing.assert_close(got_ys, ys, **same)
    assert got_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(
            got_grads[name], grad, **TIGHT, msg=lambda m, n=name: f"{n}: {m}"
        )
    assert got_states.keys() == states.keys()
    for key, value in states.items():
        torch.testing.assert_close(got_states[key], value, **same)


def test_a_gradient_with_create_graph_through_a_checkpointed_scan():
    # the scan's backward read its saved tensors twice on this path, which a non-reentrant
    # checkpoint refuses
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), tt.snn.LI(4)).double()
    xs = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    grads = []
    for run_ in (tt.run, lambda m, xs, mode: tt.checkpoint(m, xs, segment=2, mode=mode)):
        tt.zero_states(net)
        ys = run_(net, xs, mode="sequence")
        grads.append(torch.autograd.grad(ys.square().sum(), xs, create_graph=True)[0])
    torch.testing.assert_close(grads[1], grads[0], **TIGHT)


def test_checkpoint_continues_from_live_or_given_states_like_run():
    torch.manual_seed(0)
    model = Net().double().eval()
    xs = torch.randn(12, 2, 4, dtype=F64)
    expected = tt.run(model, xs)
    tt.zero_states(model)
    first = tt.checkpoint(model, xs[:5], segment=2)
    second = tt.checkpoint(model, xs[5:], segment=3)  # from the states the first one left
    torch.testing.assert_close(torch.cat([first, second]), expected, **TIGHT)

    tt.zero_states(model)
    tt.run(model, xs[:5])
    saved = tt.save_states(model)
    tt.zero_states(model)
    resumed = tt.checkpoint(model, xs[5:], saved, segment=4)
    torch.testing.assert_close(resumed, expected[5:], **TIGHT)
    with torch.no_grad():
        tt.zero_states(model)
        torch.testing.assert_close(tt.checkpoint(model, xs), expected, **TIGHT)


def saved_bytes(fn) -> tuple[object, int]:
    """What ``fn()`` returns, and the bytes of the distinct storages autograd saved for backward."""
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return result, sum(storages.values())


def test_checkpoint_keeps_a_fraction_of_the_activations_and_replays_each_step_once():
    torch.manual_seed(0)
    model = Net().double().eval()
    xs = torch.randn(200, 8, 4, dtype=F64, requires_grad=True)
    input_bytes = xs.numel() * xs.element_size()
    ys, plain = saved_bytes(lambda: tt.run(model, xs))
    tt.zero_states(model)

    calls = []
    model.lif.register_forward_hook(lambda *args: calls.append(torch.is_grad_enabled()))
    ys, kept = saved_bytes(lambda: tt.checkpoint(model, xs, segment=20))
    assert len(calls) == 200
    # kept: the input and the 10 boundary states (the model's states are 16+8+8+6 floats
    # per example); the plain run keeps every step's activations
    boundary = 10 * 8 * (16 + 8 + 8 + 6) * 8
    assert kept <= input_bytes + boundary, (kept, input_bytes, boundary)
    assert kept * 8 < plain, (kept, plain)
    calls.clear()
    ys.sum().backward()
    assert 0 < len(calls) <= 200  # each step replayed at most once, during backward


def test_checkpoint_rejects_bad_arguments():
    model = Net()
    with pytest.raises(ValueError, match="expected segment to be a positive int, got 0"):
        tt.checkpoint(model, torch.rand(4, 2, 4), segment=0)
    with pytest.raises(ValueError, match=r"expected xs of shape \[T, \*step_shape\]"):
        tt.checkpoint(model, torch.rand(0, 2, 4))
    with pytest.raises(ValueError, match="expected mode 'step' or 'sequence'"):
        tt.checkpoint(model, torch.rand(4, 2, 4), mode="steps")
    with pytest.raises(ValueError, match=r"unknown state key\(s\) \['mem'\]"):
        tt.checkpoint(model, torch.rand(4, 2, 4), {"mem": torch.zeros(2, 16)})
    assert all(value is None for value in live_states(model).values())


def test_the_torch_checkpoint_recipe_on_functional_call():
    """The documented recipe: checkpoint a block of pure steps with torch.utils.checkpoint."""
    _, grads, states = gradients_of(lambda m, xs: tt.run(m, xs))

    def block(model, states, xs):
        outputs = []
        for x in xs:
            y, states = tt.functional_call(model, states, x)
            outputs.append(y)
        return torch.stack(outputs), states

    def recipe(model, xs):
        states, outputs = {}, []
        for chunk in xs.split(10):
            ys, states = torch_checkpoint(block, model, states, chunk, use_reentrant=False)
            outputs.append(ys)
        tt.load_states(model, states)
        return torch.cat(outputs)

    _, got_grads, got_states = gradients_of(recipe)
    for name, grad in grads.items():
        torch.testing.assert_close(got_grads[name], grad, **TIGHT)
    for key, value in states.items():
        torch.testing.assert_close(got_states[key], value, **TIGHT)


# ----------------------------------------------------------------------- recomputation check


class Recorder(tt.Layer):
    """A user layer that records what ``_recomputing()`` says at each of its steps."""

    def __init__(self, n: int):
        super().__init__(n, in_features=n)
        self._initialize_state("total")
        self.seen: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(_recomputing())
        x, states = self._read_states(x)
        total = torch.tanh(states["total"] * 0.5 + x)  # tanh saves its output: replayed
        self._write_states({"total": total})
        return total * 2


class PlainRecorder(nn.Module):
    """A stateful module outside tracetorch: what a replayed layer step would see."""

    def __init__(self):
        super().__init__()
        self.total: Tensor | float = 0.0
        self.seen: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(_recomputing())
        self.total = torch.tanh(self.total * 0.5 + x)
        return self.total * 2


@pytest.mark.parametrize("reentrant", [False, True])
def test_recomputing_is_true_only_while_a_plain_call_is_replayed(reentrant: bool):
    module = PlainRecorder()
    x = torch.rand(2, 3, requires_grad=True)
    y = torch_checkpoint(lambda x: module(module(x)), x, use_reentrant=reentrant)
    assert module.seen == [False, False]
    y.sum().backward()
    assert module.seen == [False, False, True, True]
    assert not _recomputing()


def test_recomputing_is_false_in_a_pure_view_and_in_no_grad_backward_hooks():
    layer = Recorder(3)

    def steps(x, states):
        y, states = tt.functional_call(layer, states, x)
        return tt.functional_call(layer, states, y)

    y, _ = torch_checkpoint(steps, torch.rand(2, 3, requires_grad=True), {}, use_reentrant=False)
    y.sum().backward()
    tt.checkpoint(layer, torch.rand(4, 2, 3, requires_grad=True), segment=2).sum().backward()
    assert layer.seen and not any(layer.seen)

    class Probe(torch.autograd.Function):  # a backward callback probing the network
        @staticmethod
        def forward(x):
            return x.clone()

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, grad):
            with torch.no_grad():
                layer(torch.rand(2, 3))
            return grad

    layer.seen.clear()
    Probe.apply(torch.rand(2, 3, requires_grad=True)).sum().backward()
    assert layer.seen == [False]


def _plain_checkpoint_backward(reentrant: bool) -> None:
    torch.manual_seed(0)
    model = Net()
    xs = torch.randn(6, 2, 4, requires_grad=True)
    ys = torch_checkpoint(lambda xs: tt.run(model, xs), xs, use_reentrant=reentrant)
    ys.sum().backward()


@pytest.mark.parametrize("reentrant", [False, True])
def test_replaying_plain_calls_under_torch_checkpoint_is_refused(reentrant: bool):
    with pytest.raises(RuntimeError, match=r"LIF: this stateful layer is being recomputed.*"):
        _plain_checkpoint_backward(reentrant)


def test_the_check_lets_pure_views_and_exciter_probes_run():
    test_checkpoint_gives_the_outputs_gradients_and_states_of_run(segment=5, mode="step")
    test_the_torch_checkpoint_recipe_on_functional_call()

    model = nn.Sequential(nn.Linear(4, 6), tt.snn.LIF(6), tt.snn.Exciter(6))
    probes = []

    def probe(layer, grad_output):
        saved = tt.save_states(model)
        probes.append(model(torch.rand(2, 4)))
        tt.load_states(model, saved)

    model[2].register_backward_callback(probe)
    tt.run(model, torch.rand(3, 2, 4)).sum().backward()
    assert len(probes) == 3
