"""Timing helpers shared by the benchmark scripts (not a benchmark itself)."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

STEP = "plain, one call per step (states passed)"
LOOP = "plain, whole loop inline in one call"
ONCE = "plain, loop inline, transforms once"


def copy_linears(source: nn.Module) -> nn.ModuleList:
    """Fresh ``nn.Linear`` layers holding the weights of ``source.fc1..fc3``."""
    linears = nn.ModuleList()
    for fc in (source.fc1, source.fc2, source.fc3):
        linear = nn.Linear(fc.in_features, fc.out_features)
        linear.load_state_dict(fc.state_dict())
        linears.append(linear)
    return linears


def run_tt(model: nn.Module, xs: Tensor) -> Tensor:
    """The tracetorch way: zero the states, then one call per timestep."""
    model.zero_states()
    return torch.stack([model(x) for x in xs])


def timed_each(fn: Callable[[], object], calls: int) -> list[float]:
    """Seconds of each of ``calls`` calls of ``fn`` in a row."""
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def medians_table(
    title: str,
    runs: Mapping[str, Callable[[], object]],
    repeats: int,
    baselines: Mapping[str, str],
    burst: int = 1,
    positions: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """Time ``runs`` interleaved (after one warm-up each) and print medians and ratios.

    Args:
        title: The heading of the table.
        runs: What to time, by label.
        repeats: Timed calls of each run (one of each in turn, ``repeats`` times). Each
            turn takes the runs in a new order (shuffled, from a fixed seed): what ran just
            before changes a call's time (the caches, the allocator's free lists), and in a
            fixed order each run would always follow the same other one.
        baselines: The runs to divide by, ``{column name: label in runs}``: one column
            ``ratio vs <column name>`` each.
        burst: Each turn calls a run this many times in a row and counts the time per
            call. With 1 every call follows the other runs' calls, so it starts from caches
            they have filled: that penalizes a short call that runs much Python (the
            interpreter, dispatch and guard code and data go cold) more than a long one.
            A burst is what a loop over a dataset does: the same call again and again.
        positions: With a burst, filled with each run's median time of the first, second,
            ... call of its bursts (by label), in seconds: how a call's time falls as the
            caches warm up again.

    Returns:
        Each run's median time in seconds, by label.
    """
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {key: [] for key in runs}
    each: dict[str, list[list[float]]] = {key: [] for key in runs}
    order = list(runs)
    shuffle = random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)
        for key in order:
            calls = timed_each(runs[key], burst)
            times[key].append(sum(calls) / burst)
            each[key].append(calls)
    medians = {key: statistics.median(t) for key, t in times.items()}
    if positions is not None:
        for key, bursts in each.items():
            positions[key] = [statistics.median(column) for column in zip(*bursts, strict=True)]
    width = max(40, *map(len, runs))
    print(title)
    header = "".join(f"   {'ratio vs ' + name:>13}" for name in baselines)
    print(f"    {'':<{width}} {'median':>10}{header}")
    for key, t in medians.items():
        ratios = "".join(f"   {t / medians[base]:13.3f}" for base in baselines.values())
        print(f"    {key:<{width}} {t * 1e3:7.3f} ms{ratios}")
    return medians


def compare(
    title: str,
    runs: dict[str, Callable[[], object]],
    repeats: int,
    baselines: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Time ``runs`` interleaved (after one warm-up each) and print medians and ratios.

    ``runs`` must hold the two plain baselines under the keys :data:`STEP` and :data:`LOOP`;
    ``baselines`` adds ratio columns against more of its runs (``{column name: label}``).
    Returns each run's median time divided by the :data:`STEP` baseline's.
    """
    columns = {"step": STEP, "loop": LOOP, **(baselines or {})}
    medians = medians_table(title, runs, repeats, columns)
    return {key: t / medians[STEP] for key, t in medians.items()}
