"""The reset option of the firing kinds: ``"subtract"`` (default), ``"zero"`` and ``"none"``.

Hand-computed examples in exact binary fractions (beta = 0.5, inputs in quarters), then
sequence mode against step mode for each reset.
"""

from __future__ import annotations

import pytest
import torch

import tracetorch as tt
from tracetorch.functional import LeakyConfig, leaky_step

RESETS = ("subtract", "zero", "none")


def _run(layer: tt.Layer, inputs: list[float]) -> tuple[list[float], list[dict[str, float]]]:
    """Outputs and states after each step, for a single neuron and a batch of one."""
    outs, states = [], []
    with torch.no_grad():
        for value in inputs:
            outs.append(layer(torch.tensor([[value]])).item())
            states.append({name: getattr(layer, name).item() for name in layer.state_names})
    return outs, states


# LIF, beta = 0.5, threshold = 1, input 0.75 at every step:
#   t0: mem 0.75;  t1: 0.375 + 0.75 = 1.125 > 1, spike, then the reset
EXPECTED_LIF = {
    #            spikes          membrane after each step
    "subtract": ([0, 1, 0, 1], [0.75, 0.125, 0.8125, 0.15625]),
    "zero": ([0, 1, 0, 1], [0.75, 0.0, 0.75, 0.0]),
    "none": ([0, 1, 1, 1], [0.75, 1.125, 1.3125, 1.40625]),
}


@pytest.mark.parametrize("reset", RESETS)
def test_lif_hand_computed(reset):
    layer = tt.snn.LIF(1, beta=0.5, threshold=1.0, reset=reset)
    outs, states = _run(layer, [0.75] * 4)
    spikes, mem = EXPECTED_LIF[reset]
    assert outs == spikes
    assert [s["mem"] for s in states] == pytest.approx(mem, abs=1e-6)


# LIT (ternary), beta = 0.5, both thresholds 1, inputs 0.75, 0.75, -1.5, -1.5:
#   t1 fires +1 at 1.125; what follows depends on the reset
EXPECTED_LIT = {
    "subtract": ([0, 1, -1, -1], [0.75, 0.125, -0.4375, -0.71875]),
    "zero": ([0, 1, -1, -1], [0.75, 0.0, 0.0, 0.0]),
    "none": ([0, 1, 0, -1], [0.75, 1.125, -0.9375, -1.96875]),
}


@pytest.mark.parametrize("reset", RESETS)
def test_ternary_hand_computed(reset):
    layer = tt.snn.LIT(1, beta=0.5, reset=reset)
    outs, states = _run(layer, [0.75, 0.75, -1.5, -1.5])
    spikes, mem = EXPECTED_LIT[reset]
    assert outs == spikes
    assert [s["mem"] for s in states] == pytest.approx(mem, abs=1e-6)


# DLIB (dual traces), both betas 0.5, threshold 1, inputs 0.75, -0.25, 1.5:
#   t2: pos_mem 0.1875 + 1.5 = 1.6875, neg_mem -0.125, mem 1.5625: a spike
EXPECTED_DUAL = {
    "subtract": (1.1875, -0.625),  # each trace takes half of the threshold
    "zero": (0.0, 0.0),  # both traces are cleared
    "none": (1.6875, -0.125),
}


@pytest.mark.parametrize("reset", RESETS)
def test_dual_hand_computed(reset):
    layer = tt.snn.DLIB(1, pos_beta=0.5, neg_beta=0.5, reset=reset)
    outs, states = _run(layer, [0.75, -0.25, 1.5])
    assert outs == [0, 0, 1]
    assert states[1] == pytest.approx({"pos_mem": 0.375, "neg_mem": -0.25}, abs=1e-6)
    pos, neg = EXPECTED_DUAL[reset]
    assert states[2] == pytest.approx({"pos_mem": pos, "neg_mem": neg}, abs=1e-6)


