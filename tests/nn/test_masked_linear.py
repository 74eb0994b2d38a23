"""MaskedLinear: a linear layer whose masked-out weights neither act nor learn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tracetorch.nn import MaskedLinear
from tracetorch.testing import check_function

CHECKER = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]], dtype=torch.bool)


def test_diagonal_mask_square_and_rectangular():
    assert torch.equal(MaskedLinear(3, 3).mask, torch.eye(3, dtype=torch.bool))
    assert torch.equal(MaskedLinear(4, 2, mask="diagonal").mask, torch.eye(2, 4, dtype=torch.bool))
    assert torch.equal(MaskedLinear(2, 4).mask, torch.eye(4, 2, dtype=torch.bool))


def test_output_uses_the_masked_weight():
    torch.manual_seed(0)
    layer = MaskedLinear(4, 3, mask=CHECKER)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3, 4))  # masked entries nonzero too
    x = torch.randn(5, 2, 4)
    expected = F.linear(x, layer.weight * CHECKER, layer.bias)
    assert torch.allclose(layer(x), expected)


def test_masked_weights_never_influence_the_output():
    torch.manual_seed(0)
    layer = MaskedLinear(4, 3, mask=CHECKER)
    x = torch.randn(6, 4)
    before = layer(x)
    with torch.no_grad():
        layer.weight[~CHECKER] = 1e6
    assert torch.equal(layer(x), before)
    with torch.no_grad():
        layer.weight[CHECKER] += 1.0
    assert not torch.allclose(layer(x), before)


def test_masked_weights_get_exactly_zero_gradient():
    torch.manual_seed(0)
    layer = MaskedLinear(4, 3, mask=CHECKER)
    with torch.no_grad():
        layer.weight.normal_()
    layer(torch.randn(7, 4)).pow(2).sum().backward()
    assert torch.equal(layer.weight.grad[~CHECKER], torch.zeros(int((~CHECKER).sum())))
    assert (layer.weight.grad[CHECKER] != 0).all()


def test_gradcheck_wrt_input_weight_and_bias():
    layer = MaskedLinear(4, 3, mask=CHECKER).double()

    def fn(x, weight, bias):
        return torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (x,))

    assert check_function(fn, torch.randn(2, 4), torch.randn(3, 4), torch.randn(3))


def test_init_zeroes_masked_weights_and_scales_by_fan_in():
    torch.manual_seed(0)
    layer = MaskedLinear(64, 64)
    assert torch.equal(layer.weight[~layer.mask], torch.zeros(64 * 63))
    assert layer.weight.diagonal().abs().max() > 0.9  # fan-in 1: uniform in (-1, 1)
    dense = MaskedLinear(64, 2, mask=torch.ones(2, 64, dtype=torch.bool))
    assert dense.weight.abs().max() <= 1 / 8  # fan-in 64: uniform in (-1/8, 1/8)


def test_mask_is_a_buffer_saved_in_state_dict():
    layer = MaskedLinear(4, 3, mask=CHECKER)
    state = layer.state_dict()
    assert torch.equal(state["mask"], CHECKER)
    other = MaskedLinear(4, 3)  # diagonal
    other.load_state_dict(state)
    assert torch.equal(other.mask, CHECKER)
    x = torch.randn(2, 4)
    assert torch.equal(other(x), layer(x))


def test_to_float64_keeps_a_boolean_mask():
    layer = MaskedLinear(3, 3).to(torch.float64)
    assert layer.mask.dtype == torch.bool
    assert layer(torch.ones(2, 3, dtype=torch.float64)).dtype == torch.float64


def test_integer_mask_of_zeros_and_ones_and_no_bias():
    layer = MaskedLinear(4, 3, mask=CHECKER.int(), bias=False)
    assert layer.mask.dtype == torch.bool and torch.equal(layer.mask, CHECKER)
    assert layer.bias is None
    assert torch.equal(layer(torch.zeros(1, 4)), torch.zeros(1, 3))


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (torch.ones(3, 3, dtype=torch.bool), r"shape \(out_features, in_features\) = \(3, 4\)"),
        (torch.ones(4, 3, dtype=torch.bool), "got \\(4, 3\\)"),
        ("lower", "unknown mask 'lower'"),
        (torch.full((3, 4), 0.5), "only 0s and 1s"),
        ([[1, 0]], "got list"),
    ],
)
def test_bad_masks_are_rejected(mask, match):
    with pytest.raises(ValueError, match="MaskedLinear") as info:
        MaskedLinear(4, 3, mask=mask)
    assert info.match(match)


def test_bad_sizes_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="MaskedLinear: expected in_features"):
        MaskedLinear(0, 3)
    with pytest.raises(ValueError, match="MaskedLinear: expected 4 features"):
        MaskedLinear(4, 3)(torch.ones(2, 3))


def test_repr():
    assert repr(MaskedLinear(4, 3, mask=CHECKER, bias=False)) == (
        "MaskedLinear(in_features=4, out_features=3, bias=False, connections=6/12)"
    )
