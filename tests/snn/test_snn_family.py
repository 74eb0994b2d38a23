"""The leaky-integrator family against a transcription of its specification.

The simulator below is written from the reference's equations (docs: the family's one-step
dynamics), independently of ``tracetorch.functional``: each public name is parsed into its
switches here, and every layer must match the simulator step by step.
"""

from __future__ import annotations

import copy
import inspect
import math
import pickle
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import tracetorch as tt

F64 = torch.float64


def build64(cls: type, *args: object, **kwargs: object) -> tt.Layer:
    """``cls(*args, **kwargs)`` with float64 parameters, their float64 values kept exactly.

    Parameter values are stored in the default dtype, so the layer is built under a float64
    default rather than converted with ``.double()`` after rounding to float32.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        return cls(*args, **kwargs)
    finally:
        torch.set_default_dtype(previous)


NAMES = [
    *("LI", "DLI", "SLI", "DSLI", "LIEMA", "DLIEMA", "SLIEMA", "DSLIEMA"),
    *("LIB", "DLIB", "SLIB", "RLIB", "DSLIB", "DRLIB", "SRLIB", "DSRLIB"),
    *("LIT", "DLIT", "SLIT", "RLIT", "DSLIT", "DRLIT", "SRLIT", "DSRLIT"),
    *("LITS", "DLITS", "SLITS", "RLITS", "DSLITS", "DRLITS", "SRLITS", "DSRLITS"),
]
FIRING = ("B", "T", "TS")
DEFAULTS = {"alpha": 0.5, "beta": 0.9, "gamma": 0.9, "threshold": 1.0, "bias": 0.0}
DEFAULTS |= {"scale": 1.0, "rec_weight": 0.0}


def switches(name: str) -> tuple[bool, bool, bool, str]:
    """``[D][S][R]LI<kind>`` -> (dual, synaptic, recurrent, kind in "", EMA, B, T, TS)."""
    match = re.fullmatch(r"(D?)(S?)(R?)LI(EMA|B|TS|T|)", name)
    assert match is not None, name
    return bool(match[1]), bool(match[2]), bool(match[3]), match[4]


def reference_parameters(name: str) -> list[tuple[str, float]]:
    """The value parameters of ``name`` in the reference's constructor order, with defaults."""
    dual, synaptic, recurrent, kind = switches(name)

    def signed(base: str) -> list[str]:
        return [f"pos_{base}", f"neg_{base}"] if dual else [base]

    names = (signed("alpha") if synaptic else []) + signed("beta")
    names += signed("gamma") if recurrent else []
    names += ["threshold"] if kind == "B" else []
    names += ["pos_threshold", "neg_threshold"] if kind in ("T", "TS") else []
    names += ["bias"] if kind in FIRING else []
    names += ["pos_scale", "neg_scale"] if kind == "TS" else []
    names += signed("rec_weight") if recurrent else []
    return [(n, DEFAULTS[n.removeprefix("pos_").removeprefix("neg_")]) for n in names]


def random_values(name: str, generator: torch.Generator, n: int = 4) -> dict[str, torch.Tensor]:
    """Non-default per-neuron values for every parameter of ``name``."""
    ranges = {"alpha": (0.2, 0.8), "beta": (0.5, 0.97), "gamma": (0.3, 0.9)}
    ranges |= {"threshold": (0.4, 1.2), "bias": (-0.3, 0.3), "scale": (0.5, 2.0)}
    ranges |= {"rec_weight": (-1.0, 1.0)}
    values = {}
    for p, _ in reference_parameters(name):
        low, high = ranges[p.removeprefix("pos_").removeprefix("neg_")]
        values[p] = low + (high - low) * torch.rand(n, generator=generator, dtype=F64)
    return values


