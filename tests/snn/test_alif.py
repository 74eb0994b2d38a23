"""ALIF: its equations by hand, gradients through time, and what the generic table does not cover.

The generic checks (lazy states, ``dim``, save/load, compile, ...) run over the ALIF rows of
``tests/snn/cases.py``.
"""

from __future__ import annotations

import pytest
import torch

import tracetorch as tt
from tracetorch.functional import alif_step, sigmoid4x


def test_hand_computed_adaptation():
    # beta = rho = 0.5, threshold = beta_a = 1, input 0.75 at every step (exact fractions)
    layer = tt.snn.ALIF(1, beta=0.5, rho=0.5, threshold=1.0, beta_a=1.0)
    spikes, mem, a = [], [], []
    with torch.no_grad():
        for _ in range(6):
            spikes.append(layer(torch.full((1, 1), 0.75)).item())
            mem.append(layer.mem.item())
            a.append(layer.a.item())
    # t1: 1.125 > A = 1 fires, mem -= 1, a = 0.5; t2: A = 1.5 holds 0.8125; t3: A = 1.25
    # holds 1.15625 (a LIF would fire here); t4: A = 1.125 < 1.328125 fires, mem -= 1.125
    assert spikes == [0, 1, 0, 0, 1, 0]
    assert mem == pytest.approx([0.75, 0.125, 0.8125, 1.15625, 0.203125, 0.8515625], abs=1e-6)
    assert a == pytest.approx([0.0, 0.5, 0.25, 0.125, 0.5625, 0.28125], abs=1e-6)


def test_adaptation_lowers_the_rate_of_a_lif():
    torch.manual_seed(0)
    drive = torch.full((200, 1, 8), 0.4)
    alif = tt.snn.ALIF(8, beta=0.9, rho=0.95, threshold=1.0, beta_a=2.0)
    lif = tt.snn.LIF(8, beta=0.9, threshold=1.0)
    with torch.no_grad():
        rate_alif = tt.run(alif, drive).mean()
        rate_lif = tt.run(lif, drive).mean()
    assert 0 < rate_alif < 0.75 * rate_lif


def _unroll(xs, mem, a, beta, rho, threshold, beta_a):
    params = {"beta": beta, "rho": rho, "threshold": threshold, "beta_a": beta_a}
    state = {"mem": mem, "a": a}
    outs = []
    for x in xs:
        s, state = alif_step(x, state, params, sigmoid4x)
        outs.append(s)
    return torch.stack(outs), state["mem"], state["a"]


def test_gradcheck_through_time_float64():
    g = torch.Generator().manual_seed(0)

    def make(*shape, low=0.0, high=1.0):
        t = torch.rand(*shape, generator=g, dtype=torch.float64) * (high - low) + low
        return t.requires_grad_()

    xs = make(6, 2, 3, low=-0.5, high=1.5)  # six steps
    inputs = (
        xs,
        make(2, 3, low=-0.5, high=0.5),  # mem
        make(2, 3, low=0.0, high=0.5),  # a
        make(3, low=0.6, high=0.95),  # beta
        make(3, low=0.6, high=0.95),  # rho
        make(3, low=0.5, high=1.2),  # threshold
        make(3, low=0.2, high=1.0),  # beta_a
    )
    assert torch.autograd.gradcheck(_unroll, inputs)


def test_layer_gradients_reach_every_parameter():
    layer = tt.snn.ALIF(3, spike_fn=sigmoid4x, threshold=0.5).double()
    xs = torch.randn(8, 2, 3, dtype=torch.float64)
    tt.run(layer, xs).sum().backward()
    for name in ("raw_beta", "raw_rho", "raw_threshold", "raw_beta_a"):
        grad = getattr(layer, name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_surrogate_gradient_with_the_default_hard_spike():
    layer = tt.snn.ALIF(4, threshold=0.5)
    xs = torch.rand(10, 2, 4, requires_grad=True)
    spikes = tt.run(layer, xs)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    spikes.sum().backward()
    assert xs.grad.abs().sum() > 0 and layer.raw_beta_a.grad.abs().sum() > 0


def test_constructor_checks_name_the_layer():
    with pytest.raises(ValueError, match=r"ALIF.*rho"):
        tt.snn.ALIF(3, rho=1.0)
    with pytest.raises(ValueError, match=r"ALIF.*beta_a"):
        tt.snn.ALIF(3, beta_a=0.0)
    with pytest.raises(TypeError, match=r"ALIF: expected spike_fn to be callable"):
        tt.snn.ALIF(3, spike_fn="atan")
    assert "spike_fn=" in repr(tt.snn.ALIF(3))
