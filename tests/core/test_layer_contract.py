"""The contract every layer keeps: per-instance parameters, one state path, transactional steps.

Covers the class-level promises (instantiation never changes a class), the state interface
(every write goes through ``_write_states``), the cache of transformed parameters, the dtype
and device policy, exact ``TTcompile`` round trips, copies of live models and the
constructor checks.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from layer_table import all_cases
from torch import nn

import tracetorch as tt

CASES = all_cases()
FAMILY = [name for name in tt.snn.family.NAMES]


# ------------------------------------------------------------------- per-instance parameters


class Gain(tt.snn.Layer):
    """A user layer that registers a constrained parameter only when asked to."""

    def __init__(self, n: int, learn_gain: bool):
        super().__init__(n)
        self._initialize_state("mem")
        if learn_gain:
            self._register_threshold("gain", 2.0)
        else:
            self.gain = 2.0  # a plain attribute in this instance

    def forward(self, x):
        self._ensure_states(x)
        self.mem = self.mem + self.gain * x
        return self.mem


def test_two_instances_of_one_class_register_different_things():
    learned, plain = Gain(3, learn_gain=True), Gain(3, learn_gain=False)
    assert learned.parameter_names == ("gain",) and plain.parameter_names == ()
    assert plain.gain == 2.0 and isinstance(learned.gain, torch.Tensor)
    torch.testing.assert_close(learned.gain, torch.full((3,), 2.0))
    x = torch.ones(1, 3)
    torch.testing.assert_close(learned(x), plain(x))


@pytest.mark.parametrize("cls", [Gain, tt.snn.LIB, tt.snn.LIF, tt.snn.Decay, tt.snn.DSRLITS])
def test_instantiation_leaves_the_class_unchanged(cls):
    before = dict(vars(cls))
    layer = cls(3, True) if cls is Gain else cls(3)
    layer(torch.rand(2, 3))
    assert dict(vars(cls)) == before


def test_constrained_parameters_are_read_only_and_per_instance():
    a, b = tt.snn.LIB(2, beta=0.2), tt.snn.LIB(3, beta=0.7, beta_rank=0)
    torch.testing.assert_close(a.beta, torch.full((2,), 0.2))
    torch.testing.assert_close(b.beta, torch.tensor(0.7))
    with pytest.raises(AttributeError, match="raw_beta"):
        a.beta = torch.ones(2)


# ----------------------------------------------------------------------- the value cache


def test_cached_values_follow_optimizer_steps_and_state_dict_loads():
    layer = tt.snn.LIF(3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(3):
        layer.zero_states()
        out = sum(layer(torch.full((2, 3), 0.8)).sum() for _ in range(4))
        (out + layer.mem.sum()).backward()
        optimizer.step()
        optimizer.zero_grad()
        torch.testing.assert_close(layer.beta, torch.sigmoid(layer.raw_beta))
        torch.testing.assert_close(layer.threshold, nn.functional.softplus(layer.raw_threshold))
    other = tt.snn.LIF(3, beta=0.3)
    layer.load_state_dict(other.state_dict())
    torch.testing.assert_close(layer.beta, torch.full((3,), 0.3))


def test_gradients_with_the_cache_equal_recomputing_the_transform_every_step():
    torch.manual_seed(0)
    layer = tt.snn.SLIB(4, spike_fn=tt.functional.sigmoid4x).double()
    xs = torch.randn(6, 2, 4, dtype=torch.float64)
    out = tt.run(layer, xs).sum()
    grads = torch.autograd.grad(out, list(layer.parameters()))
    params = dict(layer.named_parameters())
    config = layer.config
    state = {"mem": torch.zeros(2, 4, dtype=torch.float64), "syn": torch.zeros(2, 4).double()}
    total = 0
    for x in xs:  # the transforms computed afresh at every step
        values = {
            "alpha": torch.sigmoid(params["raw_alpha"]),
            "beta": torch.sigmoid(params["raw_beta"]),
            "threshold": nn.functional.softplus(params["raw_threshold"]),
            "bias": params["raw_bias"],
        }
        y, state = tt.functional.leaky_step(x, state, values, config, tt.functional.sigmoid4x)
        total = total + y.sum()
    expected = torch.autograd.grad(total, list(params.values()))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("change", ["unfreeze", "freeze"])
def test_cached_values_follow_freezing_and_unfreezing_mid_sequence(change):
    # requires_grad_() bumps no version: without a check of its own, values cached while
    # raw_beta was frozen would keep the next steps from reaching it (and the other way)
    layer = tt.snn.LI(3)
    layer.raw_beta.requires_grad_(change == "freeze")
    x = torch.randn(2, 3)
    layer(x)
    layer.raw_beta.requires_grad_(change == "unfreeze")
    y = layer(x)
    assert layer.beta.requires_grad is (change == "unfreeze")
    if change == "unfreeze":
        y.sum().backward()
        assert layer.raw_beta.grad is not None and layer.raw_beta.grad.abs().sum() > 0


def test_a_backward_pass_drops_the_cached_graph():
    # states cut by hand (no detach_states, no optimizer step): the next backward must not
    # reach the graph of the previous one through a cached parameter value
    layer = tt.snn.LI(3)
    for _ in range(3):
        y = layer(torch.ones(1, 3))
        y.sum().backward()
        layer.mem = layer.mem.detach()
    assert layer.raw_beta.grad is not None


@pytest.mark.parametrize("cut", ["detach", "none", "detach_states"])
def test_a_graph_cut_by_hand_starts_new_parameter_values(cut):
    # two windows whose losses are backpropagated one after the other, the graph between
    # them cut by assigning the state: the second backward must not go back into the first
    # one's (freed) transform of raw_beta, as it would not if beta were computed per step
    layer = tt.snn.LIB(3)
    x = torch.randn(2, 3)
    first = layer(x).sum() + layer.mem.sum()
    if cut == "detach":
        layer.mem = layer.mem.detach()
    elif cut == "none":
        layer.mem = None
    else:
        layer.detach_states()
    second = layer(x).sum() + layer(x).sum() + layer.mem.sum()  # two steps: beta matters
    first.backward()
    after_first = layer.raw_beta.grad.clone()
    second.backward()
    assert not torch.equal(layer.raw_beta.grad, after_first)


def test_a_state_write_that_keeps_the_graph_keeps_the_cached_values():
    layer = tt.snn.LI(3)
    layer(torch.ones(1, 3))
    cache = layer.__dict__["_tt_cache"]
    layer.mem = layer.mem * 2  # a custom layer's own write: the graph goes on
    assert layer.__dict__["_tt_cache"] is cache
    layer.mem = layer.mem.detach()
    assert layer.__dict__["_tt_cache"] is None


def test_values_computed_without_grad_are_not_used_with_grad():
    layer = tt.snn.LI(3)
    with torch.no_grad():
        layer(torch.ones(1, 3))
    layer.zero_states()
    layer(torch.ones(1, 3))
    y = layer(torch.ones(1, 3))
    y.sum().backward()
    assert layer.raw_beta.grad is not None and layer.raw_beta.grad.abs().sum() > 0


# ----------------------------------------------------------------------- one state path


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_every_state_write_goes_through_write_states(case):
    layer = case.make()
    if not layer.state_names:
        pytest.skip("no states")
    written: list[dict] = []
    original = layer._write_states

    def counting(states):
        written.append(dict(states))
        original(states)

    layer._write_states = counting  # an instance attribute shadows the method
    x = torch.randn(case.input_shape)

    def snapshot():
        return {n: layer.__dict__[n] for n in layer.state_names}

    for action in (
        lambda: layer(x),
        lambda: layer(x),
        layer.detach_states,
        lambda: layer.double(),
        lambda: layer(x.double()),
        lambda: tt.load_states(layer, tt.save_states(layer)),
        lambda: tt.run(layer, x.double().expand(3, *x.shape), mode="sequence"),
        layer.zero_states,
    ):
        before, count = snapshot(), len(written)
        action()
        after = snapshot()
        changed = {n for n in after if after[n] is not before[n]}
        seen = {n for states in written[count:] for n in states}
        assert changed <= seen, f"states {changed - seen} changed outside _write_states"
    assert all(layer.__dict__[n] is None for n in layer.state_names)


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_decay_and_li_are_one_layer(mode):
    torch.manual_seed(0)
    decay, li = tt.snn.Decay(4, beta=0.8).double(), tt.snn.LI(4, beta=0.8).double()
    assert isinstance(decay, tt.snn.LI)
    assert list(decay.state_dict()) == list(li.state_dict()) == ["raw_beta"]
    assert decay.config == li.config
    xs = torch.randn(5, 2, 4, dtype=torch.float64, requires_grad=True)
    ys_d, ys_l = tt.run(decay, xs, mode=mode), tt.run(li, xs, mode=mode)
    assert torch.equal(ys_d, ys_l) and torch.equal(decay.mem, li.mem)
    weights = torch.randn_like(ys_d)
    grads_d = torch.autograd.grad((ys_d * weights).sum(), [xs, decay.raw_beta])
    grads_l = torch.autograd.grad((ys_l * weights).sum(), [xs, li.raw_beta])
    for got, want in zip(grads_d, grads_l, strict=True):
        assert torch.equal(got, want)


# -------------------------------------------------------------- transactional steps, dtypes


def _states(layer):
    return {n: layer.__dict__[n] for n in layer.state_names}


def test_a_failed_first_call_leaves_no_state():
    gru = tt.rnn.GRU(3, 5).double()
    with pytest.raises(TypeError, match=r"GRU: expected a torch.float64 input"):
        gru(torch.randn(2, 3))
    assert gru.h is None
    assert gru(torch.randn(2, 3, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "bad",
    [
        torch.ones(2, 3, dtype=torch.int64),
        torch.ones(2, 3, dtype=torch.bool),
        torch.ones(2, 3, dtype=torch.complex64),
        torch.ones(2, 3, dtype=torch.float64),
        torch.ones(2, 3, dtype=torch.float16),
        torch.ones(2, 3, device="meta"),
    ],
    ids=lambda t: f"{t.dtype}-{t.device.type}",
)
@pytest.mark.parametrize(
    "make",
    [
        lambda: tt.snn.SLIB(3),
        lambda: tt.snn.RLIT(3),
        lambda: tt.snn.LIEMA(3),
        lambda: tt.snn.LIF(3),
        lambda: tt.snn.Decay(3),
        lambda: tt.rnn.GRU(3, 3),
        lambda: tt.rnn.LSTM(3, 3),
        lambda: tt.rnn.MiniGRU(3, 3),
    ],
)
def test_bad_input_raises_naming_the_layer_and_changes_nothing(make, bad):
    layer = make()
    name = type(layer).__name__
    with pytest.raises((TypeError, ValueError), match=name):
        layer(bad)
    assert all(s is None for s in _states(layer).values())
    layer(torch.rand(2, 3))
    before = {n: s.clone() for n, s in _states(layer).items()}
    with pytest.raises((TypeError, ValueError), match=name):
        layer(bad)
    for n, s in _states(layer).items():
        assert torch.equal(s, before[n])
    layer(torch.rand(2, 3))  # and the layer still works


def test_a_step_that_fails_midway_leaves_every_state_as_it_was():
    calls = []

    def flaky(v):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return tt.functional.sigmoid4x(v)

    layer = tt.snn.DSRLIB(3, spike_fn=flaky)
    layer(torch.rand(2, 3))
    before = {n: s.clone() for n, s in _states(layer).items()}
    with pytest.raises(RuntimeError, match="boom"):
        layer(torch.rand(2, 3))
    for n, s in _states(layer).items():
        assert torch.equal(s, before[n])


@pytest.mark.parametrize("name", [n for n in FAMILY if "S" in n or "R" in n or "EMA" in n])
def test_bf16_autocast_keeps_states_in_the_layer_dtype(name):
    layer = getattr(tt.snn, name)(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(torch.rand(2, 3).bfloat16())
        layer(torch.rand(2, 3).bfloat16())
    assert all(s.dtype == torch.float32 for s in _states(layer).values())
    assert layer(torch.rand(2, 3)).dtype == torch.float32


def test_states_from_inference_mode_give_a_clear_error_in_training():
    layer = tt.snn.LIF(3)
    with torch.inference_mode():
        layer(torch.rand(2, 3))
    with pytest.raises(RuntimeError, match=r"LIF: .*inference_mode.*zero_states"):
        layer(torch.rand(2, 3))
    layer.zero_states()
    layer(torch.rand(2, 3)).sum().backward()


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_a_layer_made_or_baked_under_inference_mode_runs_in_both_modes(case):
    # Parameters made under inference_mode are inference tensors: they have no version
    # counter for the cache of transformed values to watch, so their values are computed
    # afresh at each read, and an in-place change under inference_mode is seen at once.
    torch.manual_seed(0)
    reference = case.make()
    xs = torch.rand(4, *case.input_shape)
    with torch.inference_mode():
        made_here = case.make()
        made_here.load_state_dict(reference.state_dict())
        expected = torch.stack([reference(x) for x in xs])
        for layer in (made_here, copy.deepcopy(reference)):
            layer.TTcompile()  # baked buffers made here are inference tensors as well
            layer.zero_states()
            torch.testing.assert_close(torch.stack([layer(x) for x in xs]), expected)
            layer.zero_states()
            torch.testing.assert_close(layer.forward_sequence(xs), expected)
    for name in made_here.parameter_names:  # changed in place: seen at the next read
        twin = copy.deepcopy(reference)
        twin.TTcompile()
        with torch.inference_mode():
            for layer in (made_here, twin):
                layer.forward_sequence(xs)
                getattr(layer, name).mul_(0.5)
                layer.zero_states()
            torch.testing.assert_close(made_here.forward_sequence(xs), twin.forward_sequence(xs))
            getattr(made_here, name).mul_(2.0)


class _Clamp(nn.Module):
    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.clamp(-1.0, 1.0)


def test_a_parametrized_raw_tensor_is_computed_at_each_read_in_both_modes():
    torch.manual_seed(0)
    layer = tt.snn.LIB(4, spike_fn=tt.functional.sigmoid4x).double()
    with torch.no_grad():
        layer.raw_beta.copy_(torch.tensor([-3.0, -0.5, 0.5, 3.0]))
    plain = copy.deepcopy(layer)
    with torch.no_grad():
        plain.raw_beta.clamp_(-1.0, 1.0)
    torch.nn.utils.parametrize.register_parametrization(layer, "raw_beta", _Clamp())
    xs = torch.rand(5, 2, 4, dtype=torch.float64)
    expected = tt.run(plain, xs)
    for mode in ("step", "sequence"):
        layer.zero_states()
        torch.testing.assert_close(tt.run(layer, xs, mode=mode), expected)
    layer.TTcompile()  # the parametrized tensor is left as it is; the others are baked
    assert "raw_beta" not in layer._buffers and "threshold" in layer._buffers
    layer.zero_states()
    with torch.inference_mode():
        torch.testing.assert_close(tt.run(layer, xs, mode="sequence"), expected)
    layer.TTdecompile()
    with torch.no_grad():
        layer.parametrizations.raw_beta.original.fill_(5.0)  # seen at the next read
    torch.testing.assert_close(layer.beta, torch.sigmoid(torch.ones(4, dtype=torch.float64)))


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_parameter_values_are_stored_in_the_default_dtype(default):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        values = torch.tensor([0.5, 0.6, 0.7, 0.8], dtype=torch.float64)
        for given in (values, values.half(), values.numpy(), 0.9):
            given = torch.from_numpy(given) if isinstance(given, np.ndarray) else given
            layer = tt.snn.LIF(4, beta=given, threshold=torch.full((4,), 2.0, dtype=torch.float16))
            assert {p.dtype for p in layer.parameters()} == {default}
            x = torch.rand(2, 4, dtype=default)
            layer(x)
            layer(x)  # states and input keep the one dtype
            assert layer.mem.dtype == default
    finally:
        torch.set_default_dtype(previous)


def test_moving_a_baked_layer_moves_the_gradients_of_its_raw_tensors():
    layer = tt.snn.LIF(4)
    layer(torch.rand(2, 4)).sum().backward()
    layer.TTcompile()
    layer.double()
    layer.TTdecompile()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.dtype == torch.float64, name
    optimizer = torch.optim.Adam(layer.parameters())
    optimizer.step()


class Composite(tt.snn.Layer):
    """A user layer built around a built-in one: a trace of the inner LI's output."""

    def __init__(self, n: int, dim: int = -1) -> None:
        super().__init__(n, dim=dim)
        self._initialize_state("trace")
        self.inner = nn.Sequential(tt.snn.LIB(n, dim=dim, spike_fn=tt.functional.sigmoid4x))

    def forward(self, x):
        x, states = self._read_states(x)
        trace = states["trace"] * 0.5 + self.inner(x)
        self._write_states({"trace": trace})
        return trace