def simulate(name, p, xs, spike=lambda v: torch.sigmoid(4 * v), quant=lambda s: s):
    """The reference dynamics of one step, repeated over ``xs``; returns outputs and states."""
    dual, synaptic, recurrent, kind = switches(name)

    def positive(v):
        return torch.where(v > 0, v, torch.zeros_like(v))

    def negative(v):
        return torch.where(v < 0, v, torch.zeros_like(v))

    zero = torch.zeros_like(xs[0])
    mem = pos_mem = neg_mem = syn = pos_syn = neg_syn = rec = pos_rec = neg_rec = prev = zero
    outputs = []
    for x in xs:
        current = x
        if synaptic and dual:
            pos_syn = p["pos_alpha"] * pos_syn + (1 - p["pos_alpha"]) * positive(x)
            neg_syn = p["neg_alpha"] * neg_syn + (1 - p["neg_alpha"]) * negative(x)
            current = pos_syn + neg_syn
        elif synaptic:
            syn = p["alpha"] * syn + (1 - p["alpha"]) * x
            current = syn
        if recurrent and dual:
            pos_rec = p["pos_gamma"] * pos_rec + (1 - p["pos_gamma"]) * positive(prev)
            neg_rec = p["neg_gamma"] * neg_rec + (1 - p["neg_gamma"]) * negative(prev)
            rec = pos_rec + neg_rec
        elif recurrent:
            rec = p["gamma"] * rec + (1 - p["gamma"]) * prev
        if dual:
            into_pos, into_neg = positive(current), negative(current)
            if recurrent:
                into_pos = into_pos + p["pos_rec_weight"] * positive(rec)
                into_neg = into_neg + p["neg_rec_weight"] * negative(rec)
            if kind == "EMA":
                pos_mem = p["pos_beta"] * pos_mem + (1 - p["pos_beta"]) * into_pos
                neg_mem = p["neg_beta"] * neg_mem + (1 - p["neg_beta"]) * into_neg
            else:
                pos_mem = p["pos_beta"] * pos_mem + into_pos
                neg_mem = p["neg_beta"] * neg_mem + into_neg
            mem = pos_mem + neg_mem
        else:
            into = current + p["rec_weight"] * rec if recurrent else current
            if kind == "EMA":
                mem = p["beta"] * mem + (1 - p["beta"]) * into
            else:
                mem = p["beta"] * mem + into
        if kind in FIRING:
            if kind == "B":
                s = quant(spike(mem - p["threshold"] + p["bias"]))
                out, reset = s, s * p["threshold"]
            else:
                up = quant(spike(mem - p["pos_threshold"] + p["bias"]))
                down = -quant(spike(-p["neg_threshold"] - mem - p["bias"]))
                reset = up * p["pos_threshold"] + down * p["neg_threshold"]
                out = up + down if kind == "T" else up * p["pos_scale"] + down * p["neg_scale"]
            if dual:
                pos_mem, neg_mem = pos_mem - reset / 2, neg_mem - reset / 2
            else:
                mem = mem - reset
        else:
            out = mem
        prev = out
        outputs.append(out)
    states = {"mem": mem, "pos_mem": pos_mem, "neg_mem": neg_mem, "syn": syn}
    states |= {"pos_syn": pos_syn, "neg_syn": neg_syn, "rec": rec, "pos_rec": pos_rec}
    states |= {"neg_rec": neg_rec, "prev_output": prev}
    return outputs, states


def reference_states(name: str) -> set[str]:
    dual, synaptic, recurrent, _ = switches(name)
    traces = ["mem"] + ["syn"] * synaptic + ["rec"] * recurrent
    names = {f"{s}_{t}" for t in traces for s in ("pos", "neg")} if dual else set(traces)
    return names | ({"prev_output"} if recurrent else set())


# ------------------------------------------------------------------------------- dynamics


