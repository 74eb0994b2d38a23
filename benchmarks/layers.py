"""Sequence mode of ``tt.snn.ALIF`` and ``tt.rnn.MiniGRU`` against step mode and a plain loop.

Neither layer has a whole-sequence kernel: ALIF's sequence mode reads its parameters once and
runs :func:`tracetorch.functional.alif_step` with the states in local variables, MiniGRU's
multiplies the inputs' share of its two linear maps for all steps at once, before its time
loop (:func:`tracetorch.functional.minigru_sequence`). Each layer is timed, interleaved in one
process (medians, shuffled order), as:

- the plain PyTorch loop one writes by hand: the same math per step, the states in local
  variables, the parameter transforms (``sigmoid``, ``softplus``) computed once before the
  loop, and the same weight tensors;
- tracetorch in step mode (``tt.run(layer, xs)``, one call per step);
- tracetorch in sequence mode (``tt.run(layer, xs, mode="sequence")``).

Training: ``[25, 64, 256]`` (MiniGRU ``64 -> 128``), forward + backward; inference: batch 1,
``inference_mode``, after ``TTcompile()``. Also the README's example model
(``Linear(64, 32) -> Decay -> MiniGRU(32, 10)`` on ``[25, 16, 64]``), step vs sequence mode.
Run ``python benchmarks/layers.py`` (``--smoke``: a seconds-long run that only checks the
script works; CI uses it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from _harness import medians_table
from torch import Tensor, nn

import tracetorch as tt

PLAIN = "plain PyTorch, per-step loop"
STEP = "tracetorch, step mode"
SEQUENCE = "tracetorch, sequence mode"


def plain_alif(layer: tt.snn.ALIF, xs: Tensor) -> Tensor:
    """ALIF by hand: ``mem = beta mem + x``, the threshold raised by ``beta_a a``."""
    beta, rho, threshold, beta_a = layer.beta, layer.rho, layer.threshold, layer.beta_a
    mem = a = xs.new_zeros(xs.shape[1:])
    outs = []
    for x in xs:
        mem = mem * beta + x
        adaptive = threshold + beta_a * a
        s = layer.spike_fn(mem - adaptive)
        mem = mem - s * adaptive
        a = rho * a + (1 - rho) * s
        outs.append(s)
    return torch.stack(outs)


def plain_minigru(layer: tt.rnn.MiniGRU, xs: Tensor) -> Tensor:
    """MiniGRU by hand: both linear maps on ``[h, x]`` at every step."""
    gates, candidate = layer.gates, layer.candidate
    h = xs.new_zeros(*xs.shape[1:-1], layer.num_neurons)
    outs = []
    for x in xs:
        reset, update = torch.sigmoid(gates(torch.cat([h, x], dim=-1))).chunk(2, dim=-1)
        c = torch.tanh(candidate(torch.cat([h * reset, x], dim=-1)))
        h = h * (1 - update) + update * c
        outs.append(h)
    return torch.stack(outs)


def ours(layer: nn.Module, xs: Tensor, mode: str) -> Tensor:
    tt.zero_states(layer)
    return tt.run(layer, xs, mode=mode)


def tables(
    name: str,
    layer: nn.Module,
    plain: Callable[[nn.Module, Tensor], Tensor],
    xs: Tensor,
    repeats: int,
) -> str:
    """Checks the three variants agree, times them; returns the summary line."""
    torch.testing.assert_close(ours(layer, xs, "sequence"), plain(layer, xs))
    torch.testing.assert_close(ours(layer, xs, "step"), plain(layer, xs))

    def train(run: Callable[[], Tensor]) -> Callable[[], None]:
        def call() -> None:
            layer.zero_grad(set_to_none=True)
            run().square().mean().backward()

        return call

    variants = {
        PLAIN: lambda: plain(layer, xs),
        STEP: lambda: ours(layer, xs, "step"),
        SEQUENCE: lambda: ours(layer, xs, "sequence"),
    }
    baselines = {"plain": PLAIN, "step mode": STEP}
    training = medians_table(
        f"{name}, training {list(xs.shape)}, forward + backward",
        {key: train(run) for key, run in variants.items()},
        repeats,
        baselines,
    )
    one = xs[:, :1].contiguous()
    layer.TTcompile()
    with torch.inference_mode():
        inference = medians_table(
            f"{name}, inference, batch 1, TTcompile'd, inference_mode",
            {
                PLAIN: lambda: plain(layer, one),
                STEP: lambda: ours(layer, one, "step"),
                SEQUENCE: lambda: ours(layer, one, "sequence"),
            },
            repeats * 4,
            baselines,
        )
    layer.TTdecompile()
    return (
        f"{name}: sequence mode vs the plain loop: training "
        f"{training[SEQUENCE] / training[PLAIN]:.3f}, batch-1 inference "
        f"{inference[SEQUENCE] / inference[PLAIN]:.3f}; vs step mode: training "
        f"{training[SEQUENCE] / training[STEP]:.3f}, batch-1 inference "
        f"{inference[SEQUENCE] / inference[STEP]:.3f}"
    )


class ReadmeNet(tt.Model):
    """The model of the README's first example."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 32)
        self.mem = tt.snn.Decay(32, beta=0.9)
        self.rnn = tt.rnn.MiniGRU(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(self.mem(self.fc(x)))


def readme(steps: int, repeats: int) -> str:
    model, xs = ReadmeNet(), torch.rand(steps, 16, 64)
    torch.testing.assert_close(ours(model, xs, "sequence"), ours(model, xs, "step"))

    def train(mode: str) -> Callable[[], None]:
        return lambda: ours(model, xs, mode).sum().backward()

    training = medians_table(
        f"the README's model, training {list(xs.shape)}, forward + backward",
        {STEP: train("step"), SEQUENCE: train("sequence")},
        repeats,
        {"step mode": STEP},
    )
    with torch.inference_mode():
        inference = medians_table(
            f"the README's model, inference {list(xs.shape)}, inference_mode",
            {STEP: lambda: ours(model, xs, "step"), SEQUENCE: lambda: ours(model, xs, "sequence")},
            repeats,
            {"step mode": STEP},
        )
    return (
        f"the README's model: sequence mode is {training[STEP] / training[SEQUENCE]:.2f}x "
        f"faster than step mode in training, {inference[STEP] / inference[SEQUENCE]:.2f}x "
        f"in inference"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script only")
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    repeats, steps, batch = (2, 3, 4) if args.smoke else (args.repeats, 25, 64)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, T = {steps}")
    alif = tt.snn.ALIF(256)
    minigru = tt.rnn.MiniGRU(64, 128)
    summary = [
        tables("ALIF(256)", alif, plain_alif, torch.randn(steps, batch, 256) * 1.5, repeats),
        tables("MiniGRU(64, 128)", minigru, plain_minigru, torch.rand(steps, batch, 64), repeats),
        readme(steps, repeats * 4),
    ]
    print("\nsummary")
    for line in summary:
        print(f"    {line}")


if __name__ == "__main__":
    main()
