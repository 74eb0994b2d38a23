"""Reading a constrained parameter: tracetorch's property against ``torch.nn.utils.parametrize``.

A layer reads each constrained parameter (``beta = sigmoid(raw_beta)``) once per timestep, so
the read itself is on the hot path. This times, in one process, ``layer.beta`` on a
``tt.snn.Decay`` against the same sigmoid registered with PyTorch's parametrization machinery,
and the bare ``torch.sigmoid(raw)`` as the floor, and prints the ratios.

Run ``python benchmarks/parameter_read.py`` (``--smoke`` for a quick check that it runs).
"""

from __future__ import annotations

import argparse
import timeit

import torch
from torch import nn
from torch.nn.utils import parametrize

import tracetorch as tt


class _Sigmoid(nn.Module):
    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw)

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return tt.functional.sigmoid_inverse(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script only")
    args = parser.parse_args()
    number, repeat = (200, 2) if args.smoke else (20000, 7)

    layer = tt.snn.Decay(256, beta=0.9)
    holder = nn.Module()
    holder.beta = nn.Parameter(torch.full((256,), 0.9))
    parametrize.register_parametrization(holder, "beta", _Sigmoid())
    torch.testing.assert_close(layer.beta, holder.beta)

    def per_read(fn) -> float:
        return min(timeit.repeat(fn, number=number, repeat=repeat)) / number

    floor = per_read(lambda: torch.sigmoid(layer.raw_beta))
    ours = per_read(lambda: layer.beta)
    theirs = per_read(lambda: holder.beta)
    for label, t in (
        ("bare torch.sigmoid(layer.raw_beta)", floor),
        ("tracetorch layer.beta", ours),
        ("parametrize holder.beta", theirs),
    ):
        print(f"{label:<36} {t * 1e6:6.2f} us   ratio to bare {t / floor:.2f}")
    print(f"ratio parametrize / tracetorch: {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