@pytest.mark.parametrize(
    ("name", "quantized"),
    [(n, False) for n in NAMES] + [(n, True) for n in NAMES if switches(n)[3] in FIRING],
    ids=lambda v: {False: "smooth", True: "rounded"}.get(v, v) if isinstance(v, bool) else v,
)
def test_matches_the_reference_over_20_steps(name, quantized):
    generator = torch.Generator().manual_seed(NAMES.index(name))
    values = random_values(name, generator)
    xs = [1.5 * torch.randn(3, 4, generator=generator, dtype=F64) for _ in range(20)]
    assert any((x > 0).any() and (x < 0).any() for x in xs)
    extra = {}
    quant = (lambda s: s) if not quantized else torch.round
    if quantized:
        extra["quant_fn"] = torch.round
    if switches(name)[3] in FIRING:  # the reference fires through sigmoid(4 x)
        extra["spike_fn"] = tt.functional.sigmoid4x
    layer = build64(getattr(tt.snn, name), 4, **values, **extra)
    expected, states = simulate(name, values, xs, quant=quant)
    got = [layer(x) for x in xs]
    for t, (a, b) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"{name} step {t}")
    assert set(layer.state_names) == reference_states(name)
    for state in layer.state_names:
        torch.testing.assert_close(getattr(layer, state), states[state], rtol=1e-9, atol=1e-9)
    if switches(name)[3] in FIRING and quantized:  # hard spikes did fire, both ways
        assert any((y > 0).any() for y in got)
        if switches(name)[3] != "B":
            assert any((y < 0).any() for y in got)


@pytest.mark.parametrize("name", ["LIB", "DSLIT", "SRLITS", "DLIEMA"])
def test_rank0_parameters_match_the_reference(name):
    generator = torch.Generator().manual_seed(7)
    values = {p: v[0] for p, v in random_values(name, generator).items()}  # 0-d tensors
    ranks = {f"{p}_rank": 0 for p in values}
    if switches(name)[3] in FIRING:  # the reference fires through sigmoid(4 x)
        ranks["spike_fn"] = tt.functional.sigmoid4x
    layer = build64(getattr(tt.snn, name), 4, **values, **ranks)
    for p in values:
        assert getattr(layer, f"raw_{p}").shape == ()
    xs = [torch.randn(2, 4, generator=generator, dtype=F64) for _ in range(10)]
    expected, _ = simulate(name, values, xs)
    for a, b in zip((layer(x) for x in xs), expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", [n for n in NAMES if switches(n)[1]])
def test_synaptic_check_numbers(name):
    layer = getattr(tt.snn, name)(
        1, **{p: 0.5 for p, _ in reference_parameters(name) if "alpha" in p}
    )
    syn = "pos_syn" if switches(name)[0] else "syn"
    seen = []
    for _ in range(2):
        layer(torch.ones(1, 1))
        seen.append(getattr(layer, syn).item())
    assert seen == pytest.approx([0.5, 0.75])


def test_dual_traces_split_the_input_by_sign():
    layer = tt.snn.DLI(2, pos_beta=0.5, neg_beta=0.25)
    layer(torch.tensor([[2.0, -4.0]]))
    layer(torch.tensor([[-1.0, 1.0]]))
    torch.testing.assert_close(layer.pos_mem, torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(layer.neg_mem, torch.tensor([[-1.0, -1.0]]))


def test_works_on_channels_of_images():
    layer = tt.snn.SLIB(4, dim=-3)
    moved = tt.snn.SLIB(4)
    moved.load_state_dict(layer.state_dict())
    xs = [torch.randn(2, 4, 3, 3) for _ in range(4)]
    for x in xs:
        torch.testing.assert_close(layer(x), moved(x.movedim(1, -1)).movedim(-1, 1))
    assert layer.mem.shape == (2, 4, 3, 3)


# ---------------------------------------------------------------------------- constructors


@pytest.mark.parametrize("name", NAMES)
def test_signature_lists_the_reference_parameters_in_order(name):
    values = [p for p, _ in reference_parameters(name)]
    expected = ["num_neurons", *values, "dim"]
    expected += [f"{p}_rank" for p in values] + [f"learn_{p}" for p in values]
    if switches(name)[3] in FIRING:
        expected += ["spike_fn", "quant_fn", "reset"]
    signature = inspect.signature(getattr(tt.snn, name))
    assert list(signature.parameters) == expected
    defaults = {p: signature.parameters[p].default for p in values}
    assert defaults == dict(reference_parameters(name))
    assert signature.parameters["dim"].default == -1
    assert all(signature.parameters[f"{p}_rank"].default == 1 for p in values)
    assert all(signature.parameters[f"learn_{p}"].default is True for p in values)
    layer = getattr(tt.snn, name)(4)
    for p, default in reference_parameters(name):
        torch.testing.assert_close(getattr(layer, p), torch.full((4,), default))
    doc = getattr(tt.snn, name).__doc__
    assert all(section in doc for section in ("Args:", "Shape:", "Example:", values[0]))


def test_tracetorch_0_19_2_constructor_calls():
    lib = tt.snn.LIB(16, 0.8, 1.5, dim=-3)
    assert lib.dim == -3
    torch.testing.assert_close(lib.beta, torch.full((16,), 0.8))
    torch.testing.assert_close(lib.threshold, torch.full((16,), 1.5))
    rlib = tt.snn.RLIB(16, 0.8, 0.7, 1.5)
    assert [rlib.beta[0].item(), rlib.gamma[0].item(), rlib.threshold[0].item()] == pytest.approx(
        [0.8, 0.7, 1.5]
    )
    slib = tt.snn.SLIB(4, alpha=0.5, learn_alpha=False)
    assert "raw_alpha" in dict(slib.named_buffers())
    assert "raw_alpha" not in dict(slib.named_parameters())
    assert "raw_beta" in dict(slib.named_parameters())


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("DSLIT", (0.11, 0.12, 0.81, 0.82, 1.1, 1.2, 0.05)),
        ("RLITS", (0.8, 0.7, 1.1, 1.2, 0.1, 2.0, 3.0, 0.4)),
        ("DSRLIB", (0.11, 0.12, 0.81, 0.82, 0.61, 0.62, 1.3, -0.2, 0.4, 0.5)),
        ("SLIEMA", (0.3, 0.6)),
    ],
)
def test_positional_order(name, args):
    layer = getattr(tt.snn, name)(4, *args)
    for (p, _), value in zip(reference_parameters(name), args, strict=True):
        assert getattr(layer, p)[0].item() == pytest.approx(value), p


