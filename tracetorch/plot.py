"""Quick pictures of recorded activity: spike rasters, membrane traces, firing rates.

Each function takes a time-first recording — a ``[T, ...]`` tensor such as
``torch.stack(outputs)``, or the list of per-step tensors itself — draws it on a matplotlib
``Axes`` and returns that ``Axes``. Recordings may require grad or live on an accelerator:
they are detached and copied to the CPU first. Pass ``ax`` to draw into a figure of your
own; without it a new figure is made with ``matplotlib.pyplot.subplots()``.

matplotlib is an optional dependency (``pip install 'tracetorch[plot]'``); it is imported
when a function of this module is first called, never by ``import tracetorch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["raster", "rates", "traces"]

_MISSING = "tt.plot needs matplotlib: pip install 'tracetorch[plot]'"


def _axes(ax: Axes | None) -> Axes:
    """``ax``, or the axes of a new figure; the one place where matplotlib is imported."""
    try:
        import matplotlib  # noqa: F401 (an Axes passed in needs it too)

        if ax is None:
            import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(_MISSING) from error
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _recording(name: str, data: Tensor | Sequence[Tensor], what: str) -> Tensor:
    """``data`` as a detached float64 CPU tensor ``[T, ...]``; a list of steps is stacked."""
    if not isinstance(data, Tensor):
        if not isinstance(data, Sequence) or not all(isinstance(x, Tensor) for x in data):
            raise TypeError(
                f"{name}: expected {what} to be a [T, ...] tensor or a list of per-step "
                f"tensors, got {type(data).__name__}"
            )
        if not data:
            raise ValueError(f"{name}: expected at least one timestep, got an empty {what} list")
        data = torch.stack([x.detach() for x in data])
    data = data.detach().cpu()
    if data.dim() == 0:
        raise ValueError(
            f"{name}: expected {what} of shape [T, ...] (time first), got a 0-d tensor"
        )
    if data.shape[0] == 0:
        raise ValueError(
            f"{name}: expected at least one timestep, got {what} of shape {tuple(data.shape)}"
        )
    return data.double()  # any dtype (bool, bfloat16, ...) that matplotlib cannot read


def _neurons(name: str, data: Tensor, what: str, batch: int | None) -> Tensor:
    """``[T]`` -> ``[T, 1]``, ``[T, N]`` as is, ``[T, B, *]`` -> ``[T, N]`` at ``batch``.

    With ``batch=None`` the batch is kept (``[T, B, N]``) for the caller to reduce.
    """
    if data.dim() == 1:
        return data.unsqueeze(1)
    if data.dim() == 2:
        return data
    if batch is None:
        return data.flatten(2)
    size = data.shape[1]
    if not -size <= batch < size:
        raise ValueError(
            f"{name}: expected batch in [{-size}, {size - 1}] for {what} of shape "
            f"{tuple(data.shape)}, got {batch}"
        )
    return data[:, batch].flatten(1)


def raster(
    spikes: Tensor | Sequence[Tensor],
    ax: Axes | None = None,
    *,
    batch: int = 0,
    color: Any = "k",
    negative_color: Any = "C3",
    **kwargs: Any,
) -> Axes:
    """Spike raster: one row per neuron, a tick for every spike.

    Any non-zero value counts as a spike; negative ones (ternary layers) are drawn in
    ``negative_color``.

    Args:
        spikes: Recorded spikes ``[T]``, ``[T, N]`` or ``[T, B, *]`` (then the sequence
            ``batch`` is drawn and its features flattened into ``N`` rows).
        ax: Axes to draw on; ``None`` makes a new figure.
        batch: The sequence drawn from a batched recording.
        color: Colour of the positive spikes.
        negative_color: Colour of the negative spikes.
        **kwargs: Passed on to ``Axes.scatter`` (for example ``s`` for the tick size).

    Returns:
        The ``Axes``; the spikes are its ``collections``.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import torch
        >>> from tracetorch import plot
        >>> spikes = torch.zeros(20, 4, 3)  # [T, B, N]
        >>> spikes[::5, 0, 1] = 1.0
        >>> ax = plot.raster(spikes)
        >>> ax.collections[0].get_offsets().tolist()  # (timestep, neuron) of every spike
        [[0.0, 1.0], [5.0, 1.0], [10.0, 1.0], [15.0, 1.0]]
    """
    spikes = _neurons("raster", _recording("raster", spikes, "spikes"), "spikes", batch)
    ax = _axes(ax)  # after the checks: a refused call leaves no empty figure behind
    steps, neurons = spikes.shape
    kwargs.setdefault("marker", "|")
    for sign, tint in ((1, color), (-1, negative_color)):
        t, neuron = torch.nonzero(spikes * sign > 0, as_tuple=True)
        if sign > 0 or len(t):
            ax.scatter(t.numpy(), neuron.numpy(), color=tint, **kwargs)
    ax.set(xlabel="timestep", ylabel="neuron", xlim=(-0.5, steps - 0.5), ylim=(-0.5, neurons - 0.5))
    ax.locator_params(axis="y", integer=True)  # rows are neurons: no tick between two
    return ax


def traces(
    mem: Tensor | Sequence[Tensor],
    threshold: float | Tensor | None = None,
    spikes: Tensor | Sequence[Tensor] | None = None,
    ax: Axes | None = None,
    *,
    batch: int = 0,
) -> Axes:
    """Membrane traces: one line per neuron over time, with the threshold and the spikes.

    Draw a few neurons at a time (``traces(mem[:, 0, :5])``): every neuron is a line.

    Args:
        mem: Recorded membrane ``[T]``, ``[T, N]`` or ``[T, B, *]`` (then the sequence
            ``batch`` is drawn, its features flattened into ``N`` lines).
        threshold: Drawn as a dashed line: one value, or one per neuron (a tensor of ``N``
            values, such as a layer's threshold parameter).
        spikes: Spikes recorded with ``mem``, of its shape: each is marked with a dot on its
            neuron's trace, at the membrane recorded at that step (after the reset, for a
            layer that resets).
        ax: Axes to draw on; ``None`` makes a new figure.
        batch: The sequence drawn from a batched recording.

    Returns:
        The ``Axes``; the traces are its ``lines`` (first ``N``, then the thresholds), the
        spike dots its ``collections``.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import torch
        >>> from tracetorch import plot
        >>> mem = torch.rand(50, 8, 3)  # [T, B, N]
        >>> ax = plot.traces(mem, threshold=1.0, spikes=(mem > 0.9).float())
        >>> len(ax.lines)  # three traces and the threshold
        4
    """
    raw = _recording("traces", mem, "mem")
    mem = _neurons("traces", raw, "mem", batch)
    steps, neurons = mem.shape
    values = None
    if threshold is not None:
        if isinstance(threshold, Tensor):
            threshold = threshold.detach()  # a layer's parameter requires grad
        values = torch.as_tensor(threshold, dtype=torch.float64, device="cpu").flatten()
        if values.numel() not in (1, neurons):
            raise ValueError(
                f"traces: expected one threshold or one per neuron ({neurons}), got "
                f"{values.numel()} values"
            )
    if spikes is not None:
        spikes = _recording("traces", spikes, "spikes")
        if spikes.shape != raw.shape:
            raise ValueError(
                f"traces: expected spikes of the shape of mem {tuple(raw.shape)}, got "
                f"{tuple(spikes.shape)}"
            )
        spikes = _neurons("traces", spikes, "spikes", batch)
    ax = _axes(ax)  # after the checks: a refused call draws nothing, on no new figure
    time = torch.arange(steps).numpy()
    lines = ax.plot(time, mem.numpy())
    colors = [line.get_color() for line in lines]
    if values is not None and values.numel() == 1:
        ax.axhline(values.item(), ls="--", color="0.5", lw=1)
    elif values is not None:
        for value, tint in zip(values.tolist(), colors, strict=True):
            ax.axhline(value, ls="--", color=tint, lw=1)
    if spikes is not None:
        t, neuron = torch.nonzero(spikes, as_tuple=True)
        ax.scatter(
            t.numpy(), mem[t, neuron].numpy(), color=[colors[n] for n in neuron.tolist()], s=12
        )
    ax.set(xlabel="timestep", ylabel="membrane", xlim=(0, max(steps - 1, 1)))
    return ax


def rates(
    spikes: Tensor | Sequence[Tensor], ax: Axes | None = None, *, batch: int | None = None
) -> Axes:
    """Firing rate of every neuron (spikes per step) as a bar chart.

    Args:
        spikes: Recorded spikes ``[T]``, ``[T, N]`` or ``[T, B, *]`` (features flattened into
            ``N`` bars).
        ax: Axes to draw on; ``None`` makes a new figure.
        batch: With a batched recording, the sequence to count; ``None`` averages the rates
            over the whole batch.

    Returns:
        The ``Axes``; the bars are its ``patches``.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import torch
        >>> from tracetorch import plot
        >>> spikes = torch.zeros(10, 2)
        >>> spikes[:5, 1] = 1.0  # neuron 1 fires at half of the steps
        >>> ax = plot.rates(spikes)
        >>> [float(bar.get_height()) for bar in ax.patches]
        [0.0, 0.5]
    """
    spikes = _neurons("rates", _recording("rates", spikes, "spikes"), "spikes", batch)
    ax = _axes(ax)  # after the checks: a refused call leaves no empty figure behind
    rate = spikes.mean(dim=0)
    if rate.dim() == 2:  # [B, N]: the batch was kept
        rate = rate.mean(dim=0)
    ax.bar(torch.arange(len(rate)).numpy(), rate.numpy(), color="C0")
    ax.set(xlabel="neuron", ylabel="firing rate (spikes per step)", xlim=(-0.5, len(rate) - 0.5))
    ax.locator_params(axis="x", integer=True)
    return ax
