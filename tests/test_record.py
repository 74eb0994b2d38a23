"""tt.record: what it collects, in step and sequence mode, and what it leaves behind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tracetorch as tt


class Net(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, 6),
            tt.snn.LIF(6, beta=0.8, threshold=0.5),
            nn.Linear(6, 4),
            tt.snn.SLIB(4, spike_fn=tt.functional.sigmoid4x, reset="zero"),
            tt.snn.LI(4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_net() -> Net:
    torch.manual_seed(0)
    return Net()


def inputs(steps: int = 12) -> torch.Tensor:
    return 2 * torch.rand(steps, 5, 3, generator=torch.Generator().manual_seed(1))


def no_hooks_left(model: nn.Module) -> bool:
    return all(
        not sub._forward_hooks and "forward_sequence" not in sub.__dict__ for sub in model.modules()
    )


def recorded(mode: str, **kwargs) -> dict[str, torch.Tensor]:
    model = make_net()
    with tt.record(model, **kwargs) as rec:
        tt.run(model, inputs(), mode=mode)
    assert no_hooks_left(model)
    return dict(rec)


def test_step_and_sequence_mode_record_the_same():
    kwargs = {"outputs": ["net.0", "net.1", "net.3", "net.4"]}
    step, sequence = recorded("step", **kwargs), recorded("sequence", **kwargs)
    assert list(sequence) == list(step)
    for key in step:
        assert step[key].shape[0] == 12, key
        torch.testing.assert_close(sequence[key], step[key], rtol=0, atol=1e-6, msg=key)


def test_keys_follow_save_states_and_module_paths():
    model = make_net()
    xs = inputs()
    with tt.record(model, outputs=True) as rec:
        ys = tt.run(model, xs)
    state_keys = sorted(model.save_states())
    assert state_keys == ["net.1.mem", "net.3.mem", "net.3.syn", "net.4.mem"]
    assert sorted(rec) == sorted([*state_keys, "net.1", "net.3", "net.4"])
    torch.testing.assert_close(rec["net.4"], ys)
    torch.testing.assert_close(rec["net.4.mem"], ys)  # LI returns its membrane
    final = model.save_states()
    for key in state_keys:
        torch.testing.assert_close(rec[key][-1], final[key])
    assert rec["net.1.mem"].shape == (12, 5, 6)


def test_chosen_keys_and_layer_paths():
    model = make_net()
    with tt.record(model, states=["net.1.mem", "net.3"], outputs=["net.2"]) as rec:
        tt.run(model, inputs())
    assert sorted(rec) == ["net.1.mem", "net.2", "net.3.mem", "net.3.syn"]


def test_unknown_keys_are_key_errors_that_list_the_choices():
    model = make_net()
    with (
        pytest.raises(KeyError, match=r"'net\.1\.men'.*net\.1\.mem"),
        tt.record(model, states=["net.1.men"]),
    ):
        pass
    with (
        pytest.raises(KeyError, match=r"'net\.7' is not a module path"),
        tt.record(model, outputs=["net.7"]),
    ):
        pass
    with pytest.raises(TypeError, match="list of keys"), tt.record(model, states="net.1.mem"):
        pass
    assert no_hooks_left(model)


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_every_and_last_cap_the_steps_kept(mode):
    full = recorded(mode, outputs=True)
    for kwargs, index in [
        ({"every": 3}, slice(0, None, 3)),
        ({"last": 4}, slice(-4, None)),
    ]:
        capped = recorded(mode, outputs=True, **kwargs)
        for key in full:
            torch.testing.assert_close(capped[key], full[key][index], rtol=0, atol=1e-6)
    both = recorded(mode, outputs=True, every=2, last=3)
    torch.testing.assert_close(both["net.1"], full["net.1"][::2][-3:], rtol=0, atol=1e-6)


def test_bad_caps_are_value_errors():
    with pytest.raises(ValueError, match="every"), tt.record(make_net(), every=0):
        pass
    with pytest.raises(ValueError, match="last"), tt.record(make_net(), last=2.5):
        pass


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_an_exception_removes_every_hook(mode):
    model = make_net()
    with pytest.raises(RuntimeError, match="boom"), tt.record(model, outputs=True):
        assert model.net[1]._forward_hooks  # installed while recording
        tt.run(model, inputs(), mode=mode)
        raise RuntimeError("boom")
    assert no_hooks_left(model)
    bad = torch.rand(4, 5, 7)  # wrong feature size: the model raises inside sequence mode
    with pytest.raises(RuntimeError), tt.record(model, outputs=True):
        tt.run(model, bad, mode=mode)
    assert no_hooks_left(model)
    assert all("forward" not in sub.__dict__ for sub in model.modules())


def test_detached_by_default_and_graph_kept_on_request():
    model = make_net()
    xs = inputs().requires_grad_()
    with tt.record(model, outputs=["net.1"]) as rec:
        tt.run(model, xs)
    assert not rec["net.1.mem"].requires_grad and not rec["net.1"].requires_grad
    tt.zero_states(model)
    with tt.record(model, states=["net.1.mem"], detach=False) as rec:
        tt.run(model, xs, mode="sequence")
    mem = rec["net.1.mem"]
    assert mem.requires_grad
    mem.pow(2).mean().backward()
    assert xs.grad is not None and xs.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_outputs_of_a_plain_module(mode):
    model = make_net()
    xs = inputs()
    with tt.record(model, states=False, outputs=["net.0"]) as rec:
        tt.run(model, xs, mode=mode)
    assert list(rec) == ["net.0"]
    torch.testing.assert_close(rec["net.0"], model.net[0](xs).detach())


def test_time_distributed_module_path_in_sequence_mode():
    torch.manual_seed(0)
    net = nn.Sequential(tt.nn.TimeDistributed(nn.Conv2d(1, 2, 3, padding=1)), tt.snn.LIF(2, dim=-3))
    xs = torch.rand(6, 2, 1, 5, 5)
    records = {}
    for mode in ("step", "sequence"):
        tt.zero_states(net)
        with tt.record(net, outputs=["0.module", "0", "1"]) as rec:
            tt.run(net, xs, mode=mode)
        records[mode] = dict(rec)
    assert records["sequence"]["0.module"].shape == (6, 2, 2, 5, 5)
    for key, value in records["step"].items():
        torch.testing.assert_close(records["sequence"][key], value, msg=key)


def test_a_single_layer_in_sequence_mode_records_its_states():
    layer = tt.snn.ALIF(3, threshold=0.3)
    xs = torch.rand(9, 2, 3)
    with tt.record(layer, outputs=True) as rec:
        spikes = tt.run(layer, xs, mode="sequence")
    assert sorted(rec) == ["", "a", "mem"]
    assert torch.equal(rec[""], spikes) and rec["a"].shape == (9, 2, 3)


def test_sequence_fast_path_is_back_after_the_block():
    layer = tt.snn.LIF(3)
    with tt.record(layer):
        assert "forward_sequence" in layer.__dict__  # the step loop that records states
        tt.run(layer, torch.rand(4, 1, 3), mode="sequence")
    assert "forward_sequence" not in layer.__dict__
    assert layer.forward_sequence.__func__ is type(layer).forward_sequence


def test_recording_twice_at_once_is_refused():
    model = make_net()
    with (
        tt.record(model),
        pytest.raises(RuntimeError, match="already being recorded"),
        tt.record(model),
    ):
        pass
    assert no_hooks_left(model)


def test_reading_before_any_step():
    model = make_net()
    with tt.record(model, outputs=["net.0"]) as rec:
        assert len(rec) == 0 and list(rec) == []
        with pytest.raises(KeyError, match="no step yet"):
            rec["net.0"]
        model(inputs()[0])
        assert rec["net.0"].shape == (1, 5, 6)
    with pytest.raises(KeyError, match="was not recorded"):
        rec["net.2"]
    assert "net.0" in repr(rec)


def test_plots_take_a_recording_directly():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = make_net()
    with tt.record(model, outputs=["net.1"]) as rec:
        tt.run(model, inputs(), mode="sequence")
    ax = tt.plot.raster(rec["net.1"])
    spikes = int(rec["net.1"][:, 0].count_nonzero())
    assert len(ax.collections[0].get_offsets()) == spikes
    ax = tt.plot.traces(rec["net.1.mem"], threshold=0.5, spikes=rec["net.1"])
    assert len(ax.lines) == 6 + 1
    tt.plot.rates(rec["net.1"])
    plt.close("all")


class OwnSequencePair(tt.Layer):
    """A layer built from two LI layers, with a forward_sequence that runs each of them."""

    def __init__(self) -> None:
        super().__init__(4)
        self.a, self.b = tt.snn.LI(4), tt.snn.LI(4, beta=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))

    def forward_sequence(self, xs: torch.Tensor) -> torch.Tensor:
        return self.b.forward_sequence(self.a.forward_sequence(xs))


def test_layers_inside_a_layer_with_its_own_sequence_path_are_recorded_step_by_step():
    net = nn.Sequential(nn.Linear(3, 4), OwnSequencePair())
    xs = torch.randn(6, 2, 3)
    recorded = {}
    for mode in ("step", "sequence"):
        tt.zero_states(net)
        with tt.record(net, states=True, outputs=True) as rec:
            tt.run(net, xs, mode=mode)
        recorded[mode] = dict(rec.items())
    assert recorded["sequence"].keys() == recorded["step"].keys() >= {"1.a.mem", "1.b"}
    for key, value in recorded["step"].items():
        torch.testing.assert_close(recorded["sequence"][key], value)
    assert "forward_sequence" not in net[1].__dict__  # its own path is back


def both_modes(model: nn.Module, xs: torch.Tensor, **kwargs) -> dict[str, dict[str, torch.Tensor]]:
    """What ``tt.record(model, **kwargs)`` holds after a run of ``model`` in each mode."""
    records = {}
    for mode in ("step", "sequence"):
        tt.zero_states(model)
        with tt.record(model, **kwargs) as rec:
            tt.run(model, xs, mode=mode)
        assert no_hooks_left(model)
        records[mode] = dict(rec)
    return records


def assert_same(records: dict[str, dict[str, torch.Tensor]], steps: int) -> None:
    """Both modes recorded the same keys and values, each key ``steps`` steps."""
    assert list(records["sequence"]) == list(records["step"])
    for key, value in records["step"].items():
        assert value.shape[0] == steps, key
        torch.testing.assert_close(records["sequence"][key], value, msg=key)


def test_modules_deep_inside_a_time_distributed_are_split_into_steps():
    # inside the wrapper they see time merged into the batch: [T * B, ...] in sequence mode
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
    net = nn.Sequential(tt.nn.TimeDistributed(conv), tt.snn.LIF(2, dim=-3))
    records = both_modes(net, torch.rand(6, 3, 1, 4, 4), outputs=["0.module.0", "0.module.1"])
    assert records["sequence"]["0.module.0"].shape == (6, 3, 2, 4, 4)
    assert_same(records, 6)


def test_a_stateless_part_of_the_model_is_recorded_by_steps():
    # the recorded module holds no layer that sequence mode switches; the model around it does
    torch.manual_seed(0)
    net = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.Tanh()), tt.snn.LIF(4))
    xs = torch.rand(5, 2, 3)
    records = {}
    for mode in ("step", "sequence"):
        tt.zero_states(net)
        with tt.record(net[0], outputs=["", "0"]) as rec:
            tt.run(net, xs, mode=mode)
        records[mode] = dict(rec)
    assert records["sequence"][""].shape == (5, 2, 4)
    assert_same(records, 5)


class SharedTwice(nn.Module):
    """One stateless module called twice per step: step mode records a0, b0, a1, b1, ..."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.lif = nn.Linear(3, 3), tt.snn.LIF(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.fc(self.fc(x)))