def test_bad_calls_name_the_layer():
    with pytest.raises(TypeError, match="LIB"):
        tt.snn.LIB(4, 0.9, 1.0, 0.0, -1, 1, 1, 1, True, True, True, None, None, 5)
    with pytest.raises(TypeError, match=r"RLIB.*alpha"):
        tt.snn.RLIB(4, alpha=0.5)
    with pytest.raises(TypeError, match="LI"):
        tt.snn.LI(4, spike_fn=torch.sigmoid)
    with pytest.raises(TypeError, match=r"SLIT.*spike_fn"):
        tt.snn.SLIT(4, spike_fn=3)
    with pytest.raises(TypeError, match=r"DLIB.*learn_threshold"):
        tt.snn.DLIB(4, learn_threshold="no")


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("LIB", {"beta": 1.5}, "LIB.*beta"),
        ("DSLIB", {"pos_alpha": 0.0}, "DSLIB.*pos_alpha"),
        ("LIB", {"threshold": 0.0}, "LIB.*threshold"),
        ("LIT", {"neg_threshold": -1.0}, "LIT.*neg_threshold"),
        ("LIB", {"beta_rank": 2}, "LIB.*beta_rank"),
        ("RLITS", {"rec_weight": torch.ones(3)}, "RLITS.*rec_weight"),
        ("LI", {"beta": torch.full((4,), 0.5), "beta_rank": 0}, "LI.*beta"),
    ],
)
def test_constraint_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(tt.snn, name)(4, **kwargs)


def test_recurrence_needs_a_firing_kind():
    for name in ("RLI", "RLIEMA", "DRLI", "SRLI", "DSRLIEMA"):
        assert not hasattr(tt.snn, name)
        with pytest.raises(ValueError, match=name):
            tt.snn.family.config_from_name(name)


