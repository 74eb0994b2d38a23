"""Overhead of tracetorch's state machinery against the same math written inline.

Builds one network twice -- tracetorch layers (``Linear -> Decay -> Linear -> Decay -> Linear``
inside a ``tt.Model``) and a plain ``nn.Module`` that keeps the membranes in local variables --
sharing its ``Linear`` layers (one copy of the weights, read by every variant), checks that
both compute the same thing, then times them interleaved
in one process and prints the ratio (tracetorch / plain; 1.00 means no overhead):

- training: batch 64, 25 timesteps, forward + backward;
- inference: batch 1, 25 timesteps under ``torch.inference_mode`` (tracetorch after
  ``TTcompile()``, the plain network with its decays precomputed or computed once per call).

The target ratios (1.03 training, 1.10 batch-1 inference) are against the plain network as
one writes it by hand: the decays ``sigmoid(raw_beta)`` computed once per sequence, before
the time loop, and ``mem * beta + x`` (two kernels) in it. For training that is the baseline
``plain, loop inline, transforms once`` (the other two plain baselines recompute the decays
at every step, as a plain module reading a constrained parameter in its ``forward`` does;
tracetorch computes them once per sequence and caches them). For inference that loop
computes them in each call, before its loop, and the other plain baselines have them
precomputed outside the call (stricter: they pay nothing for the transforms), so both ratios
are printed. Without autograd, tracetorch runs the leaky step as one fused ``torch.addcmul``;
the inference table therefore also times the plain network hand-fused the same way, so that
the cost of the state machinery alone (module calls, state checks) shows too. Both tables
also time the plain network written the way tracetorch's is: each neuron layer an
``nn.Module`` that keeps its membrane and is called once per step, with nothing checked
(decays once per sequence, fused without autograd as tracetorch's are). That one is the
floor of any step mode in which each layer is a module that keeps its own states.

Run ``python benchmarks/overhead.py`` (``--smoke`` for a seconds-long run that only checks
the script works; CI uses it).
"""

from __future__ import annotations

import argparse

import torch
from _harness import LOOP, ONCE, STEP, compare, run_tt
from torch import nn

import tracetorch as tt

SIZES = (784, 256, 256, 10)
OURS = "tracetorch (Decay layers)"
FUSED = "plain, one call per step, hand-fused"
MODULES = "plain, a module per layer holding its state"


