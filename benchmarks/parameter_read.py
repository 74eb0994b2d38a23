"""Reading a constrained parameter: tracetorch's ``layer.beta`` vs ``nn.utils.parametrize``.

A layer reads its constrained parameters (``beta = sigmoid(raw_beta)``) at every timestep,
so the read is on the hot path. tracetorch computes the transform once and keeps the value
while the raw tensor is unchanged (and the graph is not cut), so a read is a check of that
cache, not a sigmoid. This times, in one process, ``layer.beta`` on a ``tt.snn.Decay``
(a cache hit: what a step pays), the same sigmoid registered with PyTorch's parametrization
machinery (computed at each read), and the bare ``torch.sigmoid(raw)`` (what computing the
transform at each read would cost at least), and prints the ratios.

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
