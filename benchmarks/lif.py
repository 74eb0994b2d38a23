"""A 784-256-256-10 LIF network: tracetorch against the same math written by hand.

Builds the network with ``tt.snn.LIF`` layers (``Linear -> LIF`` three times, inside a
``tt.Model``) and as plain PyTorch with the same ``Linear`` layers (one copy of the weights,
read by every variant), the same surrogate spike
(``tt.autograd.spike_fn("atan")``), the same reset by subtraction and the same learnable
decay and threshold (read through sigmoid and softplus); checks that both give the same
outputs and gradients, then times them interleaved in one process (median of repeats):

- training: batch 64, 25 timesteps, forward + backward;
- inference: batch 1, 25 timesteps under ``torch.inference_mode`` (tracetorch after
  ``TTcompile()``, the plain network with its decays and thresholds precomputed or computed
  once per call).

Plain baselines, as in ``benchmarks/overhead.py``: one call per timestep with the
membranes passed explicitly, the whole timestep loop inline in one call (both read the decays
and thresholds through their transforms at every step), and, for training, that loop with
the transforms computed once per sequence, before the loop, as one writes it by hand
(tracetorch computes them once per sequence too, and caches them): the baseline the target
ratios are judged against. For inference that loop computes them in each call, before its
loop, and the other two plain baselines have them precomputed outside the call (stricter:
they pay nothing for the transforms), so both ratios are printed. Each ratio is
``time / time of the plain baseline`` (1.00: no overhead). Where snnTorch, Norse or
SpikingJelly are importable (never dependencies), their equivalent network is timed in the
same run (checked with snnTorch 1.0.0, Norse 1.1.0 and SpikingJelly 2.0.0, installed beside
torch 2.13.0 with ``pip install --no-deps``). Their dynamics differ in details (reset timing or
reset value, fixed decays), so their outputs are not compared.

Run ``python benchmarks/lif.py`` (``--smoke`` for a seconds-long run that only checks the
script works; CI uses it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _harness import LOOP, ONCE, STEP, compare, copy_linears, run_tt
from torch import Tensor, nn

import tracetorch as tt

SIZES = (784, 256, 256, 10)
BETA, THRESHOLD = 0.9, 1.0
GAIN = 3.0  # weights scaled up from PyTorch's default init so that every layer spikes
SPIKE = tt.autograd.spike_fn("atan")  # the surrogate spike tt.snn.LIF uses by default


class TTNet(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        i, h1, h2, o = SIZES
        self.fc1, self.lif1 = nn.Linear(i, h1), tt.snn.LIF(h1, BETA, THRESHOLD)
        self.fc2, self.lif2 = nn.Linear(h1, h2), tt.snn.LIF(h2, BETA, THRESHOLD)
        self.fc3, self.lif3 = nn.Linear(h2, o), tt.snn.LIF(o, BETA, THRESHOLD)
        with torch.no_grad():
            for fc in (self.fc1, self.fc2, self.fc3):
                fc.weight.mul_(GAIN)

    def forward(self, x: Tensor) -> Tensor:
        return self.lif3(self.fc3(self.lif2(self.fc2(self.lif1(self.fc1(x))))))


class PlainNet(nn.Module):
    """The same network by hand: membranes passed explicitly, one timestep per call."""

    def __init__(self, source: TTNet) -> None:
        super().__init__()
        # The tracetorch network's own Linear layers: every variant reads the same weights
        # (about 1 MiB), so none finds them in the caches more often than another does just
        # because the variant before it read the same copy.
        self.fc1, self.fc2, self.fc3 = source.fc1, source.fc2, source.fc3
        lifs = (source.lif1, source.lif2, source.lif3)
        self.raw_betas = nn.ParameterList(lif.raw_beta.detach().clone() for lif in lifs)
        self.raw_thresholds = nn.ParameterList(lif.raw_threshold.detach().clone() for lif in lifs)
        self.baked: list[tuple[Tensor, Tensor]] | None = None  # set by bake()

    def bake(self) -> None:
        self.baked = [(b.detach(), t.detach()) for b, t in self.neuron_parameters()]

    def neuron_parameters(self) -> list[tuple[Tensor, Tensor]]:
        if self.baked is not None:
            return self.baked
        return [
            (torch.sigmoid(b), F.softplus(t))
            for b, t in zip(self.raw_betas, self.raw_thresholds, strict=True)
        ]

    def forward(self, x: Tensor, mem1: Tensor, mem2: Tensor, mem3: Tensor):
        (b1, t1), (b2, t2), (b3, t3) = self.neuron_parameters()
        mem1 = mem1 * b1 + self.fc1(x)
        s1 = SPIKE(mem1 - t1)
        mem1 = mem1 - s1 * t1
        mem2 = mem2 * b2 + self.fc2(s1)
        s2 = SPIKE(mem2 - t2)
        mem2 = mem2 - s2 * t2
        mem3 = mem3 * b3 + self.fc3(s2)
        s3 = SPIKE(mem3 - t3)
        mem3 = mem3 - s3 * t3
        return s3, mem1, mem2, mem3

    def sequence(self, xs: Tensor, once: bool = False) -> Tensor:
        """Everything inline: the timestep loop inside one call, membranes as locals.

        ``once``: read the decays and thresholds (through sigmoid and softplus) once, before
        the loop, as one writes the loop by hand, instead of at every step.
        """
        batch = xs.shape[1]
        mem1, mem2, mem3 = (xs.new_zeros(batch, n) for n in SIZES[1:])
        (b1, t1), (b2, t2), (b3, t3) = self.neuron_parameters()
        outs = []
        for x in xs:
            if not once:
                (b1, t1), (b2, t2), (b3, t3) = self.neuron_parameters()
            mem1 = mem1 * b1 + self.fc1(x)
            s1 = SPIKE(mem1 - t1)
            mem1 = mem1 - s1 * t1
            mem2 = mem2 * b2 + self.fc2(s1)
            s2 = SPIKE(mem2 - t2)
            mem2 = mem2 - s2 * t2
            mem3 = mem3 * b3 + self.fc3(s2)
            s3 = SPIKE(mem3 - t3)
            mem3 = mem3 - s3 * t3
            outs.append(s3)
        return torch.stack(outs)


def run_plain_steps(model: PlainNet, xs: Tensor) -> Tensor:
    mem1, mem2, mem3 = (xs.new_zeros(xs.shape[1], n) for n in SIZES[1:])
    outs = []
    for x in xs:
        y, mem1, mem2, mem3 = model(x, mem1, mem2, mem3)
        outs.append(y)
    return torch.stack(outs)


# ------------------------------------- other libraries (optional, never dependencies)


def other_libraries(source: TTNet) -> dict[str, Callable[[Tensor], Tensor]]:
    """Runners ``xs -> outputs`` for the libraries that import, each with the same weights.

    Written from the libraries' documented APIs and run against snnTorch 1.0.0, Norse 1.1.0
    and SpikingJelly 2.0.0; none is a dependency, so the test suite does not run this code.
    A library that fails to build is skipped.
    """
    runners: dict[str, Callable[[Tensor], Tensor]] = {}
    for name, build in (
        ("snnTorch Leaky", _snntorch),
        ("Norse LIFBoxCell", _norse),
        ("SpikingJelly LIFNode", _spikingjelly),
    ):
        try:
            runner = build(source)
            runner(torch.rand(2, 1, SIZES[0]))  # fail here, not in the middle of the timing
            runners[name] = runner
        except ImportError:
            continue
        except Exception as error:  # an API that changed: report, keep benchmarking
            print(f"skipping {name}: {type(error).__name__}: {error}")
    return runners


def _stepwise(
    fcs: nn.ModuleList, cells: list, initial: Callable[[], list]
) -> Callable[[Tensor], Tensor]:
    """A runner for neurons that take and return their state: ``x, state = cell(x, state)``."""

    def run(xs: Tensor) -> Tensor:
        states = initial()
        outs = []
        for x in xs:
            for i, (fc, cell) in enumerate(zip(fcs, cells, strict=True)):
                x, states[i] = cell(fc(x), states[i])
            outs.append(x)
        return torch.stack(outs)

    return run


def _snntorch(source: TTNet) -> Callable[[Tensor], Tensor]:
    import snntorch as snn
    from snntorch import surrogate

    fcs = copy_linears(source)
    lifs = [
        snn.Leaky(
            beta=BETA,
            threshold=THRESHOLD,
            learn_beta=True,
            learn_threshold=True,
            spike_grad=surrogate.atan(alpha=2.0),
            reset_mechanism="subtract",
        )
        for _ in fcs
    ]

    return _stepwise(fcs, lifs, lambda: [lif.init_leaky() for lif in lifs])


def _norse(source: TTNet) -> Callable[[Tensor], Tensor]:
    from norse.torch import LIFBoxCell, LIFBoxParameters

    try:  # reset by subtraction where this version of Norse offers it
        from norse.torch.functional.reset import reset_subtract

        reset = {"reset_method": reset_subtract}
    except ImportError:
        reset = {}
    # v += dt * tau_mem_inv * (i - v): dt * tau_mem_inv = 1 - beta
    parameters = LIFBoxParameters(
        tau_mem_inv=torch.as_tensor((1 - BETA) / 1e-3),
        v_th=torch.as_tensor(THRESHOLD),
        method="super",
        **reset,
    )
    fcs = copy_linears(source)
    cells = [LIFBoxCell(parameters, dt=1e-3) for _ in fcs]

    return _stepwise(fcs, cells, lambda: [None] * len(cells))


def _spikingjelly(source: TTNet) -> Callable[[Tensor], Tensor]:
    from spikingjelly.activation_based import functional, neuron, surrogate

    # decay_input=False, v_reset=None: v = (1 - 1/tau) v + x, reset by subtraction
    fcs = copy_linears(source)
    nodes = [
        neuron.LIFNode(
            tau=1 / (1 - BETA),
            decay_input=False,
            v_threshold=THRESHOLD,
            v_reset=None,
            surrogate_function=surrogate.ATan(alpha=2.0),
            step_mode="s",
        )
        for _ in fcs
    ]
    net = nn.Sequential(*(m for pair in zip(fcs, nodes, strict=True) for m in pair))

    def run(xs: Tensor) -> Tensor:
        functional.reset_net(net)
        return torch.stack([net(x) for x in xs])

    return run


OURS = "tracetorch (tt.snn.LIF)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script only")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.smoke else args.repeats
    steps = 3 if args.smoke else 25
    torch.manual_seed(0)

    ours = TTNet()
    plain = PlainNet(ours)
    others = other_libraries(ours)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, LIF network {SIZES}, "
        f"{steps} steps; other libraries found: {', '.join(others) or 'none'}"
    )

    xs = torch.rand(steps, 64, SIZES[0])
    expected = run_tt(ours, xs)
    assert expected.sum() > 0, "no output spikes: the comparison would be vacuous"
    torch.testing.assert_close(run_plain_steps(plain, xs), expected)
    torch.testing.assert_close(plain.sequence(xs), expected)
    torch.testing.assert_close(plain.sequence(xs, once=True), expected)
    grads = []
    for model, run in (
        (ours, run_tt),
        (plain, run_plain_steps),
        (plain, lambda model, xs: model.sequence(xs, once=True)),
    ):
        model.zero_grad()
        run(model, xs).sum().backward()
        grads.append(model.fc1.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(grads[0], grads[2])

    def loss(out: Tensor) -> None:
        out.mean(0).square().mean().backward()

    train = compare(
        "training (batch 64, forward + backward)",
        {
            STEP: lambda: loss(run_plain_steps(plain, xs)),
            LOOP: lambda: loss(plain.sequence(xs)),
            ONCE: lambda: loss(plain.sequence(xs, once=True)),
            OURS: lambda: loss(run_tt(ours, xs)),
            **{key: (lambda run=run: loss(run(xs))) for key, run in others.items()},
        },
        repeats,
        baselines={"once": ONCE},
    )

    xs1 = torch.rand(steps, 1, SIZES[0])
    unbaked = PlainNet(ours)  # not baked: computes the transforms in each call, before the loop
    ours.TTcompile()
    plain.bake()
    with torch.inference_mode():
        torch.testing.assert_close(run_tt(ours, xs1), run_plain_steps(plain, xs1))
        torch.testing.assert_close(run_tt(ours, xs1), unbaked.sequence(xs1, once=True))
        infer = compare(
            "inference (batch 1, TTcompile'd, inference_mode)",
            {
                STEP: lambda: run_plain_steps(plain, xs1),
                LOOP: lambda: plain.sequence(xs1),
                ONCE: lambda: unbaked.sequence(xs1, once=True),
                OURS: lambda: run_tt(ours, xs1),
                **{key: (lambda run=run: run(xs1)) for key, run in others.items()},
            },
            repeats * 4,
            baselines={"once": ONCE},
        )
    print(
        f"tracetorch LIF ratio vs plain loop with transforms once (the target's baseline): "
        f"training {train[OURS] / train[ONCE]:.3f} (target <= 1.03), batch-1 inference "
        f"{infer[OURS] / infer[ONCE]:.3f} (target <= 1.10)"
    )
    print(
        f"batch-1 inference vs the plain network with its parameters precomputed outside the "
        f"call (stricter): vs one call per step {infer[OURS]:.3f}, vs the loop inline "
        f"{infer[OURS] / infer[LOOP]:.3f}"
    )
    print(
        f"tracetorch LIF ratio vs one-call-per-step plain: training {train[OURS]:.3f}, "
        f"batch-1 inference {infer[OURS]:.3f}"
    )


if __name__ == "__main__":
    main()