def test_a_module_called_twice_per_step_is_recorded_in_step_order():
    torch.manual_seed(0)
    records = both_modes(SharedTwice(), torch.rand(4, 2, 3), states=False, outputs=["fc"])
    assert_same(records, 8)


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_a_checkpoint_replaying_its_segments_records_nothing_twice(mode):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), tt.snn.LIF(4), nn.Linear(4, 2))
    xs = torch.rand(8, 2, 3)
    with tt.record(net, outputs=["0"], detach=False) as rec:
        ys = tt.checkpoint(net, xs, segment=4, mode=mode)
        expected = {key: value.detach().clone() for key, value in rec.items()}
        (ys.sum() + rec["1.mem"].square().sum()).backward()  # the segments are replayed here
    assert {key: value.shape[0] for key, value in rec.items()} == {"1.mem": 8, "0": 8}
    for key, value in rec.items():
        torch.testing.assert_close(value.detach(), expected[key])


class Gained(tt.Layer):
    """A layer taking a gain beside its input, in both of its paths."""

    def __init__(self) -> None:
        super().__init__(3)
        self._initialize_state("mem")

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        self._ensure_states(x)
        self.mem = 0.5 * self.mem + gain * x
        return self.mem

    def forward_sequence(self, xs: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        return torch.stack([Gained.forward(self, x, gain) for x in xs])


class GainedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.g = Gained()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(x, gain=2.0)


def test_states_of_a_layer_given_more_arguments_are_refused_clearly_in_sequence_mode():
    net, xs = GainedNet(), torch.rand(4, 2, 3)
    with tt.record(net, states=False, outputs=["g"]) as rec:  # outputs only: recorded
        tt.run(net, xs, mode="sequence")
    assert rec["g"].shape == (4, 2, 3)
    net.g.zero_states()
    refused = pytest.raises(TypeError, match=r"record: Gained at 'g' is given arguments besides")
    with refused, tt.record(net):
        tt.run(net, xs, mode="sequence")
    assert no_hooks_left(net) and net.g.mem is None


def test_recording_inside_vmap_is_refused_clearly():
    # vmap's batched tensors cannot leave the transform: reading them failed inside torch
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), tt.snn.LIF(3))
    x = torch.rand(2, 4)
    _, states = tt.functional_call(net, {}, x)
    batched = {key: torch.stack([value, value + 0.1]) for key, value in states.items()}
    refused = pytest.raises(RuntimeError, match=r"record: '1.mem' is computed inside .*vmap")
    with refused, tt.record(net):
        torch.func.vmap(lambda s: tt.functional_call(net, s, x))(batched)
    assert no_hooks_left(net) and net[1].mem is None
