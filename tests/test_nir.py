"""tt.nir: export to and import from NIR graphs (needs the optional ``nir`` package)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import tracetorch as tt

nir = pytest.importorskip("nir")
np = pytest.importorskip("numpy")

STEPS = 25


class Net(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, 8),
            tt.snn.LIF(8, beta=torch.linspace(0.6, 0.95, 8), threshold=0.7, reset="zero"),
            nn.Linear(8, 4),
            tt.snn.LI(4, beta=0.8),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def drive(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return 2 * torch.rand(STEPS, *shape, generator=torch.Generator().manual_seed(seed))


def spikes_and_outputs(model: nn.Module, path: str, xs: torch.Tensor, mode: str = "step"):
    tt.zero_states(model)
    with tt.record(model, states=False, outputs=[path]) as rec:
        ys = tt.run(model, xs, mode=mode)
    return rec[path], ys


def test_round_trip_through_a_file_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = Net()
    xs = drive((5, 3))
    graph = tt.nir.export(model, xs[0])
    assert [type(graph.nodes[k]).__name__ for k in ("net.0", "net.1", "net.2", "net.3")] == [
        "Affine",
        "LIF",
        "Affine",
        "LI",
    ]
    path = tmp_path / "net.nir"
    nir.write(path, graph)
    loaded = tt.nir.load(nir.read(path))
    assert isinstance(loaded, tt.Model)
    assert [type(m).__name__ for m in loaded.net] == ["Linear", "LIF", "Linear", "LI"]
    spikes, ys = spikes_and_outputs(model, "net.1", xs)
    spikes_loaded, ys_loaded = spikes_and_outputs(loaded, "net.net_1", xs)
    assert 0 < spikes.mean() < 1  # the neurons fire, and not at every step
    assert torch.equal(spikes_loaded, spikes)
    torch.testing.assert_close(ys_loaded, ys)
    assert loaded.net.net_1.reset == "zero"
    torch.testing.assert_close(loaded.net.net_1.beta, model.net[1].beta)
    # the file itself loads too, and sequence mode gives the same
    _, ys_file = spikes_and_outputs(tt.nir.load(path), "net.net_1", xs, mode="sequence")
    torch.testing.assert_close(ys_file, ys)


def test_a_hand_built_graph_follows_its_equations():
    # forward Euler at dt: v += dt/tau * (v_leak - v + r*I); spike where v > v_threshold,
    # then v = v_reset = 0. Here dt/tau = 0.5 and r = 1: the input gain is 0.5.
    dt = 1e-4
    weight = np.array([[1.0, 0.5], [-0.5, 2.0]])
    bias = np.array([0.25, 0.0])
    tau, r, v_th = np.full(2, 2e-4), np.ones(2), np.array([0.6, 0.9])
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=weight, bias=bias),
        nir.LIF(tau=tau, r=r, v_leak=np.zeros(2), v_threshold=v_th),
    )
    xs = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5], [1.0, 1.0], [0.0, 0.0]])
    v = np.zeros(2)
    expected = []
    for x in xs.numpy().astype(np.float64):
        current = weight @ x + bias
        v = v + dt / tau * (-v + r * current)
        z = v > v_th
        v = np.where(z, 0.0, v)
        expected.append(z.astype(np.float32))
    expected = np.stack(expected)
    # by hand, neuron 0 (current x0 + x1/2 + 1/4, threshold 0.6): v = 0.625 fires, 0.875
    # fires, 0.375, 0.375 + 0.5 * (1 - 0.375) = 0.6875 fires, 0.875 fires, 0.125
    assert expected[:, 0].tolist() == [1, 1, 0, 1, 1, 0]
    model = tt.nir.load(graph, dt=dt)
    spikes = tt.run(model, xs.unsqueeze(1)).squeeze(1)
    assert spikes.tolist() == expected.tolist()


def test_a_hand_built_cuba_lif_follows_its_equations():
    # I += dt/tau_syn * (-I + w_in*S); v += dt/tau_mem * (-v + r*I) with the new I
    dt = 1e-4
    tau_syn, tau_mem = np.full(1, 4e-4), np.full(1, 2e-4)  # alpha = 0.75, beta = 0.5
    r, w_in, v_th = np.full(1, 2.0), np.full(1, 3.0), np.full(1, 1.0)
    node = nir.CubaLIF(
        tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=np.zeros(1), v_threshold=v_th, w_in=w_in
    )
    model = tt.nir.load(nir.NIRGraph.from_list(node), dt=dt)
    assert isinstance(model.net[0], tt.snn.SLIB) and model.net[0].reset == "zero"
    xs = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]).reshape(-1, 1, 1)
    current = v = 0.0
    expected = []
    for s in xs.flatten().tolist():
        current += dt / tau_syn[0] * (-current + w_in[0] * s)
        v += dt / tau_mem[0] * (-v + r[0] * current)
        expected.append(float(v > v_th[0]))
        v = 0.0 if v > v_th[0] else v
    assert sum(expected) >= 2
    assert tt.run(model, xs).flatten().tolist() == expected


def test_convolutional_chain_round_trip_in_both_modes():
    torch.manual_seed(0)
    model = nn.Sequential(
        tt.nn.TimeDistributed(nn.Conv2d(2, 3, 3, padding=1)),
        tt.snn.LIF(3, beta=0.8, threshold=0.5, dim=-3, reset="zero"),
        tt.nn.TimeDistributed(nn.AvgPool2d(2, divisor_override=1)),
        tt.nn.TimeDistributed(nn.Flatten()),
        nn.Linear(3 * 2 * 2, 5, bias=False),
        tt.snn.SLIB(5, alpha=0.6, beta=0.7, threshold=0.5, reset="zero"),
    )
    xs = drive((2, 2, 4, 4), seed=3)
    graph = tt.nir.export(model, xs[0])
    kinds = [type(graph.nodes[str(i)]).__name__ for i in range(6)]
    assert kinds == ["Conv2d", "LIF", "SumPool2d", "Flatten", "Linear", "CubaLIF"]
    assert graph.nodes["1"].tau.shape == (3, 4, 4)  # NIR neurons are per sample position
    loaded = tt.nir.load(graph)
    assert loaded.net[1].dim == -3 and loaded.net[1].num_neurons == 3
    for mode in ("step", "sequence"):
        spikes, ys = spikes_and_outputs(model, "1", xs, mode)
        spikes_loaded, ys_loaded = spikes_and_outputs(loaded, "net.1", xs, mode)
        assert spikes.any() and torch.equal(spikes_loaded, spikes)
        torch.testing.assert_close(ys_loaded, ys)


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(4, 4, 3, padding=1, groups=4),
        nn.Conv2d(4, 4, (3, 5)),
        nn.Conv1d(4, 2, 3, groups=2),
    ],
)
def test_grouped_and_non_square_convolutions_round_trip_through_a_file(conv, tmp_path):
    # nir 1.0 infers these shapes wrongly: the export writes the traced ones, the load reads
    # the file past nir's check
    torch.manual_seed(0)
    spatial = (8, 8) if isinstance(conv, nn.Conv2d) else (8,)
    model = nn.Sequential(
        tt.nn.TimeDistributed(conv),
        tt.snn.LIF(conv.out_channels, threshold=0.3, dim=-1 - len(spatial), reset="zero"),
    )
    xs = drive((2, 4, *spatial), seed=5)
    path = tmp_path / "conv.nir"
    nir.write(path, tt.nir.export(model, xs[0]))
    loaded = tt.nir.load(path)
    assert loaded.net[0].module.groups == conv.groups
    for mode in ("step", "sequence"):
        spikes, _ = spikes_and_outputs(model, "1", xs, mode)
        spikes_loaded, _ = spikes_and_outputs(loaded, "net.1", xs, mode)
        assert spikes.any() and torch.equal(spikes_loaded, spikes)


def test_a_bias_at_or_above_the_threshold_round_trips_as_a_biased_layer():
    # mem + bias > threshold is NIR's v > threshold - bias, which may be <= 0 (fires from rest)
    torch.manual_seed(0)
    bias = torch.tensor([0.0, 0.5, 1.0, 1.5])
    model = nn.Sequential(
        nn.Linear(3, 4),
        tt.snn.LIB(4, threshold=1.0, bias=bias, reset="zero"),
        nn.Linear(4, 4),
        tt.snn.SLIB(4, threshold=0.5, bias=bias, reset="zero"),
    )
    xs = drive((2, 3), seed=2) - 1.0
    graph = tt.nir.export(model, xs[0])
    assert (graph.nodes["1"].v_threshold <= 0).any() and (graph.nodes["3"].v_threshold <= 0).any()
    loaded = tt.nir.load(graph)
    assert [type(m) for m in loaded.net] == [nn.Linear, tt.snn.LIB, nn.Linear, tt.snn.SLIB]
    for mode in ("step", "sequence"):
        spikes, ys = spikes_and_outputs(model, "1", xs, mode)
        spikes_loaded, ys_loaded = spikes_and_outputs(loaded, "net.1", xs, mode)
        assert torch.equal(spikes_loaded, spikes)
        torch.testing.assert_close(ys_loaded, ys)


class _DoubledLI(tt.snn.LI):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(2 * x)


def test_a_subclass_with_its_own_step_has_no_nir_node():
    model = nn.Sequential(nn.Linear(3, 4), _DoubledLI(4))
    with pytest.raises(ValueError, match=r"'1' \(_DoubledLI\) redefines the step"):
        tt.nir.export(model, torch.zeros(1, 3))


def test_leaky_kinds_and_dt():
    model = nn.Sequential(tt.snn.LIEMA(2, beta=0.75), tt.snn.Decay(2, beta=0.5))
    graph = tt.nir.export(model, torch.zeros(1, 2), dt=1e-3)
    ema, decay = graph.nodes["0"], graph.nodes["1"]
    np.testing.assert_allclose(ema.tau, 4e-3, rtol=1e-6)  # dt / (1 - beta)
    np.testing.assert_allclose(ema.r, 1.0, rtol=1e-6)  # the EMA gain 1 - beta = dt / tau
    np.testing.assert_allclose(decay.tau, 2e-3, rtol=1e-6)
    np.testing.assert_allclose(decay.r, 2.0, rtol=1e-6)  # unit gain: r = tau / dt
    loaded = tt.nir.load(graph, dt=1e-3)
    assert [type(m) for m in loaded.net] == [tt.snn.LIEMA, tt.snn.LI]
    torch.testing.assert_close(loaded.net[0].beta, torch.full((2,), 0.75))
    with pytest.raises(ValueError, match=r"tau.*exceed dt"):
        tt.nir.load(graph, dt=1e-2)


def test_exporting_a_subtracting_layer_needs_approximate_reset():
    model = nn.Sequential(nn.Linear(2, 3), tt.snn.LIF(3))
    with pytest.raises(ValueError, match=r"'1' \(LIF\) has reset='subtract'.*approximate_reset"):
        tt.nir.export(model, torch.zeros(1, 2))
    graph = tt.nir.export(model, torch.zeros(1, 2), approximate_reset=True)
    assert isinstance(graph.nodes["1"], nir.LIF)
    model = nn.Sequential(tt.snn.LIB(3, reset="none"))
    with pytest.raises(ValueError, match="reset='none'"):
        tt.nir.export(model, torch.zeros(1, 3), approximate_reset=True)


def test_what_does_not_map_is_named():
    sample = torch.zeros(1, 2)
    with pytest.raises(ValueError, match=r"'1' \(ReLU\) has no NIR node; what maps: nn.Linear"):
        tt.nir.export(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), sample)
    with pytest.raises(ValueError, match=r"'0' \(LIT\) has no NIR node"):
        tt.nir.export(nn.Sequential(tt.snn.LIT(2, reset="zero")), sample)
    smooth = tt.snn.LIB(2, spike_fn=tt.functional.sigmoid4x, reset="zero")
    with pytest.raises(ValueError, match="hard spikes"):
        tt.nir.export(nn.Sequential(smooth), sample)

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.li = tt.snn.LI(2)

        def forward(self, x):
            return self.li(self.fc(x) + x)

    with pytest.raises(ValueError, match=r"'li' \(LI\) does not receive the output of 'fc'"):
        tt.nir.export(Residual(), sample)


class _InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.lif = nn.Linear(2, 2), tt.snn.LIF(2, reset="zero")

    def forward(self, x):
        h = self.fc(x)
        h *= 3.0  # the graph would leave this out: the loaded model would fire less
        return self.lif(h)


class _ScaledLinear(nn.Linear):
    def forward(self, x):
        return 3.0 * super().forward(x)


def _hooked() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), tt.snn.LIF(2, reset="zero"))
    model[0].register_forward_hook(lambda m, a, y: 3.0 * y)
    return model


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_InPlace, r"'lif' \(LIF\) receives the output of 'fc' changed in place"),
        (_hooked, r"'0' \(Linear\) has forward hooks"),
        (
            lambda: nn.Sequential(_ScaledLinear(2, 2), tt.snn.LIF(2, reset="zero")),
            r"'0' \(_ScaledLinear\) redefines the forward of Linear",
        ),
    ],
    ids=["in-place", "hook", "subclass"],
)
def test_what_the_graph_could_not_describe_is_refused(make, message):
    with pytest.raises(ValueError, match=message):
        tt.nir.export(make(), torch.zeros(1, 2))


def test_a_linear_layer_on_samples_of_more_than_one_dimension_is_refused_clearly():
    model = nn.Sequential(nn.Linear(4, 2), tt.snn.LIF(2, reset="zero"))
    with pytest.raises(ValueError, match=r"'0' \(Linear\) takes samples of shape \(3, 4\)"):
        tt.nir.export(model, torch.zeros(1, 3, 4))


def test_a_refused_export_leaves_batch_norm_statistics_alone():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), tt.snn.LIF(3, reset="zero"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"'1' \(BatchNorm1d\) has no NIR node"):
        tt.nir.export(model, torch.rand(4, 2))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_export_leaves_the_states_alone():
    model = Net()
    model(torch.rand(7, 3))  # live states of batch 7
    before = {k: v.clone() for k, v in model.save_states().items()}
    tt.nir.export(model, torch.zeros(2, 3))
    after = model.save_states()
    assert after.keys() == before.keys()
    for key in before:
        assert torch.equal(after[key], before[key])
    assert all(not m._forward_hooks for m in model.modules())


def test_graphs_that_do_not_load_are_named():
    branch = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([2])),
            "a": nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
            "b": nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")],
    )
    with pytest.raises(ValueError, match=r"not a chain: node 'input' has 2 edges out"):
        tt.nir.load(branch)
    affine = {n: nir.Affine(weight=np.eye(2), bias=np.zeros(2)) for n in "ab"}
    ends = {"input": nir.Input(input_type=np.array([2])), "output": nir.Output(np.array([2]))}
    edges = [("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")]  # a loop through a
    loop = nir.NIRGraph(nodes={**ends, **affine}, edges=edges)
    with pytest.raises(ValueError, match=r"node 'a' has edges in from \['input', 'b'\]"):
        tt.nir.load(loop)
    dangling = [("input", "a"), ("a", "zz"), ("zz", "output")]  # nir checks this only with
    dangling = nir.NIRGraph(nodes={**ends, **affine}, edges=dangling, type_check=False)  # types
    with pytest.raises(ValueError, match=r"names 'zz', which is not a node of the graph"):
        tt.nir.load(dangling)
    threshold = nir.NIRGraph.from_list(nir.Threshold(threshold=np.ones(2)))
    with pytest.raises(ValueError, match="Threshold node, which tracetorch does not load"):
        tt.nir.load(threshold)
    leak = nir.LI(tau=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.ones(2))
    with pytest.raises(ValueError, match="nonzero v_leak"):
        tt.nir.load(nir.NIRGraph.from_list(leak))


def test_importing_tracetorch_does_not_import_nir():
    code = (
        "import sys, tracetorch as tt\n"
        "assert 'nir' not in sys.modules and 'tracetorch.nir' not in sys.modules\n"
        "assert tt.nir.export is not None and 'nir' in tt.__all__\n"
        "assert 'nir' not in sys.modules  # the module is loaded, the package not yet\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)  # makes "import nir" raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'tracetorch\[nir\]'"):
        tt.nir.export(nn.Sequential(tt.snn.LI(2)), torch.zeros(1, 2))


def test_snntorch_reads_an_exported_graph():
    # snnTorch's importer handles Affine and zero-reset LIF with one threshold per layer
    snntorch_nir = pytest.importorskip("snntorch.import_nir")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(3, 6), tt.snn.LIF(6, beta=0.8, threshold=0.7, reset="zero"), nn.Linear(6, 2)
    )
    xs = drive((5, 3))
    other = snntorch_nir.import_from_nir(tt.nir.export(model, xs[0]))
    outs, state = [], None
    for x in xs:  # a nirtorch executor returns (output, state)
        out = other(x) if state is None else other(x, state)
        if isinstance(out, tuple):
            out, state = out
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs), tt.run(model, xs))
