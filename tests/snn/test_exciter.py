"""Exciter: the clamp, its custom backward, the backward callbacks, and the seed network."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

import tracetorch as tt
from tracetorch.snn import Exciter, ExciterFunction
from tracetorch.testing import GradientCheckError, check_function

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "exciter_network.py"


def load_example():
    spec = importlib.util.spec_from_file_location("exciter_network_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def away_from(low: float, high: float, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """float64 values in (-3, 3) * span, none within 0.1 of a clamp bound (for gradcheck)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * 1.5 * max(-low, high)
    near = ((x - low).abs() < 0.1) | ((x - high).abs() < 0.1)
    return torch.where(near, x + 0.3, x)


# ------------------------------------------------------------------------------- forward


def test_forward_clamps_to_the_bounds():
    x = torch.tensor([[-12.0, -10.0, 0.5, 10.0, 15.0]])
    y = Exciter(5)(x)
    assert torch.equal(y, torch.tensor([[-10.0, -10.0, 0.5, 10.0, 10.0]]))


def test_select_last_keeps_the_dimension_with_size_one():
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(Exciter(4, select_last=True, high=30.0)(x), x[..., -1:])
    assert torch.equal(Exciter(3, select_last=True, dim=1, high=30.0)(x), x[:, -1:, :])
    assert torch.equal(Exciter(2, select_last=True, dim=0, high=30.0)(x), x[-1:])
    assert torch.equal(Exciter(4, select_last=True)(x), x[..., -1:].clamp(max=10.0))


# ------------------------------------------------------------------------------ backward


@pytest.mark.parametrize("select_last", [False, True])
def test_gradient_is_masked_by_the_clamp(select_last):
    x = torch.tensor([[-11.0, -10.0, 3.0, 10.0, 10.5], [0.0, 20.0, -9.0, 1.0, -30.0]])
    x.requires_grad_()
    grad_output = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]])
    layer = Exciter(5, select_last=select_last)
    y = layer(x)
    y.backward(grad_output[:, -1:] if select_last else grad_output)
    inside = (x >= -10) & (x <= 10)  # the bounds themselves pass the gradient
    expected = torch.where(inside, grad_output, 0.0)
    if select_last:
        expected[:, :-1] = 0
    assert x.grad.shape == x.shape
    assert torch.equal(x.grad, expected)


def test_unselected_neurons_get_zero_gradient_along_any_dim():
    x = torch.randn(3, 4, 5, requires_grad=True)
    Exciter(4, select_last=True, dim=1)(x).sum().backward()
    assert torch.equal(x.grad[:, :-1], torch.zeros(3, 3, 5))
    assert torch.equal(x.grad[:, -1], torch.ones(3, 5))


@pytest.mark.parametrize("select_last", [False, True])
@pytest.mark.parametrize(("shape", "dim"), [((4,), -1), ((3, 4), -1), ((4, 3), 0), ((2, 4, 3), 1)])
def test_gradcheck(select_last, shape, dim):
    x = away_from(-1.0, 1.0, shape)
    assert (x.abs() > 1).any() and (x.abs() < 1).any()  # both sides of the clamp are checked

    def fn(x):
        return ExciterFunction.apply(x, -1.0, 1.0, select_last, dim, None)

    # gradcheck and gradgradcheck, and the forward mode (dual tensors, jacfwd) too
    assert check_function(fn, x, names=["x"], check_forward=True)


def test_gradcheck_through_the_layer_with_a_callback():
    layer = Exciter(4, low=-1.0, high=1.0, select_last=True, dim=-2).double()
    calls = []
    layer.register_backward_callback(lambda lyr, g: calls.append(g.shape))
    assert check_function(layer, away_from(-1.0, 1.0, (2, 4, 3)), check_gradgrad=False)
    assert calls and all(shape == (2, 1, 3) for shape in calls)


def test_gradcheck_rejects_the_seed_backward():
    """The backward of seed 000 returns grad_output unchanged: the checks must catch it."""

    class SeedExciterFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clamp(-1.0, 1.0)

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output

    with pytest.raises(GradientCheckError, match="input 0"):
        check_function(SeedExciterFunction.apply, away_from(-1.0, 1.0, (6,)))


# ----------------------------------------------------------------------------- callbacks


def test_callbacks_run_once_per_backward_in_order_with_the_output_gradient():
    layer = Exciter(4, select_last=True)
    calls = []
    layer.register_backward_callback(lambda lyr, g: calls.append(("a", lyr, g.clone())))
    layer.register_backward_callback(lambda lyr, g: calls.append(("b", lyr, g.clone())))
    x = torch.randn(3, 4, requires_grad=True)
    grad_output = torch.randn(3, 1)
    layer(x).backward(grad_output)
    assert [name for name, _, _ in calls] == ["a", "b"]
    for _, lyr, g in calls:
        assert lyr is layer
        assert torch.equal(g, grad_output)  # the output's gradient, of the output's shape