def test_learnable_and_fixed_parameters():
    layer = tt.snn.SLIB(4, learn_alpha=False, learn_threshold=False)
    assert set(dict(layer.named_parameters())) == {"raw_beta", "raw_bias"}
    assert {"raw_alpha", "raw_threshold"} <= set(dict(layer.named_buffers()))
    x = torch.rand(2, 4) * 3
    sum(layer(x) for _ in range(3)).sum().backward()
    assert layer.raw_beta.grad is not None and layer.raw_beta.grad.abs().sum() > 0
    assert layer.raw_alpha.grad is None


@pytest.mark.parametrize("rank", [0, 1])
def test_rank_shapes(rank):
    layer = tt.snn.DRLIT(4, pos_beta_rank=rank, neg_rec_weight_rank=rank, bias_rank=rank)
    expected = () if rank == 0 else (4,)
    for p in ("pos_beta", "neg_rec_weight", "bias"):
        assert getattr(layer, f"raw_{p}").shape == expected
    assert layer.raw_neg_beta.shape == (4,)


# ------------------------------------------------------------------------------- the model


class Mixed(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.spiking = tt.snn.LIB(4, dim=-3)
        self.fc1 = nn.Linear(4 * 5 * 5, 8)
        self.recurrent = tt.snn.RLIB(8, rec_weight=0.5)
        self.fc2 = nn.Linear(8, 3)
        self.readout = tt.snn.LI(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.spiking(self.conv(x)).flatten(1)
        return self.readout(self.fc2(self.recurrent(self.fc1(hidden))))


def _run(model: tt.Model, xs) -> torch.Tensor:
    return torch.stack([model(x) for x in xs])


def test_compile_and_save_states_on_a_mixed_model():
    torch.manual_seed(0)
    model = Mixed()
    xs = [2 * torch.randn(2, 1, 5, 5) for _ in range(6)]
    expected = _run(model, xs)
    parameters = dict(model.named_parameters())

    model.zero_states()
    model.TTcompile()
    assert not any(n.endswith(("raw_beta", "raw_threshold")) for n, _ in model.named_parameters())
    with torch.inference_mode():
        torch.testing.assert_close(_run(model, xs), expected, rtol=1e-6, atol=1e-6)

    model.zero_states()
    model.TTdecompile()
    assert dict(model.named_parameters()).keys() == parameters.keys()
    for name, p in model.named_parameters():
        assert p is parameters[name]
    out = _run(model, xs)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    out.sum().backward()
    assert model.recurrent.raw_gamma.grad is not None

    model.zero_states()
    with torch.no_grad():
        _run(model, xs[:3])
        saved = model.save_states()
        assert {"spiking.mem", "recurrent.rec", "recurrent.prev_output", "readout.mem"} <= set(
            saved
        )
        fresh = Mixed()
        fresh.load_state_dict(model.state_dict())
        fresh.load_states(saved)
        torch.testing.assert_close(_run(fresh, xs[3:]), _run(model, xs[3:]), rtol=0, atol=0)
        twin = copy.deepcopy(fresh)  # a deep copy carries the states along
        torch.testing.assert_close(_run(twin, xs[:2]), _run(fresh, xs[:2]), rtol=0, atol=0)
        pickled = pickle.loads(pickle.dumps(model))  # the family's classes pickle by name
        torch.testing.assert_close(_run(pickled, xs[:2]), _run(model, xs[:2]), rtol=0, atol=0)


def test_straight_through_quantizer_gives_hard_spikes_with_gradients():
    layer = tt.snn.SLIT(4, quant_fn=tt.functional.round_ste())
    xs = [torch.randn(3, 4, requires_grad=True) * 3 for _ in range(5)]
    outputs = [layer(x) for x in xs]
    assert set(torch.cat(outputs).unique().tolist()) <= {-1.0, 0.0, 1.0}
    outputs[-1].sum().backward()
    assert layer.raw_alpha.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------- LIF


def atan_derivative(v: torch.Tensor, slope: float = 2.0) -> torch.Tensor:
    return (slope / 2) / (1 + (math.pi / 2 * slope * v) ** 2)


def test_lif_fires_exact_binary_spikes_like_the_reference():
    generator = torch.Generator().manual_seed(3)
    values = {"beta": torch.rand(4, generator=generator, dtype=F64) * 0.4 + 0.5}
    values["threshold"] = torch.rand(4, generator=generator, dtype=F64) + 0.5
    layer = build64(tt.snn.LIF, 4, **values)
    xs = [torch.randn(3, 4, generator=generator, dtype=F64) + 0.4 for _ in range(20)]
    got = torch.stack([layer(x) for x in xs])
    assert set(got.unique().tolist()) == {0.0, 1.0}
    expected, states = simulate(
        "LIB", {**values, "bias": 0.0}, xs, spike=lambda v: (v > 0).to(v.dtype)
    )
    torch.testing.assert_close(got, torch.stack(expected), rtol=0, atol=0)
    torch.testing.assert_close(layer.mem, states["mem"], rtol=1e-12, atol=1e-12)
    assert "bias" not in layer.parameter_names


def test_lif_backward_is_the_surrogate_derivative():
    layer = tt.snn.LIF(5, beta=0.9, threshold=0.7)
    x = torch.tensor([[-0.5, 0.2, 0.69, 0.71, 1.5]], dtype=F64, requires_grad=True)
    layer.double()(x).sum().backward()
    torch.testing.assert_close(x.grad, atan_derivative(x.detach() - 0.7))
    steep = tt.snn.LIF(5, threshold=0.7, surrogate="fast_sigmoid", slope=10.0).double()
    x.grad = None
    steep(x).sum().backward()
    torch.testing.assert_close(x.grad, 1 / (10 * (x.detach() - 0.7).abs() + 1) ** 2)


def test_lif_gradients_flow_through_time():
    layer = tt.snn.LIF(4)
    xs = [torch.full((2, 4), 0.4, requires_grad=True) for _ in range(10)]
    outputs = [layer(x) for x in xs]
    outputs[-1].sum().backward()
    assert xs[0].grad is not None and xs[0].grad.abs().sum() > 0
    assert layer.raw_beta.grad.abs().sum() > 0 and layer.raw_threshold.grad.abs().sum() > 0


def test_lif_signature_and_errors():
    assert list(inspect.signature(tt.snn.LIF).parameters) == [
        *("num_neurons", "beta", "threshold", "dim", "beta_rank", "threshold_rank"),
        *("learn_beta", "learn_threshold", "surrogate", "slope", "reset"),
    ]
    with pytest.raises(ValueError, match=r"LIF.*surrogate"):
        tt.snn.LIF(4, surrogate="nope")
    with pytest.raises(ValueError, match=r"LIF.*beta"):
        tt.snn.LIF(4, beta=1.0)


# ------------------------------------------------------------------------------ line count


def test_the_family_is_written_once():
    root = Path(tt.__file__).parent
    files = [
        root / "snn" / "leaky.py",
        root / "snn" / "family.py",
        root / "functional" / "leaky.py",
    ]
    lines = sum(1 for f in files for line in f.read_text().splitlines() if line.strip())
    assert lines < 1000, f"the leaky-integrator family takes {lines} non-blank lines"


@pytest.mark.parametrize("name", [n for n in NAMES if switches(n)[3] in FIRING] + ["LIF"])
def test_firing_names_spike_by_default(name):
    """Every firing name's default output holds only its spike values (not a probability)."""
    layer = getattr(tt.snn, name)(6)
    values = set()
    for x in 2.0 * torch.randn(30, 4, 6, generator=torch.Generator().manual_seed(1)):
        values |= set(layer(x).detach().unique().tolist())
    # (the scaled kinds multiply by their output scales, 1.0 by default)
    expected = {0.0, 1.0} if name == "LIF" or switches(name)[3] == "B" else {-1.0, 0.0, 1.0}
    assert values == expected, f"{name} returned {sorted(values)}"
