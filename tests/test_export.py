"""One step of a stateful model exported with ``tt.export`` (torch.export) and ``tt.export_onnx``.

Run step by step, feeding each step's new states back, the exported program (and the ONNX
model in onnxruntime) reproduces the eager model over 25 steps, hard spikes included.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

import tracetorch as tt

STEPS = 25


def snn() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), tt.snn.LIB(16), nn.Linear(16, 4), tt.snn.LI(4))
    tt.TTcompile(net)
    return net.eval()


def gru() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), tt.rnn.GRU(12, 8), nn.Linear(8, 3)).eval()


MODELS = {"snn": snn, "gru": gru}


def inputs() -> torch.Tensor:
    return 1.5 * torch.randn(STEPS, 3, 6, generator=torch.Generator().manual_seed(1))


def eager(net: nn.Module, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The eager outputs of every step, and the spikes of the LIB layer (SNN) if any."""
    tt.zero_states(net)
    spikes = []
    handle = net[1].register_forward_hook(lambda module, args, out: spikes.append(out))
    with torch.no_grad():
        ys = tt.run(net, xs)
    handle.remove()
    tt.zero_states(net)
    return ys, torch.stack(spikes) if isinstance(net[1], tt.snn.LIB) else None


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_exported_step_run_step_by_step_reproduces_the_model(name, tmp_path):
    net = MODELS[name]()
    xs = inputs()
    expected, spikes = eager(net, xs)
    if spikes is not None:  # the hard threshold is exercised both ways
        assert 0 < spikes.mean() < 1

    path = tmp_path / "step.pt2"
    program = tt.export(net, xs[0], path)
    assert tt.save_states(net) == {}  # the model's own states were not created
    specs = program.graph_signature.input_specs
    names = [spec.arg.name for spec in specs if spec.kind.name == "USER_INPUT"]
    keys = sorted(tt.functional_call(net, {}, xs[0])[1])
    assert names == ["x", *(f"states_{key.replace('.', '_')}" for key in keys)]

    for step in (program.module(), torch.export.load(path).module()):
        states = program.example_inputs[0][1]
        assert sorted(states) == keys and all(not s.any() for s in states.values())
        outputs = []
        for x in xs:
            y, states = step(x, states)
            outputs.append(y)
        torch.testing.assert_close(torch.stack(outputs), expected, rtol=0, atol=1e-6)


def test_export_starts_from_given_states_and_leaves_the_model_alone():
    net = gru()
    xs = inputs()
    with torch.no_grad():
        tt.run(net, xs[:3])
    live = net[1].h
    saved = tt.save_states(net)
    program = tt.export(net, xs[3], states=saved)
    assert net[1].h is live
    torch.testing.assert_close(program.example_inputs[0][1]["1.h"], saved["1.h"])
    y, _ = program.module()(xs[3], saved)
    with torch.no_grad():
        torch.testing.assert_close(y, net(xs[3]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"unknown state key\(s\) \['1.mem'\]"):
        tt.export(net, xs[0], states={"1.mem": torch.zeros(3, 8)})


def test_hard_spikes_are_exported_as_a_threshold():
    program = tt.export(snn(), inputs()[0])
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any("gt" in target for target in targets), targets
    assert not any("Heaviside" in target or "autograd" in target for target in targets), targets


def test_export_onnx_without_the_packages_says_how_to_install_them(monkeypatch, tmp_path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "onnxscript" else find_spec(name, *args),
    )
    with pytest.raises(ImportError, match=r"onnxscript.*pip install 'tracetorch\[onnx\]'"):
        tt.export_onnx(gru(), inputs()[0], tmp_path / "step.onnx")
    assert not (tmp_path / "step.onnx").exists()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_round_trip_in_onnxruntime(name, tmp_path):
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    net = MODELS[name]()
    xs = inputs()
    expected, _ = eager(net, xs)

    path = tmp_path / "step.onnx"
    tt.export_onnx(net, xs[0], path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_names = [node.name for node in session.get_inputs()]
    keys = input_names[1:]
    assert input_names[0] == "input" and keys == sorted(tt.functional_call(net, {}, xs[0])[1])
    assert [node.name for node in session.get_outputs()] == ["output", *(f"new.{k}" for k in keys)]

    states = {node.name: torch.zeros(node.shape).numpy() for node in session.get_inputs()[1:]}
    outputs = []
    for x in xs:
        y, *new = session.run(None, {"input": x.numpy(), **states})
        states = dict(zip(keys, new, strict=True))
        outputs.append(torch.from_numpy(y))
    torch.testing.assert_close(torch.stack(outputs), expected, rtol=0, atol=1e-5)


class TwoWay(nn.Module):
    """Two inputs, two outputs."""

    def __init__(self):
        super().__init__()
        self.left, self.right = tt.snn.LI(3), tt.rnn.GRU(2, 3)

    def forward(self, a, b):
        y = self.left(a) + self.right(b)
        return y, y.square()


def test_onnx_names_several_inputs_and_outputs_and_refuses_duplicate_names(tmp_path):
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    net = TwoWay().eval()
    a, b = torch.randn(4, 3), torch.randn(4, 2)
    tt.export_onnx(net, (a, b), tmp_path / "two.onnx")
    session = ort.InferenceSession(str(tmp_path / "two.onnx"), providers=["CPUExecutionProvider"])
    assert [node.name for node in session.get_inputs()] == [
        "input.0",
        "input.1",
        "left.mem",
        "right.h",
    ]
    assert [node.name for node in session.get_outputs()] == [
        "output.0",
        "output.1",
        "new.left.mem",
        "new.right.h",
    ]
    zeros = torch.zeros(4, 3).numpy()
    got = session.run(
        None, {"input.0": a.numpy(), "input.1": b.numpy(), "left.mem": zeros, "right.h": zeros}
    )
    with torch.no_grad():
        expected = net(a, b)
    torch.testing.assert_close(torch.from_numpy(got[1]), expected[1], rtol=0, atol=1e-5)

    clashing = nn.Module()
    clashing.mem = tt.snn.LI(3)  # key "mem.mem"
    clashing.new = nn.Module()
    clashing.new.mem = tt.snn.LI(3)  # key "new.mem.mem": also the new state of "mem.mem"
    clashing.forward = lambda x: clashing.new.mem(clashing.mem(x))
    with pytest.raises(ValueError, match=r"name\(s\) \['new.mem.mem'\] twice"):
        tt.export_onnx(clashing, torch.randn(2, 3), tmp_path / "clash.onnx")
