"""Timing helpers shared by the benchmark scripts (not a benchmark itself)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

STEP = "plain, one call per step (states passed)"
LOOP = "plain, whole loop inline in one call"


def run_tt(model: nn.Module, xs: Tensor) -> Tensor:
    """The tracetorch way: zero the states, then one call per timestep."""
    model.zero_states()
    return torch.stack([model(x) for x in xs])


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(title: str, runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Time ``runs`` interleaved (after one warm-up each) and print medians and ratios.

    ``runs`` must hold the two plain baselines under the keys :data:`STEP` and :data:`LOOP`.
    Returns each run's median time divided by the :data:`STEP` baseline's.
    """
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            times[key].append(timed(fn))
    medians = {key: statistics.median(t) for key, t in times.items()}
    step, loop = medians[STEP], medians[LOOP]
    print(title)
    print(f"    {'':<40} {'median':>10}   {'ratio vs step':>13}   {'ratio vs loop':>13}")
    for key, t in medians.items():
        print(f"    {key:<40} {t * 1e3:7.3f} ms   {t / step:13.3f}   {t / loop:13.3f}")
    return {key: t / step for key, t in medians.items()}
