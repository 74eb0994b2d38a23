"""The functional helpers of the spiking family: decays, quantizers, sigmoid4x, the step."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from tracetorch.functional import (
    LeakyConfig,
    decay_to_halflife,
    decay_to_timesteps,
    fire,
    halflife_to_decay,
    leaky_step,
    probabilistic_ste,
    round_ste,
    sigmoid4x,
    split_sign,
    stochastic_round_ste,
    timesteps_to_decay,
)

# --------------------------------------------------------------------------------- decays


def test_decay_helpers_values():
    assert halflife_to_decay(1) == 0.5
    assert halflife_to_decay(10.0) == pytest.approx(0.93303, abs=1e-5)
    assert halflife_to_decay(10.0) ** 10 == pytest.approx(0.5)
    assert decay_to_halflife(0.5) == pytest.approx(1.0)
    assert timesteps_to_decay(10) == pytest.approx(0.9)
    assert decay_to_timesteps(0.9) == pytest.approx(10.0)
    assert isinstance(halflife_to_decay(3), float)


@pytest.mark.parametrize("value", [0.1, 0.5, 0.93, 0.999])
def test_decay_helpers_round_trip(value):
    assert halflife_to_decay(decay_to_halflife(value)) == pytest.approx(value)
    assert timesteps_to_decay(decay_to_timesteps(value)) == pytest.approx(value)


def test_decay_helpers_take_tensors():
    h = torch.tensor([1.0, 2.0, 10.0])
    d = halflife_to_decay(h)
    assert isinstance(d, torch.Tensor)
    torch.testing.assert_close(d, torch.tensor([0.5, 0.5**0.5, 0.5**0.1]))
    torch.testing.assert_close(decay_to_halflife(d), h)
    torch.testing.assert_close(
        timesteps_to_decay(torch.tensor([2.0, 4.0])), torch.tensor([0.5, 0.75])
    )
    torch.testing.assert_close(
        decay_to_timesteps(torch.tensor([0.5, 0.75])), torch.tensor([2.0, 4.0])
    )


@pytest.mark.parametrize(
    ("fn", "bad", "match"),
    [
        (halflife_to_decay, 0.0, "halflife_to_decay.*halflife > 0"),
        (halflife_to_decay, -2.0, "halflife"),
        (halflife_to_decay, float("nan"), "halflife"),
        (halflife_to_decay, torch.tensor([1.0, 0.0]), "halflife"),
        (decay_to_halflife, 1.0, r"decay_to_halflife.*\(0, 1\)"),
        (decay_to_halflife, 0.0, "decay"),
        (decay_to_timesteps, 1.0, "decay_to_timesteps"),
        (decay_to_timesteps, torch.tensor([0.5, 1.5]), "decay"),
        (timesteps_to_decay, 1.0, "timesteps_to_decay.*> 1"),
        (timesteps_to_decay, 0.5, "timesteps"),
    ],
)
def test_decay_helpers_reject_values_outside_their_domain(fn, bad, match):
    with pytest.raises(ValueError, match=match):
        fn(bad)


def test_decay_helpers_reject_non_numbers():
    with pytest.raises(TypeError, match="halflife_to_decay"):
        halflife_to_decay("10")


# ----------------------------------------------------------------------------- quantizers


def test_round_ste_forward_and_straight_through_gradient():
    x = torch.tensor([-0.7, 0.2, 0.74, 1.3], requires_grad=True)
    y = round_ste(0.5)(x)
    torch.testing.assert_close(y, torch.tensor([-0.5, 0.0, 0.5, 1.5]))
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(round_ste()(torch.tensor([0.4, 0.6])), torch.tensor([0.0, 1.0]))


def test_stochastic_round_ste_is_unbiased_on_the_grid():
    torch.manual_seed(0)
    x = torch.full((20000,), 0.3, requires_grad=True)
    y = stochastic_round_ste(0.5)(x)
    assert set(y.unique().tolist()) == {0.0, 0.5}
    assert y.mean().item() == pytest.approx(0.3, abs=0.01)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    exact = torch.tensor([1.0, -2.0])
    torch.testing.assert_close(stochastic_round_ste()(exact), exact)


def test_probabilistic_ste():
    torch.manual_seed(0)
    x = torch.full((20000,), 0.25, requires_grad=True)
    y = probabilistic_ste()(x)
    assert set(y.unique().tolist()) == {0.0, 0.25}
    assert (y > 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    torch.testing.assert_close(
        probabilistic_ste()(torch.tensor([0.0, 1.0])), torch.tensor([0.0, 1.0])
    )


def test_quantizers_are_values():
    assert round_ste(0.5) == round_ste(0.5) != round_ste(0.25)
    assert pickle.loads(pickle.dumps(stochastic_round_ste(2.0))) == stochastic_round_ste(2.0)
    assert "0.5" in repr(round_ste(0.5))
    with pytest.raises(ValueError, match=r"round_ste.*step_size"):
        round_ste(0.0)
    with pytest.raises(ValueError, match="stochastic_round_ste"):
        stochastic_round_ste(-1.0)
    with pytest.raises(TypeError, match="round_ste"):
        round_ste("1")


# ------------------------------------------------------------------------- spikes and step


def test_sigmoid4x():
    x = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    y = sigmoid4x(x)
    torch.testing.assert_close(y, 1 / (1 + torch.exp(-4 * x.detach())))
    y.sum().backward()
    assert x.grad[1].item() == pytest.approx(1.0)  # slope 1 at the threshold


def test_split_sign():
    pos, neg = split_sign(torch.tensor([-2.0, 0.0, 3.0]))
    torch.testing.assert_close(pos, torch.tensor([0.0, 0.0, 3.0]))
    torch.testing.assert_close(neg, torch.tensor([-2.0, 0.0, 0.0]))


def test_fire_binary_and_ternary_by_hand():
    mem = torch.tensor([1.5, 0.2, -2.0])
    step = lambda v: (v > 0).float()  # noqa: E731
    params = {"threshold": torch.tensor(1.0), "bias": torch.tensor(0.0)}
    out, reset = fire(mem, params, "binary", step)
    torch.testing.assert_close(out, torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(reset, torch.tensor([1.0, 0.0, 0.0]))
    params = {"pos_threshold": torch.tensor(1.0), "neg_threshold": torch.tensor(1.5)}
    params |= {"pos_scale": torch.tensor(2.0), "neg_scale": torch.tensor(3.0)}
    out, reset = fire(mem, params, "ternary", step)
    torch.testing.assert_close(out, torch.tensor([1.0, 0.0, -1.0]))
    torch.testing.assert_close(reset, torch.tensor([1.0, 0.0, -1.5]))  # mem - reset moves to 0
    out, _ = fire(mem, params, "scaled", step)
    torch.testing.assert_close(out, torch.tensor([2.0, 0.0, -3.0]))


def test_leaky_step_check_numbers_and_purity():
    config = LeakyConfig(synaptic=True, firing="binary")
    state = {"syn": torch.zeros(2), "mem": torch.zeros(2)}
    params = {"alpha": torch.tensor(0.5), "beta": torch.tensor(0.9), "threshold": torch.tensor(5.0)}
    out, new = leaky_step(torch.ones(2), state, params, config)
    torch.testing.assert_close(new["syn"], torch.full((2,), 0.5))
    torch.testing.assert_close(out, torch.sigmoid(4 * (torch.full((2,), 0.5) - 5.0)))
    torch.testing.assert_close(state["mem"], torch.zeros(2))  # inputs are not modified
    _, new = leaky_step(torch.ones(2), new, params, config)
    torch.testing.assert_close(new["syn"], torch.full((2,), 0.75))
    assert set(new) == {"syn", "mem"}


def test_leaky_step_ema_membrane():
    config = LeakyConfig(ema=True)
    out, new = leaky_step(
        torch.tensor([2.0]), {"mem": torch.tensor([1.0])}, {"beta": torch.tensor(0.75)}, config
    )
    torch.testing.assert_close(out, torch.tensor([0.75 * 1.0 + 0.25 * 2.0]))
    assert out is new["mem"]


def test_leaky_step_dual_reset_is_shared():
    config = LeakyConfig(dual=True, firing="binary")
    state = {"pos_mem": torch.tensor([1.0]), "neg_mem": torch.tensor([-0.5])}
    params = {"pos_beta": torch.tensor(1 - 1e-9), "neg_beta": torch.tensor(0.5)}
    params |= {"threshold": torch.tensor(0.25)}
    out, new = leaky_step(torch.tensor([0.0]), state, params, config, lambda v: (v > 0).float())
    assert out.item() == 1.0  # mem = 1 - 0.25 = 0.75 > 0.25
    assert new["pos_mem"].item() == pytest.approx(1.0 - 0.125)
    assert new["neg_mem"].item() == pytest.approx(-0.25 - 0.125)
    assert math.isclose(new["pos_mem"].item() + new["neg_mem"].item(), 0.5, rel_tol=1e-6)


@pytest.mark.parametrize("firing", ["binary", "ternary", "scaled"])
def test_leaky_step_without_autograd_spikes_through_above_bit_for_bit(firing):
    # Without autograd a SpikeFn spikes through .above (v > threshold, one kernel); outputs
    # and states must be those of spike_fn(v - threshold), bit for bit, over many steps.
    from tracetorch.autograd import spike_fn

    g = torch.Generator().manual_seed(2)
    config = LeakyConfig(firing=firing)
    names = ["beta", "threshold", "pos_threshold", "neg_threshold", "pos_scale", "neg_scale"]
    params = {name: torch.rand(8, generator=g) * 0.5 + 0.5 for name in names}
    params["bias"] = torch.randn(8, generator=g) * 0.1
    xs = torch.randn(30, 4, 8, generator=g)
    fn = spike_fn("fast_sigmoid")
    runs = []
    with torch.no_grad():
        for spike in (fn, lambda z: fn(z)):  # the lambda has no .above
            state, outs = {"mem": torch.zeros(4, 8)}, []
            for x in xs:
                out, state = leaky_step(x, state, params, config, spike)
                outs.append(out)
            runs.append((torch.stack(outs), state["mem"]))
    (out_fast, mem_fast), (out_plain, mem_plain) = runs
    assert out_plain.abs().sum() > 0  # the neurons fire: the comparison is not vacuous
    assert torch.equal(out_fast, out_plain) and torch.equal(mem_fast, mem_plain)


def test_leaky_step_calls_a_spike_functions_above_method():
    class Counting:
        calls = 0

        def __call__(self, v):
            return (v > 0).float()

        def above(self, v, threshold):
            Counting.calls += 1
            return self(v - threshold)

    params = {"beta": torch.tensor(0.5), "threshold": torch.tensor(1.0)}
    config = LeakyConfig(firing="binary")
    state = {"mem": torch.zeros(3)}
    with torch.no_grad():
        out, _ = leaky_step(torch.full((3,), 2.0), state, params, config, Counting())
    assert Counting.calls == 1 and out.tolist() == [1.0, 1.0, 1.0]
    quant = lambda s: s  # noqa: E731  (a quantizer needs spike_fn(v - threshold) itself)
    with torch.no_grad():
        leaky_step(torch.ones(3), state, params, config, Counting(), quant)
    leaky_step(torch.ones(3), state, params, config, Counting())  # autograd: the plain call
    assert Counting.calls == 1
