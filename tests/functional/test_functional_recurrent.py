"""The recurrent step functions against hand-written formulas and PyTorch's cells."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tracetorch.functional import gru_step, lstm_step, rnn_step

IN, HID = 3, 5


def sigmoid(t: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-t))


def tanh(t: torch.Tensor) -> torch.Tensor:
    return (torch.exp(t) - torch.exp(-t)) / (torch.exp(t) + torch.exp(-t))


def params(gates: int, bias: bool = True) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(gates)
    shapes = [(gates * HID, IN), (gates * HID, HID), (gates * HID,), (gates * HID,)]
    tensors = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    return tensors if bias else [*tensors[:2], None, None]


def block(w: torch.Tensor | None, k: int) -> torch.Tensor | float:
    """The k-th gate block of a stacked weight or bias (0 for a missing bias)."""
    return 0.0 if w is None else w[k * HID : (k + 1) * HID]


def affine(x, h, p, k):
    """W_i[k] x + b_i[k] + W_h[k] h + b_h[k], written out with matrix products."""
    w_ih, w_hh, b_ih, b_hh = p
    return x @ block(w_ih, k).T + block(b_ih, k) + h @ block(w_hh, k).T + block(b_hh, k)


def inputs(*lead: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(*lead, IN, generator=g, dtype=torch.float64)
    h = torch.randn(*lead, HID, generator=g, dtype=torch.float64)
    c = torch.randn(*lead, HID, generator=g, dtype=torch.float64)
    return x, h, c


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(4,), (2, 3), ()])
def test_rnn_step_matches_formula(bias, lead):
    x, h, _ = inputs(*lead)
    p = params(1, bias)
    assert torch.allclose(rnn_step(h, x, *p), tanh(affine(x, h, p, 0)), atol=1e-12)
    relu = rnn_step(h, x, *p, nonlinearity="relu")
    assert torch.allclose(relu, affine(x, h, p, 0).clamp(min=0), atol=1e-12)
    assert (relu == 0).any() and (relu > 0).any()  # both branches of relu are exercised


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(4,), (2, 3), ()])
def test_gru_step_matches_formula(bias, lead):
    x, h, _ = inputs(*lead)
    p = params(3, bias)
    w_ih, w_hh, b_ih, b_hh = p
    r = sigmoid(affine(x, h, p, 0))
    z = sigmoid(affine(x, h, p, 1))
    n = tanh(x @ block(w_ih, 2).T + block(b_ih, 2) + r * (h @ block(w_hh, 2).T + block(b_hh, 2)))
    expected = (1 - z) * n + z * h
    assert torch.allclose(gru_step(h, x, *p), expected, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(4,), (2, 3), ()])
def test_lstm_step_matches_formula(bias, lead):
    x, h, c = inputs(*lead)
    p = params(4, bias)
    i, f, g, o = (affine(x, h, p, k) for k in range(4))
    c_new = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h_new = sigmoid(o) * tanh(c_new)
    h_out, c_out = lstm_step(h, c, x, *p)
    assert torch.allclose(c_out, c_new, atol=1e-12)
    assert torch.allclose(h_out, h_new, atol=1e-12)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_steps_match_pytorch_cells(nonlinearity):
    x, h, c = inputs(6)
    rnn = nn.RNNCell(IN, HID, nonlinearity=nonlinearity).double()
    gru = nn.GRUCell(IN, HID).double()
    lstm = nn.LSTMCell(IN, HID).double()
    weights = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    with torch.no_grad():
        got = rnn_step(h, x, *(getattr(rnn, w) for w in weights), nonlinearity=nonlinearity)
        assert torch.allclose(got, rnn(x, h), atol=1e-12)
        assert torch.allclose(gru_step(h, x, *(getattr(gru, w) for w in weights)), gru(x, h))
        got_h, got_c = lstm_step(h, c, x, *(getattr(lstm, w) for w in weights))
        want_h, want_c = lstm(x, (h, c))
    assert torch.allclose(got_h, want_h, atol=1e-12)
    assert torch.allclose(got_c, want_c, atol=1e-12)


def test_steps_gradcheck():
    x, h, c = (t[:2].requires_grad_() for t in inputs(2))
    p = [t.requires_grad_() for t in params(4)]
    assert torch.autograd.gradcheck(lambda *a: lstm_step(*a), (h, c, x, *p))
    p = [t.requires_grad_() for t in params(3)]
    assert torch.autograd.gradcheck(lambda *a: gru_step(*a), (h, x, *p))
    p = [t.requires_grad_() for t in params(1)]
    assert torch.autograd.gradcheck(lambda *a: rnn_step(*a), (h, x, *p))


def test_rnn_step_rejects_unknown_nonlinearity():
    x, h, _ = inputs(2)
    with pytest.raises(ValueError, match="nonlinearity 'tanh' or 'relu', got 'sigmoid'"):
        rnn_step(h, x, *params(1), nonlinearity="sigmoid")
