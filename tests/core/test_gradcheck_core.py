"""Gradients of the core built-ins through several timesteps, checked numerically in float64."""

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

import tracetorch as tt

STEPS = 4


def unrolled(layer, names):
    """A pure function of (inputs over time, *parameters) that runs the layer from zero states."""

    def fn(xs, *params):
        layer.zero_states()
        overrides = dict(zip(names, params, strict=True))
        return torch.stack([functional_call(layer, overrides, (x,)) for x in xs])

    return fn


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: tt.snn.Decay(3, beta=torch.tensor([0.3, 0.6, 0.9])), (STEPS, 2, 3)),
        (lambda: tt.snn.Decay(3, beta=0.7, beta_rank=0, dim=1), (STEPS, 2, 3, 2)),
        (lambda: tt.rnn.MiniGRU(3, 2), (STEPS, 2, 3)),
        (lambda: tt.rnn.MiniGRU(3, 2, dim=-3), (STEPS, 1, 3, 2, 2)),
    ],
)
def test_gradcheck_through_time_inputs_and_parameters(make, shape):
    torch.manual_seed(0)
    layer = make().double()
    names = [name for name, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in layer.named_parameters()]
    xs = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert gradcheck(unrolled(layer, names), (xs, *params))


def test_decay_gradient_matches_the_closed_form():
    # mem_T = sum_t beta^(T-1-t) x_t, so d mem_T / d x_t = beta^(T-1-t)
    layer = tt.snn.Decay(1, beta=0.5)
    xs = torch.ones(STEPS, 1, 1, requires_grad=True)
    for x in xs:
        y = layer(x)
    y.sum().backward()
    expected = torch.tensor([0.5**3, 0.5**2, 0.5, 1.0]).view(STEPS, 1, 1)
    torch.testing.assert_close(xs.grad, expected)
