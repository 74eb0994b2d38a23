"""``tt.run(..., mode="sequence", compile=True)`` computes what the eager sequence mode does."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

import tracetorch as tt


def _net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(4, 8), tt.snn.LIB(8), nn.Linear(8, 3), tt.snn.LI(3))
    with torch.no_grad():
        net[0].weight.mul_(3)  # so that the LIB layer fires
        net[1].raw_bias.uniform_(-0.2, 0.2)
    return net


def _run(net: nn.Module, xs: torch.Tensor, compile: bool) -> torch.Tensor:
    tt.zero_states(net)
    return tt.run(net, xs, mode="sequence", compile=compile)


def test_compile_needs_sequence_mode():
    with pytest.raises(ValueError, match="compile=True needs mode='sequence', got mode='step'"):
        tt.run(_net(), torch.rand(3, 2, 4), compile=True)


@pytest.mark.parametrize("dual", ["input", "parameter"])
def test_compile_refuses_dual_tensors_before_changing_anything(dual: str):
    """Compiled graphs drop (or cannot compute) forward-mode tangents: refused, not lost."""
    import torch.autograd.forward_ad as fwad

    torch.manual_seed(0)
    net, xs = _net(), torch.rand(3, 2, 4)
    net(xs[0])
    before = {name: state.clone() for name, state in tt.save_states(net).items()}
    weight = net[0].weight.detach()

    def run(compile: bool) -> torch.Tensor:
        if dual == "input":
            return tt.run(net, fwad.make_dual(xs, torch.ones_like(xs)), "sequence", compile)
        tangent = fwad.make_dual(weight, torch.ones_like(weight))  # as torch.func.jvp does
        return torch.func.functional_call(runner, {"net.0.weight": tangent}, (xs, compile))

    class Runner(nn.Module):  # a module whose forward is tt.run, so that functional_call works
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, xs: torch.Tensor, compile: bool) -> torch.Tensor:
            return tt.run(self.net, xs, mode="sequence", compile=compile)

    runner = Runner()
    with fwad.dual_level():
        with pytest.raises(NotImplementedError, match="compile=True cannot carry forward-mode"):
            run(compile=True)
        for name, state in tt.save_states(net).items():
            assert torch.equal(state, before[name]), name
        assert fwad.unpack_dual(run(compile=False)).tangent is not None


@pytest.mark.slow
def test_compiled_sequence_matches_eager_and_compiles_once():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    torch.manual_seed(0)
    net = _net()
    xs = torch.rand(5, 2, 4)
    assert _run(net[:2], xs, compile=False).sum() > 0  # the LIB layer fires

    # training: outputs, the states left behind and the gradients
    ys = _run(net, xs, compile=True)
    ys.square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    states = tt.save_states(net)
    net.zero_grad()
    expected = _run(net, xs, compile=False)
    expected.square().sum().backward()
    torch.testing.assert_close(ys, expected)
    for name, state in tt.save_states(net).items():
        torch.testing.assert_close(states[name], state)
    for grad, p in zip(grads, net.parameters(), strict=True):
        torch.testing.assert_close(grad, p.grad)

    # baked inference; a second call with the same shapes does not compile again
    tt.TTcompile(net)
    with torch.inference_mode():
        ys = _run(net, xs, compile=True)
        graphs = counters["stats"]["unique_graphs"]
        torch.testing.assert_close(_run(net, xs, compile=True), ys)
        assert counters["stats"]["unique_graphs"] == graphs
        torch.testing.assert_close(ys, _run(net, xs, compile=False))


@pytest.mark.slow
def test_the_compiled_callable_does_not_keep_the_model_alive():
    net = _net()
    with torch.inference_mode():
        _run(net, torch.rand(2, 1, 4), compile=True)
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None


@pytest.mark.slow
def test_a_hook_added_after_compiling_is_honoured():
    net = _net()
    xs = torch.rand(3, 1, 4)
    with torch.inference_mode():
        expected = _run(net, xs, compile=True)
        handle = net[3].register_forward_hook(lambda module, args, out: out + 1)
        torch.testing.assert_close(_run(net, xs, compile=True), expected + 1)
        handle.remove()
        torch.testing.assert_close(_run(net, xs, compile=True), expected)


@pytest.mark.slow
@pytest.mark.parametrize("value", [True, False])
def test_dynamos_settings_are_changed_only_while_compiling(value):
    # The backend sets two of dynamo's settings when it compiles (dynamo reads them after
    # calling it); each call restores the user's values, also when it fails, and a call
    # that compiles nothing does not touch them.
    config = torch._dynamo.config
    names = ("skip_nnmodule_hook_guards", "record_runtime_overhead")
    net = _net()
    xs = torch.rand(3, 1, 4)
    with config.patch(dict.fromkeys(names, value)), torch.inference_mode():
        _run(net, xs, compile=True)
        assert all(getattr(config, name) is value for name in names)
        _run(net, xs, compile=True)
        assert all(getattr(config, name) is value for name in names)
        with pytest.raises(RuntimeError, match="fails after a compiled graph"):
            _run(nn.Sequential(_FailsAfterAGraph(), tt.snn.LI(4)), xs, compile=True)
        assert all(getattr(config, name) is value for name in names)


@pytest.mark.slow
def test_a_setting_this_torch_lacks_is_left_out(monkeypatch):
    from tracetorch.core.sequence import _Inductor

    settings = {**_Inductor.SETTINGS, "a_setting_from_another_torch": False}
    monkeypatch.setattr(_Inductor, "SETTINGS", settings)
    net = _net()
    xs = torch.rand(3, 1, 4)
    with torch.inference_mode():
        torch.testing.assert_close(_run(net, xs, compile=True), _run(net, xs, compile=False))
    assert not hasattr(torch._dynamo.config, "a_setting_from_another_torch")


@pytest.mark.slow
def test_compiled_calls_do_not_mark_their_bytecode_for_the_profiler():
    # record_runtime_overhead is off while tt.run compiles: no profiler marks around the
    # bytecode that calls the graph (about 25 Python calls each time)
    net = _net()
    xs = torch.rand(3, 1, 4)
    with torch.inference_mode():
        _run(net, xs, compile=True)
        with torch.profiler.profile() as prof:
            _run(net, xs, compile=True)
    names = {event.name for event in prof.events()}
    assert any("CompiledFxGraph" in name for name in names)
    assert "Pregraph bytecode" not in names


class _FailsAfterAGraph(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)  # compiled: the backend runs
        torch._dynamo.graph_break()
        raise RuntimeError(f"fails after a compiled graph, with {tuple(y.shape)}")


@pytest.mark.slow
def test_each_model_has_its_own_recompile_limit():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=2):
        for size in (3, 4, 5):  # three models of different shapes: each one compiles
            net = nn.Sequential(nn.Linear(2, size), tt.snn.LIF(size))
            graphs = counters["stats"]["unique_graphs"]
            with torch.inference_mode():
                _run(net, torch.rand(2, 1, 2), compile=True)
            assert counters["stats"]["unique_graphs"] == graphs + 1


@pytest.mark.slow
def test_inputs_of_other_strides_and_offsets_give_the_eager_results():
    # The compiled graph does not assert its inputs' layout (inductor's size_asserts are
    # off): dynamo's guards must send each new layout to a graph made for it.
    torch.manual_seed(0)
    net = _net()
    tt.TTcompile(net)
    base = torch.rand(4, 3, 2, 6)
    inputs = {
        "contiguous": base[:, :, 0, :4].contiguous(),
        "strided": base[:, :, 0, :4],
        "offset": base[:, :, 1, 2:],
        "transposed": base[:, :, 0, :4].transpose(0, 1).contiguous().transpose(0, 1),
    }
    with torch.inference_mode():
        for name, xs in inputs.items():
            expected = _run(net, xs.contiguous(), compile=False)
            torch.testing.assert_close(_run(net, xs, compile=True), expected, msg=name)


@pytest.mark.slow
def test_a_layer_called_twice_per_step_is_refused_when_compiled_too():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.li = tt.snn.LI(4)

        def forward(self, x):
            return self.li(self.li(x))

    model = Twice()
    xs = torch.rand(5, 2, 4)
    model(xs[0])
    before = model.li.mem
    with pytest.raises(RuntimeError, match=r"LI \(at 'li' in Twice\) was called a second time"):
        tt.run(model, xs, mode="sequence", compile=True)
    assert model.li.mem is before


def test_a_model_compiled_inside_sequence_mode_does_not_recompile_per_call():
    # sequence_mode counts the model's calls (for tt.record) in a hook that a compiled
    # model runs: the count must not become a guard
    torch._dynamo.reset()
    net = _net()
    compiled = torch.compile(net, backend="eager")
    xs = torch.rand(3, 2, 4)
    with torch._dynamo.config.patch(error_on_recompile=True), tt.sequence_mode(net):
        for _ in range(3):
            tt.zero_states(net)
            compiled(xs)
