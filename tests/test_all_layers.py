"""Generic checks run on every layer of the table (``layer_table.all_cases()``).

``tt.testing.check_layer`` covers gradients through time, lazy states, zero/detach, ``dim``
invariance, TTcompile/TTdecompile and save/load; the tests below add what it does not look
at: ``repr``, the errors on bad input, ``.to(dtype)``, ``torch.compile`` and forward-mode AD.
"""

from __future__ import annotations

import copy

import pytest
import torch
from layer_table import LayerCase, all_cases

import tracetorch as tt
from tracetorch.testing import check_layer

CASES = all_cases()


def inputs(case: LayerCase, steps: int, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(steps, *(shape or case.input_shape), generator=g)


def states(layer) -> dict[str, torch.Tensor | None]:
    return {name: getattr(layer, name) for name in layer.state_names}


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_check_layer(case):
    assert check_layer(case.make, case.input_shape, skip=case.skip)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_repr_mentions_num_neurons_and_dim(case):
    layer = case.make(dim=-2)
    text = repr(layer)
    assert type(layer).__name__ in text
    assert f"num_neurons={layer.num_neurons}" in text
    assert "dim=-2" in text


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_wrong_feature_size_is_a_value_error_naming_the_layer(case):
    layer = case.make()
    features = case.input_shape[-1]
    x = torch.randn(*case.input_shape[:-1], features + 1)
    with pytest.raises(ValueError, match=type(layer).__name__) as info:
        layer(x)
    assert str(features) in str(info.value)
    assert all(state is None for state in states(layer).values())


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_an_input_that_is_not_a_tensor_is_a_type_error_naming_the_layer(case):
    layer = case.make()
    x = torch.randn(*case.input_shape).tolist()
    with pytest.raises(TypeError, match=f"{type(layer).__name__}: expected a tensor, got list"):
        layer(x)
    assert all(state is None for state in states(layer).values())


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_batch_shape_change_with_live_states(case):
    layer = case.make()
    first, *rest = case.input_shape
    other = (first + 1, *rest) if rest else (2, first)
    layer(inputs(case, 1)[0])
    before = states(layer)
    if not before:  # a stateless layer takes any batch shape
        assert layer(torch.randn(other)).dim() == len(other)
        return
    with pytest.raises(ValueError, match="zero_states") as info:
        layer(torch.randn(other))
    assert type(layer).__name__ in str(info.value)
    after = states(layer)
    assert all(after[name] is before[name] for name in before)  # untouched by the error


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_to_float64_moves_live_states(case):
    layer = case.make()
    xs = inputs(case, 2)
    layer(xs[0])
    layer.to(torch.float64)
    assert all(state.dtype == torch.float64 for state in states(layer).values())
    assert layer(xs[1].double()).dtype == torch.float64


@pytest.mark.slow  # one torch.compile per layer: about a minute in all
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_torch_compile_fullgraph_matches_eager(case):
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = case.make()
    eager = copy.deepcopy(layer)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    total_eager = total_compiled = 0
    for x in inputs(case, 3):
        torch.manual_seed(1)
        y_eager = eager(x)
        torch.manual_seed(1)
        y_compiled = compiled(x)
        torch.testing.assert_close(y_compiled, y_eager)
        total_eager, total_compiled = total_eager + y_eager.sum(), total_compiled + y_compiled.sum()
    for name, state in states(eager).items():
        torch.testing.assert_close(getattr(layer, name), state)
    params = [p for p in eager.parameters() if p.requires_grad]
    if params and total_eager.requires_grad:
        grads_eager = torch.autograd.grad(total_eager, params, allow_unused=True)
        compiled_params = [p for p in layer.parameters() if p.requires_grad]
        grads = torch.autograd.grad(total_compiled, compiled_params, allow_unused=True)
        for g, g_eager in zip(grads, grads_eager, strict=True):
            if g_eager is None:
                assert g is None or not g.any()
            else:
                torch.testing.assert_close(g, g_eager)


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_forward_mode_ad_matches_reverse_mode_through_time(case, mode):
    # torch.func.jacfwd (forward mode, the spikes' surrogate as their derivative) gives the
    # Jacobian of all outputs w.r.t. all inputs over several steps that jacrev gives.
    layer = case.make().double()

    def run(xs):
        layer.zero_states()
        return tt.run(layer, xs, mode=mode)

    xs = 2 * inputs(case, 4).double()
    forward, reverse = torch.func.jacfwd(run)(xs), torch.func.jacrev(run)(xs)
    assert forward.shape == (*run(xs).shape, *xs.shape)
    torch.testing.assert_close(forward, reverse)
    assert forward.abs().sum() > 0
    with torch.no_grad():  # forward mode needs no autograd graph, and spikes keep their rule
        torch.testing.assert_close(torch.func.jacfwd(run)(xs), reverse)


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("features_last", [True, False])
def test_inference_mode_matches_grad_mode(case, features_last):
    # Without autograd the layers take other kernels (fused steps, the no-grad spike):
    # the values must not change, features last or not.
    torch.manual_seed(0)
    shape = case.input_shape if features_last else (*case.input_shape, 2, 3)
    layer = case.make(dim=-1 if features_last else len(case.input_shape) - 1)
    twin = copy.deepcopy(layer)
    for x in 3 * inputs(case, 4, shape):
        torch.manual_seed(1)
        y_grad = twin(x)
        torch.manual_seed(1)
        with torch.inference_mode():
            y = layer(x)
        torch.testing.assert_close(y, y_grad.detach())
    for name, state in states(twin).items():
        torch.testing.assert_close(getattr(layer, name), state.detach())
