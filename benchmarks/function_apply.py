"""Calling tracetorch's autograd Functions: ``Function.apply`` against ``tt.autograd.apply``.

Every Function in tracetorch is written with ``setup_context`` (so that ``torch.func`` works
with it), and for such a Function ``Function.apply`` binds its arguments to ``forward``'s
signature at every call. The library calls its Functions through
:func:`tracetorch.autograd.apply` instead, which skips that binding. This times, in
one process, interleaved:

- one surrogate spike on a ``[64, 256]`` step with autograd, each way;
- a training step (batch 64, 25 timesteps, forward + backward) of the LIF network of
  ``benchmarks/lif.py`` in step mode, with the spike called each way (the library's code
  switched between the two at run time).

Run ``python benchmarks/function_apply.py`` (``--smoke`` for a seconds-long run that only
checks the script works; CI uses it).
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import torch
from _harness import medians_table, run_tt
from lif import TTNet

import tracetorch.autograd.surrogate as surrogate
from tracetorch.autograd import Heaviside, apply

VIA_TORCH = "Function.apply"
VIA_HELPER = "tt.autograd.apply"


def function_apply(function: type[torch.autograd.Function], *args: object) -> object:
    return function.apply(*args)


def with_caller(caller: Callable[..., object], fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with the surrogate spike called through ``caller``."""

    def run() -> object:
        surrogate.apply = caller
        try:
            return fn()
        finally:
            surrogate.apply = apply

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script only")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    number, repeat = (100, 2) if args.smoke else (5000, 7)
    repeats, steps = (2, 3) if args.smoke else (args.repeats, 25)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    z = torch.randn(64, 256, requires_grad=True)
    torch.testing.assert_close(Heaviside.apply(z, "atan", None), apply(Heaviside, z, "atan", None))
    per_call = {
        label: min(timeit.repeat(fn, number=number, repeat=repeat)) / number
        for label, fn in (
            (VIA_TORCH, lambda: Heaviside.apply(z, "atan", None)),
            (VIA_HELPER, lambda: apply(Heaviside, z, "atan", None)),
        )
    }
    print("one surrogate spike, [64, 256], with autograd (best of repeats)")
    for label, t in per_call.items():
        print(f"    {label:<30} {t * 1e6:7.2f} us")
    print(f"    ratio helper / Function.apply: {per_call[VIA_HELPER] / per_call[VIA_TORCH]:.3f}")

    model = TTNet()
    xs = torch.rand(steps, 64, 784)

    def train() -> None:
        run_tt(model, xs).mean(0).square().mean().backward()

    times = medians_table(
        f"training step of the LIF network (batch 64, {steps} steps), {repeats} repeats",
        {VIA_TORCH: with_caller(function_apply, train), VIA_HELPER: with_caller(apply, train)},
        repeats,
        {"Function.apply": VIA_TORCH},
    )
    print(
        f"tracetorch training step with the helper / with Function.apply: "
        f"{times[VIA_HELPER] / times[VIA_TORCH]:.3f} ratio"
    )


if __name__ == "__main__":
    main()