def test_removed_callback_is_not_called():
    layer = Exciter(2)
    calls = []
    handle = layer.register_backward_callback(lambda lyr, g: calls.append(1))
    layer(torch.ones(1, 2, requires_grad=True)).sum().backward()
    handle.remove()
    layer(torch.ones(1, 2, requires_grad=True)).sum().backward()
    assert calls == [1]
    handle.remove()  # removing twice is harmless


def test_callback_runs_without_grad_and_builds_no_graph():
    layer = Exciter(3)
    weight = torch.randn(3, requires_grad=True)
    seen = {}

    def callback(lyr, grad_output):
        seen["grad_enabled"] = torch.is_grad_enabled()
        seen["made"] = weight * grad_output  # would have a grad_fn with grad enabled
        seen["probe"] = lyr(torch.ones(2, 3, requires_grad=True))

    layer.register_backward_callback(callback)
    layer(torch.randn(2, 3, requires_grad=True)).sum().backward()
    assert seen["grad_enabled"] is False
    assert seen["made"].grad_fn is None and not seen["made"].requires_grad
    assert seen["probe"].grad_fn is None


def test_callback_gets_its_own_copy_of_grad_output():
    layer = Exciter(3)
    layer.register_backward_callback(lambda lyr, g: g.mul_(100))
    x = torch.randn(2, 3, requires_grad=True)
    grad_output = torch.ones(2, 3)
    layer(x).backward(grad_output)
    assert torch.equal(x.grad, torch.ones(2, 3))
    assert torch.equal(grad_output, torch.ones(2, 3))


def test_each_callback_gets_a_copy_of_its_own():
    layer, kept = Exciter(3), []
    layer.register_backward_callback(lambda lyr, g: kept.append(g))
    layer.register_backward_callback(lambda lyr, g: g.mul_(0))  # not seen by the others
    layer.register_backward_callback(lambda lyr, g: kept.append(g))
    layer(torch.randn(2, 3, requires_grad=True)).backward(torch.full((2, 3), 2.0))
    assert all(torch.equal(g, torch.full((2, 3), 2.0)) for g in kept) and len(kept) == 2


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_select_last_trains_through_a_checkpoint(mode):
    # a non-reentrant checkpoint lets a backward read its saved tensors once
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), tt.snn.LIF(4), Exciter(4, select_last=True))
    xs = torch.randn(4, 2, 3)
    tt.run(net, xs, mode=mode).square().sum().backward()
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    tt.zero_states(net)
    tt.checkpoint(net, xs, segment=2, mode=mode).square().sum().backward()
    for p, grad in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, grad)


def test_register_rejects_a_non_callable():
    with pytest.raises(TypeError, match="Exciter"):
        Exciter(3).register_backward_callback("not a function")


def test_probe_of_a_stateful_network_with_save_and_load_states_keeps_the_states():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), tt.snn.Decay(4), Exciter(4), nn.Linear(4, 1))
    twin = copy.deepcopy(model)  # the same network without the probe
    probe_input = torch.randn(5, 3)

    def probe(lyr, grad_output):
        saved = tt.save_states(model)
        tt.zero_states(model)  # a different batch shape needs fresh states
        model(probe_input)
        tt.load_states(model, saved)

    model[2].register_backward_callback(probe)
    xs = torch.randn(3, 2, 3)
    for net in (model, twin):
        net(xs[0])
        net(xs[1]).sum().backward()
    assert torch.equal(model[1].mem, twin[1].mem)
    assert torch.equal(model(xs[2]), twin(xs[2]))  # it continues as if never probed


def test_probe_without_restoring_advances_the_states():
    """The documented hazard: a probe that runs the network moves its states on."""
    model = nn.Sequential(tt.snn.Decay(2, beta=0.5), Exciter(2))
    model[1].register_backward_callback(lambda lyr, g: model(torch.ones(1, 2)))
    model(torch.ones(1, 2, requires_grad=True)).sum().backward()
    assert torch.equal(model[0].mem, torch.full((1, 2), 1.5))  # 1, then 0.5 * 1 + 1


def test_manual_weight_update_in_a_callback_takes_effect_and_backward_completes():
    torch.manual_seed(0)
    model = load_example().build_network()
    twin = copy.deepcopy(model)  # the same network without the callback
    old = model[2].weight.detach().clone()

    def nudge(lyr, grad_output):
        model[2].weight -= 0.5 * model[2].mask  # in place, under no_grad: not recorded

    model[1].register_backward_callback(nudge)
    x = torch.randn(6, 5)
    for net in (model, twin):
        net(x).pow(2).mean().backward()
    assert torch.equal(model[2].weight.detach(), old - 0.5 * model[2].mask)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)  # the backward itself is unchanged
    assert model[0].weight.grad.abs().sum() > 0