def test_zero_reset_gradient_flows_through_the_spike():
    # one step from rest with a smooth spike: mem = x * (1 - s), s = sigmoid(4 (x - 1))
    x = torch.tensor([0.9, 1.3], dtype=torch.float64, requires_grad=True)
    params = {"beta": torch.tensor(0.5, dtype=torch.float64)}
    params["threshold"] = torch.tensor(1.0, dtype=torch.float64)
    state = {"mem": torch.zeros(2, dtype=torch.float64)}
    config = LeakyConfig(firing="binary")
    _, new = leaky_step(x, state, params, config, tt.functional.sigmoid4x, reset="zero")
    (grad,) = torch.autograd.grad(new["mem"].sum(), x)
    s = torch.sigmoid(4 * (x.detach() - 1))
    expected = (1 - s) - x.detach() * 4 * s * (1 - s)  # d/dx of x * (1 - s(x))
    torch.testing.assert_close(grad, expected)


def _make(name: str, reset: str) -> tt.Layer:
    if name == "LIF":
        return tt.snn.LIF(5, beta=0.8, threshold=0.7, reset=reset)
    extra = {"pos_rec_weight": 0.5, "neg_rec_weight": -0.3} if "DSR" in name else {}
    smooth = {"spike_fn": tt.functional.sigmoid4x} if name.endswith("-smooth") else {}
    return getattr(tt.snn, name.removesuffix("-smooth"))(5, reset=reset, **extra, **smooth)


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("name", ["LIF", "SLIB", "LIB-smooth", "LIT", "DSRLITS", "SLIB-smooth"])
def test_sequence_mode_equals_step_mode(name, reset):
    torch.manual_seed(0)
    layer = _make(name, reset)
    twin = _make(name, reset)
    twin.load_state_dict(layer.state_dict())
    xs = 1.5 * torch.randn(12, 3, 5)
    xs_step = xs.clone().requires_grad_()
    xs_seq = xs.clone().requires_grad_()
    ys_step = torch.stack([layer(x) for x in xs_step])
    ys_seq = tt.run(twin, xs_seq, mode="sequence")
    torch.testing.assert_close(ys_seq, ys_step)
    for state in layer.state_names:
        torch.testing.assert_close(getattr(twin, state), getattr(layer, state))
    weights = torch.randn_like(ys_step)
    (ys_step * weights).sum().backward()
    (ys_seq * weights).sum().backward()
    torch.testing.assert_close(xs_seq.grad, xs_step.grad)
    for (pname, p_seq), p_step in zip(twin.named_parameters(), layer.parameters(), strict=True):
        torch.testing.assert_close(p_seq.grad, p_step.grad, msg=pname)


def test_resets_differ_in_sequence_mode():
    # the sequence fast path must not ignore the option
    xs = torch.full((6, 1, 1), 0.75)
    outs = {r: tt.run(tt.snn.LIF(1, beta=0.5, reset=r), xs, mode="sequence") for r in RESETS}
    assert outs["zero"].flatten().tolist() == [0, 1, 0, 1, 0, 1]
    assert outs["none"].flatten().tolist() == [0, 1, 1, 1, 1, 1]
    assert outs["subtract"].flatten().tolist() == [0, 1, 0, 1, 0, 1]


def test_default_is_subtract_and_repr_shows_it():
    layer = tt.snn.SLIB(3)
    assert layer.reset == "subtract"
    assert "reset='subtract'" in repr(layer)
    assert "reset='zero'" in repr(tt.snn.LIF(3, reset="zero"))


def test_bad_reset_is_a_value_error_naming_the_layer():
    with pytest.raises(ValueError, match=r"SLIT: expected reset .*'zero'.*got 'hard'"):
        tt.snn.SLIT(3, reset="hard")
    with pytest.raises(ValueError, match=r"LIF: expected reset"):
        tt.snn.LIF(3, reset=None)
    with pytest.raises(ValueError, match=r"LI: reset='zero' has no effect"):
        tt.snn.LeakyIntegrator.__init__(tt.snn.LI.__new__(tt.snn.LI), 3, reset="zero")
    state = {"mem": torch.zeros(2)}
    params = {"beta": torch.tensor(0.5), "threshold": torch.tensor(1.0)}
    with pytest.raises(ValueError, match="leaky_step: expected reset"):
        leaky_step(torch.ones(2), state, params, LeakyConfig(firing="binary"), reset="hard")