class TTNet(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        i, h1, h2, o = SIZES
        self.fc1, self.lif1 = nn.Linear(i, h1), tt.snn.Decay(h1)
        self.fc2, self.lif2 = nn.Linear(h1, h2), tt.snn.Decay(h2)
        self.fc3 = nn.Linear(h2, o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.lif2(self.fc2(self.lif1(self.fc1(x)))))


class PlainNet(nn.Module):
    """The same math in plain PyTorch: one timestep per call, membranes passed explicitly."""

    def __init__(self, source: TTNet) -> None:
        super().__init__()
        # The tracetorch network's own Linear layers: every variant reads the same weights
        # (about 1 MiB), so none finds them in the caches more often than another does just
        # because the variant before it read the same copy.
        self.fc1, self.fc2, self.fc3 = source.fc1, source.fc2, source.fc3
        self.raw_beta1 = nn.Parameter(source.lif1.raw_beta.detach().clone())
        self.raw_beta2 = nn.Parameter(source.lif2.raw_beta.detach().clone())
        self.betas: tuple[torch.Tensor, torch.Tensor] | None = None  # set by bake()

    def bake(self) -> None:
        self.betas = (
            torch.sigmoid(self.raw_beta1).detach(),
            torch.sigmoid(self.raw_beta2).detach(),
        )

    def decays(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.betas is not None:
            return self.betas
        return torch.sigmoid(self.raw_beta1), torch.sigmoid(self.raw_beta2)

    def forward(self, x: torch.Tensor, mem1: torch.Tensor, mem2: torch.Tensor):
        beta1, beta2 = self.decays()
        mem1 = mem1 * beta1 + self.fc1(x)
        mem2 = mem2 * beta2 + self.fc2(mem1)
        return self.fc3(mem2), mem1, mem2

    def fused(self, x: torch.Tensor, mem1: torch.Tensor, mem2: torch.Tensor):
        """:meth:`forward` with each membrane update as one ``torch.addcmul`` kernel."""
        beta1, beta2 = self.decays()
        mem1 = torch.addcmul(self.fc1(x), mem1, beta1)
        mem2 = torch.addcmul(self.fc2(mem1), mem2, beta2)
        return self.fc3(mem2), mem1, mem2

    def sequence(self, xs: torch.Tensor, once: bool = False) -> torch.Tensor:
        """Everything inline: the timestep loop inside one call, membranes as locals.

        ``once``: compute the decays once, before the loop (as one writes the loop by hand),
        instead of at every step.
        """
        beta1, beta2 = self.decays()
        mem1 = xs.new_zeros(xs.shape[1], self.fc1.out_features)
        mem2 = xs.new_zeros(xs.shape[1], self.fc2.out_features)
        outs = []
        for x in xs:
            if not once and self.betas is None:
                beta1, beta2 = self.decays()
            mem1 = mem1 * beta1 + self.fc1(x)
            mem2 = mem2 * beta2 + self.fc2(mem1)
            outs.append(self.fc3(mem2))
        return torch.stack(outs)


class PlainDecay(nn.Module):
    """A neuron layer as one writes it by hand: the membrane an attribute, no checks at all.

    The membrane is written straight into the instance ``__dict__``, as tracetorch's layers
    write their states: ``self.mem = ...`` would go through ``nn.Module.__setattr__`` (its
    checks for parameters, buffers and submodules) at every step, which costs more than
    this floor should.
    """

    def __init__(self) -> None:
        super().__init__()
        self.beta: torch.Tensor | None = None  # set once per sequence by run_plain_modules
        self.mem: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.__dict__
        mem = d["mem"]
        if mem is None:
            mem = x
        elif torch.is_grad_enabled():
            mem = mem * self.beta + x
        else:
            mem = torch.addcmul(x, mem, self.beta)
        d["mem"] = mem
        return mem


class PlainModules(nn.Module):
    """The network shaped as tracetorch's, in plain PyTorch: each layer keeps its membrane.

    It shares the linear layers and the raw decays of ``source``.
    """

    def __init__(self, source: PlainNet) -> None:
        super().__init__()
        self.source = source
        self.fc1, self.fc2, self.fc3 = source.fc1, source.fc2, source.fc3
        self.lif1, self.lif2 = PlainDecay(), PlainDecay()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.lif2(self.fc2(self.lif1(self.fc1(x)))))


def run_plain_modules(model: PlainModules, xs: torch.Tensor) -> torch.Tensor:
    """As :func:`run_tt`: forget the membranes, then one call per timestep.

    The decays are computed once per sequence, before the loop (or come precomputed after
    ``bake()``), as one writes it by hand.
    """
    model.lif1.beta, model.lif2.beta = model.source.decays()
    model.lif1.mem = model.lif2.mem = None
    return torch.stack([model(x) for x in xs])


def run_plain_steps(model: PlainNet, xs: torch.Tensor, fused: bool = False) -> torch.Tensor:
    """The plain network called once per timestep, its membranes kept by the caller."""
    step = model.fused if fused else model
    mem1 = xs.new_zeros(xs.shape[1], model.fc1.out_features)
    mem2 = xs.new_zeros(xs.shape[1], model.fc2.out_features)
    outs = []
    for x in xs:
        y, mem1, mem2 = step(x, mem1, mem2)
        outs.append(y)
    return torch.stack(outs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script only")
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    repeats = 3 if args.smoke else args.repeats
    steps = 3 if args.smoke else 25
    torch.manual_seed(0)

    ours = TTNet()
    plain = PlainNet(ours)
    modules = PlainModules(plain)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, network {SIZES}, {steps} steps")

    xs = torch.rand(steps, 64, SIZES[0])
    torch.testing.assert_close(run_tt(ours, xs), run_plain_steps(plain, xs))
    torch.testing.assert_close(run_tt(ours, xs), plain.sequence(xs))
    torch.testing.assert_close(run_tt(ours, xs), plain.sequence(xs, once=True))
    torch.testing.assert_close(run_tt(ours, xs), run_plain_modules(modules, xs))
    train = compare(
        "training (batch 64, forward + backward)",
        {
            STEP: lambda: run_plain_steps(plain, xs).square().mean().backward(),
            LOOP: lambda: plain.sequence(xs).square().mean().backward(),
            ONCE: lambda: plain.sequence(xs, once=True).square().mean().backward(),
            MODULES: lambda: run_plain_modules(modules, xs).square().mean().backward(),
            OURS: lambda: run_tt(ours, xs).square().mean().backward(),
        },
        repeats,
        baselines={"once": ONCE},
    )

    xs1 = torch.rand(steps, 1, SIZES[0])
    unbaked = PlainNet(ours)  # not baked: computes the decays in each call, before its loop
    ours.TTcompile()
    plain.bake()
    with torch.inference_mode():
        torch.testing.assert_close(run_tt(ours, xs1), run_plain_steps(plain, xs1))
        torch.testing.assert_close(run_tt(ours, xs1), run_plain_steps(plain, xs1, fused=True))
        torch.testing.assert_close(run_tt(ours, xs1), unbaked.sequence(xs1, once=True))
        torch.testing.assert_close(run_tt(ours, xs1), run_plain_modules(modules, xs1))
        infer = compare(
            "inference (batch 1, TTcompile'd, inference_mode)",
            {
                STEP: lambda: run_plain_steps(plain, xs1),
                LOOP: lambda: plain.sequence(xs1),
                ONCE: lambda: unbaked.sequence(xs1, once=True),
                FUSED: lambda: run_plain_steps(plain, xs1, fused=True),
                MODULES: lambda: run_plain_modules(modules, xs1),
                OURS: lambda: run_tt(ours, xs1),
            },
            repeats * 4,
            baselines={"once": ONCE},
        )
    print(
        f"tracetorch ratio vs plain loop with transforms once (the target's baseline): "
        f"training {train[OURS] / train[ONCE]:.3f} (target <= 1.03), batch-1 inference "
        f"{infer[OURS] / infer[ONCE]:.3f} (target <= 1.10)"
    )
    print(
        f"batch-1 inference vs the plain network with its decays precomputed outside the call "
        f"(stricter): vs one call per step {infer[OURS]:.3f}, vs the loop inline "
        f"{infer[OURS] / infer[LOOP]:.3f}"
    )
    print(
        f"tracetorch ratio vs one-call-per-step plain: training {train[OURS]:.3f}, batch-1 "
        f"inference {infer[OURS]:.3f}; batch-1 inference vs the hand-fused plain step "
        f"{infer[OURS] / infer[FUSED]:.3f}"
    )
    print(
        f"the floor of a step mode with a module per layer: the plain module-per-layer network "
        f"vs the loop inline (transforms once): training {train[MODULES] / train[ONCE]:.3f}, "
        f"batch-1 inference {infer[MODULES] / infer[LOOP]:.3f}; tracetorch vs it: training "
        f"{train[OURS] / train[MODULES]:.3f}, batch-1 inference {infer[OURS] / infer[MODULES]:.3f}"
    )


if __name__ == "__main__":
    main()
