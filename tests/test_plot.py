"""The plotting helpers: what they draw, what they accept, and matplotlib staying optional."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import tracetorch as tt

matplotlib = pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is missing")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from tracetorch import plot  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _offsets(collection) -> list[tuple[float, float]]:
    return [tuple(point) for point in collection.get_offsets().tolist()]


# -- raster -----------------------------------------------------------------------------------


def test_raster_draws_a_tick_per_spike_and_returns_the_axes():
    spikes = torch.zeros(10, 3)
    spikes[2, 0] = spikes[5, 2] = spikes[9, 2] = 1.0
    ax = plot.raster(spikes)
    assert isinstance(ax, Axes)
    assert sorted(_offsets(ax.collections[0])) == [(2, 0), (5, 2), (9, 2)]
    assert ax.get_xlabel() == "timestep" and ax.get_ylabel() == "neuron"
    assert ax.get_xlim() == (-0.5, 9.5) and ax.get_ylim() == (-0.5, 2.5)


def test_raster_picks_one_sequence_of_a_batch_and_flattens_the_features():
    spikes = torch.zeros(4, 2, 2, 3)  # [T, B, C, W]: six neurons
    spikes[1, 0, 1, 2] = 1.0  # sequence 0, neuron 1 * 3 + 2 = 5
    spikes[3, 1, 0, 0] = 1.0  # sequence 1, neuron 0
    assert _offsets(plot.raster(spikes).collections[0]) == [(1, 5)]
    assert _offsets(plot.raster(spikes, batch=1).collections[0]) == [(3, 0)]
    assert _offsets(plot.raster(spikes, batch=-1).collections[0]) == [(3, 0)]
    with pytest.raises(ValueError, match=r"raster: expected batch in \[-2, 1\].*got 2"):
        plot.raster(spikes, batch=2)


def test_raster_draws_negative_spikes_apart_and_passes_options_on():
    spikes = torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 0.0]])
    ax = plot.raster(spikes, s=40, color="C0", negative_color="C1")
    positive, negative = ax.collections
    assert _offsets(positive) == [(0, 0)] and _offsets(negative) == [(1, 1)]
    assert positive.get_sizes().tolist() == [40]
    assert matplotlib.colors.same_color(negative.get_facecolor()[0], "C1")
    assert len(plot.raster(spikes.abs()).collections) == 1  # no negative spikes, no second set


def test_raster_draws_into_a_given_axes():
    _, (left, right) = plt.subplots(1, 2)
    assert plot.raster(torch.ones(3, 2), ax=right) is right
    assert len(right.collections) == 1 and not left.collections
    assert len(plt.get_fignums()) == 1  # no new figure


def test_a_recording_that_requires_grad_or_is_a_list_of_steps_is_accepted():
    lif = tt.snn.LIF(3, beta=0.9, threshold=0.5)
    steps = [lif(torch.full((1, 3), 0.4, requires_grad=True)) for _ in range(6)]
    recording = torch.stack(steps)
    assert recording.requires_grad
    from_tensor = _offsets(plot.raster(recording).collections[0])
    from_list = _offsets(plot.raster(steps).collections[0])
    assert from_tensor == from_list and len(from_tensor) > 0
    plot.traces(recording, threshold=lif.threshold, spikes=recording)
    plot.rates(steps)


# -- traces -----------------------------------------------------------------------------------


def test_traces_draw_one_line_per_neuron_with_the_threshold():
    torch.manual_seed(0)
    mem = torch.rand(20, 2, 3)
    ax = plot.traces(mem, threshold=0.7)
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 4  # three neurons of sequence 0, one threshold
    for n in range(3):
        assert ax.lines[n].get_ydata().tolist() == pytest.approx(mem[:, 0, n].tolist())
    assert list(ax.lines[3].get_ydata()) == [0.7, 0.7]
    assert plot.traces(mem, batch=1).lines[2].get_ydata().tolist() == pytest.approx(
        mem[:, 1, 2].tolist()
    )


def test_traces_take_one_threshold_per_neuron_in_its_colour():
    mem = torch.rand(5, 3)
    threshold = torch.nn.Parameter(torch.tensor([0.2, 0.4, 0.6]))
    ax = plot.traces(mem, threshold=threshold)
    assert [line.get_ydata()[0] for line in ax.lines[3:]] == pytest.approx([0.2, 0.4, 0.6])
    for trace, level in zip(ax.lines[:3], ax.lines[3:], strict=True):
        assert trace.get_color() == level.get_color()
    with pytest.raises(ValueError, match=r"traces: expected one threshold or one per neuron \(3\)"):
        plot.traces(mem, threshold=torch.ones(2))


def test_traces_mark_the_spikes_on_the_membrane():
    mem = torch.tensor([[0.1, 0.2], [0.9, 0.3], [0.2, 0.8]])
    spikes = (mem > 0.5).float()
    ax = plot.traces(mem, spikes=spikes)
    points = sorted(_offsets(ax.collections[0]))
    assert [t for t, _ in points] == [1, 2]
    assert [y for _, y in points] == pytest.approx([0.9, 0.8])
    with pytest.raises(ValueError, match=r"traces: expected spikes of the shape of mem \(3, 2\)"):
        plot.traces(mem, spikes=spikes[:2])


# -- rates ------------------------------------------------------------------------------------


def test_rates_draw_the_firing_rate_of_every_neuron():
    spikes = torch.zeros(10, 2, 3)
    spikes[:5, 0, 0] = 1.0  # sequence 0: neuron 0 at rate 0.5
    spikes[:, 1, 2] = 1.0  # sequence 1: neuron 2 at rate 1
    heights = [bar.get_height() for bar in plot.rates(spikes).patches]
    assert heights == pytest.approx([0.25, 0.0, 0.5])  # averaged over the batch
    one = [bar.get_height() for bar in plot.rates(spikes, batch=1).patches]
    assert one == pytest.approx([0.0, 0.0, 1.0])
    assert len(plot.rates(torch.ones(4)).patches) == 1  # [T]: a single neuron


@pytest.mark.parametrize("function", [plot.raster, plot.traces, plot.rates])
def test_bad_recordings_are_rejected_naming_the_function(function):
    name = function.__name__
    with pytest.raises(ValueError, match=rf"{name}: expected \w+ of shape \[T, \.\.\.\]"):
        function(torch.tensor(1.0))
    with pytest.raises(TypeError, match=rf"{name}: expected \w+ to be a \[T, \.\.\.\] tensor"):
        function("spikes")
    with pytest.raises(ValueError, match=rf"{name}: expected at least one timestep"):
        function([])
    with pytest.raises(ValueError, match=rf"{name}: expected at least one timestep, got \w+ of"):
        function(torch.zeros(0, 3))


def test_a_refused_call_opens_no_figure_and_draws_nothing():
    figures = plt.get_fignums()
    for call in (
        lambda: plot.raster(torch.zeros(5, 2, 3), batch=9),
        lambda: plot.rates("spikes"),
        lambda: plot.traces(torch.zeros(10, 3), threshold=torch.ones(2)),
    ):
        with pytest.raises((ValueError, TypeError)):
            call()
    assert plt.get_fignums() == figures
    ax = plt.subplots()[1]
    with pytest.raises(ValueError, match="expected spikes of the shape of mem"):
        plot.traces(torch.zeros(10, 3), spikes=torch.zeros(10, 4), ax=ax)
    assert not ax.lines and not ax.collections


# -- matplotlib stays optional ----------------------------------------------------------------


@pytest.mark.parametrize("function", [plot.raster, plot.traces, plot.rates])
@pytest.mark.parametrize("with_axes", [False, True])
def test_missing_matplotlib_names_the_extra(monkeypatch, function, with_axes):
    ax = plt.subplots()[1] if with_axes else None
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError) as caught:
        function(torch.ones(3, 2), ax=ax)
    assert str(caught.value) == "tt.plot needs matplotlib: pip install 'tracetorch[plot]'"


def test_importing_tracetorch_does_not_import_matplotlib():
    code = textwrap.dedent(
        """
        import sys
        import tracetorch as tt

        def loaded():
            return sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib")

        assert not loaded(), loaded()
        tt.encode.rate, tt.loss.sparsity  # the eager submodules
        assert tt.plot.raster is not None  # the lazy one: the module, not matplotlib yet
        assert "tracetorch.plot" in sys.modules and not loaded(), loaded()
        try:
            tt.not_a_name
        except AttributeError as error:
            assert "not_a_name" in str(error)
        else:
            raise AssertionError("tt.not_a_name did not raise")
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok"


def test_tt_plot_is_the_plot_module():
    assert tt.plot is plot and "plot" in tt.__all__