def test_torch_compile_traces_the_clamp_with_its_gradient_in_one_graph():
    # ExciterFunction's forward-mode rule is one dynamo cannot trace: compiled code takes
    # its twin without one, in one graph (fullgraph), with the same values and gradients
    layer = Exciter(4, low=-1.0, high=1.0)
    x = away_from(-1.0, 1.0, (3, 4)).requires_grad_()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(y, layer(x))
    torch.testing.assert_close(grad, ((x > -1) & (x < 1)).double())


def test_callbacks_survive_torch_compile_as_a_graph_break():
    torch._dynamo.reset()
    layer = Exciter(3)
    calls = []
    layer.register_backward_callback(lambda lyr, g: calls.append(g.shape))
    compiled = torch.compile(layer, backend="eager")
    x = torch.randn(2, 3, requires_grad=True)
    compiled(x).sum().backward()
    assert calls == [torch.Size([2, 3])]
    assert torch.equal(x.grad, torch.ones(2, 3))


# -------------------------------------------------------------------- construction, repr


@pytest.mark.parametrize(("low", "high"), [(1.0, 1.0), (2.0, -2.0), (float("nan"), 1.0)])
def test_bounds_must_be_ordered(low, high):
    with pytest.raises(ValueError, match="Exciter"):
        Exciter(3, low=low, high=high)


def test_repr_and_no_states():
    layer = Exciter(3, low=-1, high=2, select_last=True, dim=0)
    text = repr(layer)
    for part in ("num_neurons=3", "dim=0", "low=-1", "high=2", "select_last=True"):
        assert part in text
    assert layer.state_names == ()


def test_wrong_feature_size_names_the_layer():
    with pytest.raises(ValueError, match="Exciter: expected 3 features at dim -1"):
        Exciter(3)(torch.ones(2, 4))
    with pytest.raises(ValueError, match="out of range"):
        Exciter(3, dim=2)(torch.ones(2, 3))


# ---------------------------------------------------------------------- the seed network


def test_seed_network_clamp_mask_and_diagonal_gradient():
    example = load_example()
    torch.manual_seed(0)
    model = example.build_network()
    with torch.no_grad():  # push the first neuron far beyond +10 and the second below -10
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([50.0, -50.0, 0.0]))
        model[0].weight[2].fill_(0.5)
        model[2].weight.fill_(1.0)  # the whole matrix, masked entries included
        model[2].bias.fill_(20.0)  # keeps the ReLU open for inputs down to -20
        model[4].weight.fill_(1.0)
    grads = {}
    model[1].register_backward_callback(lambda lyr, g: grads.setdefault("out", g.clone()))
    x = torch.randn(8, 5)
    hidden = model[0](x)
    hidden.retain_grad()
    out = model[4](model[3](model[2](model[1](hidden))))
    out.sum().backward()
    assert grads["out"].shape == (8, 3)
    assert (grads["out"][:, :2] != 0).all()  # gradient reaches the clamped neurons' outputs
    assert torch.equal(hidden.grad[:, :2], torch.zeros(8, 2))  # ... but not their inputs
    assert torch.equal(hidden.grad[:, 2], grads["out"][:, 2])
    mask = model[2].mask
    assert torch.equal(mask, torch.eye(3, dtype=torch.bool))
    assert torch.equal(model[2].weight.grad[~mask], torch.zeros(6))
    assert model[2].weight.grad.diagonal().abs().sum() > 0


def test_seed_network_callback_called_once_per_backward_without_graph():
    example = load_example()
    model = example.build_network()
    seen = []

    def callback(lyr, grad_output):
        probe = model(torch.randn(4, 5))
        seen.append((grad_output.shape, torch.is_grad_enabled(), probe.grad_fn))

    model[1].register_backward_callback(callback)
    for _ in range(3):
        model(torch.randn(6, 5)).pow(2).mean().backward()
    assert seen == [(torch.Size([6, 3]), False, None)] * 3


def test_example_quick_run_learns_and_saves_a_figure(tmp_path, monkeypatch, capsys):
    example = load_example()
    monkeypatch.chdir(tmp_path)
    losses = example.main(["--quick"])
    out = capsys.readouterr().out
    assert "[callback]" in out and "grad enabled: False" in out
    assert sum(losses[-10:]) < 0.2 * sum(losses[:10])
    assert (tmp_path / "exciter_network_loss.png").stat().st_size > 1000
