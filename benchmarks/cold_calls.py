"""What a short call costs when it comes after other work: time, not the other work's data.

The batch-1 inference figures of ``benchmarks/sequence.py`` are timed call by call (each
call after calls of the other variants) and in bursts (the same call again and again). A
short call that runs much Python, such as a ``torch.compile``'d one, costs several times
more call by call. This script asks what makes it so: it times three calls, each right
after something else has run, and prints the median time and its ratio to the same call
run back to back:

- a ``torch.compile``'d ``x + 1`` on a ``[25, 1, 784]`` input (inductor's ``cpp_wrapper``,
  as ``tt.run(..., compile=True)`` uses on the CPU): dynamo's entry, the guard check and
  the compiled region's wrappers around one small kernel;
- the network of ``benchmarks/sequence.py`` in sequence mode, ``compile=True``, batch 1;
- its three ``Linear`` layers alone, eager, each over all 25 steps (the matmul floor).

What runs before each timed call, in turn:

- nothing (the call right after the previous one of its kind);
- pure Python for 2, 14 or 140 ms: a loop that reads the clock, touching almost no memory
  (14 ms is about ten calls of the plain loop here);
- a sleep of 2, 14 or 140 ms (the thread gives its core up);
- one or ten calls of the plain per-step loop at batch 1 (its weights, about 1 MiB, are
  read at every step).

If the other work's data pushed the call's code and data out of the caches, the time would
depend on what ran before it (the plain loop), not on how long; if it depends on how long,
it is the machine (other processes or virtual machines on the same cores and caches, the
core's power states) that cools them, and a figure timed call by call measures that machine
more than the code.

Run ``python benchmarks/cold_calls.py`` (``--smoke`` for a seconds-long run that only checks
the script works; CI uses it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from sequence import SIZES, PlainNet, TTNet, run_sequence


def busy(seconds: float) -> Callable[[], None]:
    """Pure Python for ``seconds``: reads the clock until they have passed."""

    def run() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    return run


def sleep(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)


def repeat(fn: Callable[[], object], times: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(times):
            fn()

    return run


def timed_after(before: Callable[[], object], fn: Callable[[], object], repeats: int) -> float:
    """The median seconds of ``fn()`` called right after ``before()``."""
    seconds = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script only")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    repeats, steps = (2, 3) if args.smoke else (args.repeats, 25)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {steps} steps")

    ours = TTNet()
    plain = PlainNet(ours)
    ours.TTcompile()
    plain.bake()
    xs1 = torch.rand(steps, 1, SIZES[0])
    durations = (0.002,) if args.smoke else (0.002, 0.014, 0.14)
    befores: dict[str, Callable[[], object]] = {"nothing": lambda: None}
    befores.update({f"{s * 1e3:g} ms of pure Python": busy(s) for s in durations})
    befores.update({f"{s * 1e3:g} ms of sleep": sleep(s) for s in durations})
    befores["1 call of the plain loop"] = lambda: plain(xs1)
    befores["10 calls of the plain loop"] = repeat(lambda: plain(xs1), 10)

    with torch.inference_mode():
        trivial = torch.compile(lambda x: x + 1, options={"cpp_wrapper": True})
        calls = {
            "compiled x + 1": lambda: trivial(xs1),
            "the network, compile=True": lambda: run_sequence(ours, xs1, compile=True),
            "the 3 Linear layers, eager": lambda: plain.floor(xs1),
        }
        for fn in calls.values():  # compile, and warm up
            fn()
            fn()
        width = max(map(len, befores))
        print("median µs of each call right after: (ratio to the call back to back)")
        print(f"    {'':<{width}}" + "".join(f"   {name:>26}" for name in calls))
        warm: dict[str, float] = {}
        for label, before in befores.items():
            cells = []
            for name, fn in calls.items():
                t = timed_after(before, fn, repeats)
                warm.setdefault(name, t)  # the first row: nothing before
                cells.append(f"{t * 1e6:9.0f} (ratio {t / warm[name]:6.2f})")
            print(f"    {label:<{width}}" + "".join(f"   {cell:>26}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