def test_the_methods_of_a_layer_reach_the_layers_inside_it():
    layer = Composite(3)
    inner = layer.inner[0]
    for _ in range(2):
        layer(torch.rand(2, 3, requires_grad=True))
    layer.detach_states()
    assert layer.trace.grad_fn is None and inner.mem.grad_fn is None
    layer.zero_states()
    assert layer.trace is None and inner.mem is None
    layer.TTcompile()
    assert "beta" in inner._buffers and "raw_beta" not in inner._parameters
    layer.TTdecompile()
    assert "raw_beta" in inner._parameters
    tt.testing.check_layer(lambda dim=-1: Composite(3, dim=dim).double(), (2, 3))


class InPlace(tt.snn.Layer):
    """Updates its two states in place, a speed idiom without autograd."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self._initialize_state("syn")
        self._initialize_state("mem")

    def forward(self, x):
        self._ensure_states(x)
        self.syn.mul_(0.5).add_(x)
        self.mem.mul_(0.9).add_(self.syn)
        return self.mem


def test_new_states_are_separate_tensors():
    layer = InPlace(2)
    with torch.no_grad():
        assert layer(torch.ones(1, 2)).tolist() == [[1.0, 1.0]]
    assert layer.syn is not layer.mem
    _, states = tt.snn.SLIB(2)._read_states(torch.ones(1, 2))
    assert states["syn"] is not states["mem"]


def test_registering_before_layer_init_names_the_fix():
    class Early(tt.snn.Layer):
        def __init__(self) -> None:
            self._initialize_state("mem")

    with pytest.raises(RuntimeError, match=r"Early: cannot register state 'mem' before Layer"):
        Early()


# --------------------------------------------------------------------------- round trips


def test_ttcompile_round_trip_is_exact_for_large_raw_values():
    layer = tt.snn.LIB(3)
    with torch.no_grad():
        layer.raw_beta.copy_(torch.tensor([17.0, 15.0, -20.0]))
        layer.raw_threshold.fill_(40.0)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.TTcompile()
    layer.TTdecompile()
    for key, value in layer.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_ttdecompile_of_a_changed_baked_value_is_finite():
    layer = tt.snn.LIB(3)
    layer.TTcompile()
    with torch.no_grad():
        layer.beta.copy_(torch.tensor([0.5, 1.0, 0.9]))  # 1.0: no finite logit exists
    layer.TTdecompile()
    assert torch.isfinite(layer.raw_beta).all()
    torch.testing.assert_close(layer.beta, torch.tensor([0.5, 1.0, 0.9]))


def test_training_a_baked_layer_warns_once():
    layer = tt.snn.LIF(3)
    layer.TTcompile()
    with pytest.warns(UserWarning, match="TTdecompile"):
        layer(torch.rand(2, 3))
        layer(torch.rand(2, 3))
    with torch.inference_mode():
        layer(torch.rand(2, 3))


def test_deepcopy_and_pickle_of_a_model_with_live_states():
    model = nn.Sequential(nn.Linear(3, 3), tt.snn.LIF(3), nn.Linear(3, 2), tt.rnn.GRU(2, 2))
    for _ in range(3):
        model(torch.rand(2, 3))
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        for (_, ours), (_, theirs) in zip(tt.layers(model), tt.layers(clone), strict=True):
            for name in ours.state_names:
                assert torch.equal(ours.__dict__[name], theirs.__dict__[name])
                assert theirs.__dict__[name].grad_fn is None
        x = torch.rand(2, 3)
        torch.testing.assert_close(clone(x), copy.deepcopy(model)(x))


# ---------------------------------------------------------------------- constructor checks


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: tt.snn.LIF(3, slope=float("nan")), ValueError, "LIF: .*slope"),
        (lambda: tt.snn.LIF(3, slope=-1.0), ValueError, "LIF: .*slope"),
        (lambda: tt.snn.LIB(3, learn_beta="no"), TypeError, "learn_beta"),
        (lambda: tt.snn.Decay(3, learn_beta="no"), TypeError, "learn_beta"),
        (lambda: tt.snn.Exciter(3, select_last="no"), TypeError, "select_last"),
        (lambda: tt.snn.LIB(3, beta=torch.tensor(0.5 + 0j)), TypeError, "LIB: .*real"),
        (lambda: tt.snn.LIB(3, beta=torch.empty(3, device="meta")), ValueError, "LIB: .*meta"),
        (
            lambda: tt.nn.MaskedLinear(3, 3, mask=torch.ones(3, 3, device="meta")),
            ValueError,
            "MaskedLinear: .*meta",
        ),
        (lambda: tt.snn.LIB(3, beta=0.999999999), ValueError, "rounds to 1.0 in torch.float32"),
    ],
)
def test_constructor_rejects(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_numpy_integers_are_sizes():
    assert tt.snn.LIF(np.int64(4)).num_neurons == 4
    assert tt.rnn.GRU(np.int64(3), np.int32(5)).in_features == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["SLIB", "LIEMA", "LIF", "RLIT"])
def test_cuda_float16_autocast_keeps_states_in_the_layer_dtype(name):
    model = nn.Sequential(nn.Linear(3, 3), getattr(tt.snn, name)(3), tt.rnn.GRU(3, 2)).cuda()
    xs = torch.rand(4, 2, 3, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        tt.run(model, xs)
        tt.zero_states(model)
        tt.run(model, xs, mode="sequence")
    for _, layer in tt.layers(model):
        assert all(s.dtype == torch.float32 for s in _states(layer).values())
    assert model(xs[0]).dtype == torch.float32
