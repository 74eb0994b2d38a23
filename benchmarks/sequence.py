"""Sequence mode against the same network written as a per-step loop in plain PyTorch.

The network is ``Linear(784, 256) -> LIB -> Linear(256, 256) -> LIB -> Linear(256, 10) -> LI``
inside a ``tt.Model``, run with ``model.run(xs, mode="sequence")``: each layer takes all
``T`` steps in one call (the Linear layers one matmul each, the neurons one
``tt.autograd.LeakyScan`` each, whose backward is a hand-written loop through time). The
baseline is the loop a researcher writes by hand: the parameter transforms
(``sigmoid(raw_beta)``, ``softplus(raw_threshold)``) computed once, before the time loop, the
membranes in local variables, and the same math per step as
:func:`tracetorch.functional.leaky_step`: ``mem = mem * beta + x``,
``s = heaviside(mem + bias - threshold)`` (``tt.autograd.spike_fn("atan")``, LIB's default),
``mem = mem - s * threshold``; the output layer returns its membrane. The script checks that
both give the same outputs and gradients, then times, interleaved in one process (medians):

- training: batch 64, forward + backward, at ``T = 25`` (and ``T = 100``, ``T = 500`` with
  fewer repeats); target ratio (sequence mode / plain loop) <= 0.70 at ``T = 25``;
- inference: batch 1, tracetorch after ``TTcompile()`` and the plain loop with its
  parameters precomputed, both under ``torch.inference_mode``; target <= 0.20 at ``T = 25``.
  Also timed: ``tt.run(..., mode="sequence", compile=True)`` (``torch.compile``), with its
  first call, the compile, timed separately (inductor's caches disabled, so that it is what
  a first run costs) at the lengths of ``--compile-steps``; ``--compile-training`` does the
  same for training. Timed twice: call by call (each call follows calls of the other
  variants, in a new shuffled order each turn), and in bursts of ``BURST`` calls of one
  variant in a row (as a loop over a dataset runs). A call that is short and runs much
  Python, such as the compiled one, pays more for the caches the other variants leave cold
  than the long plain loop does; the bursts show what it costs where it runs again and
  again, and the median time of the first, second, ... call of a burst shows how fast it
  warms up. Beside the compiled model, a compiled ``x + 1`` is timed the same way: what
  any compiled call costs on this machine (dynamo's entry, guard check and wrappers),
  whatever it computes;
- tracetorch in step mode (one call per step), for reference;
- the matmul floor: the three Linear layers alone, each over all ``T`` steps as one matmul
  (what no implementation of this network can beat), so that the distance to the limit
  shows;
- SpikingJelly's multi-step mode (``step_mode="m"``) where it is importable (never a
  dependency; run with SpikingJelly 2.0.0, its PyTorch backend on the CPU). Its output
  layer fires instead of integrating, so its outputs are not compared.

Peak training memory: the most bytes that PyTorch's CPU allocator held at once during one
forward + backward, above what it held before. It is read from ``torch.profiler`` with
``profile_memory=True``, whose allocation events carry the running total of the bytes
allocated (minus those freed) since profiling began; so it counts every tensor the run
allocates (the activations saved for the backward, the temporaries of forward and backward,
the gradients), and nothing that is not a tensor. Parameter gradients are set to ``None``
first, so every variant allocates its own, and the cache of sequence buffers that
tracetorch's scans reuse between calls (:func:`tracetorch.autograd.sequence_buffer`) is
emptied, so that the buffers the run needs are allocated, and counted, in it. Tensors
allocated before the run and freed during it (tracetorch's states of the previous run) are
not subtracted, so it errs on the high side, by at most those few step-sized tensors.
(``tracemalloc`` does not see torch's allocations; the process's maximum RSS would add the
interpreter, the libraries and the C allocator's caching, and can only rise; the bytes saved
for backward would leave out the temporaries and any tensor an autograd function keeps
outside ``save_for_backward``.)

Then a GRU, ``[50, 32, 64] -> 128``, forward + backward: ``tt.rnn.GRU`` in sequence mode
against ``nn.GRU`` (target ratio <= 1.05) and in step mode against an ``nn.GRUCell`` loop
(<= 1.05), with the same weights (checked).

Run ``python benchmarks/sequence.py`` (``--smoke`` for a seconds-long run that only checks
the script works; CI uses it).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _harness import copy_linears, medians_table, run_tt
from torch import Tensor, nn

import tracetorch as tt

SIZES = (784, 256, 256, 10)
BURST = 10  # inference is also timed in bursts of this many calls of one variant in a row
GAIN = 3.0  # weights scaled up from PyTorch's default init so that both LIB layers fire
SPIKE = tt.autograd.spike_fn("atan")  # LIB's default spike_fn

PLAIN = "plain PyTorch, per-step loop"
STEPS = "tracetorch, step mode"
SEQUENCE = "tracetorch, sequence mode"
COMPILED = "tracetorch, sequence mode, compile=True"
FLOOR = "floor: the three Linear layers only"
TRIVIAL = "torch.compile'd x + 1 (dynamo's cost)"
JELLY = "SpikingJelly, multi-step LIFNode"


class TTNet(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        i, h1, h2, o = SIZES
        self.fc1, self.lib1 = nn.Linear(i, h1), tt.snn.LIB(h1)
        self.fc2, self.lib2 = nn.Linear(h1, h2), tt.snn.LIB(h2)
        self.fc3, self.li = nn.Linear(h2, o), tt.snn.LI(o)
        with torch.no_grad():
            for fc in (self.fc1, self.fc2, self.fc3):
                fc.weight.mul_(GAIN)
            for lib in (self.lib1, self.lib2):  # not the defaults, so that each one counts
                lib.raw_bias.uniform_(-0.2, 0.2)
                lib.raw_beta.add_(torch.rand_like(lib.raw_beta) - 0.5)
                lib.raw_threshold.add_(torch.rand_like(lib.raw_threshold) - 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.li(self.fc3(self.lib2(self.fc2(self.lib1(self.fc1(x))))))


class PlainNet(nn.Module):
    """The same network as one writes it by hand: a loop over time, states in locals."""

    def __init__(self, source: TTNet) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = copy_linears(source)
        # the names of the tracetorch parameters, "." replaced by "_" (see grads())
        for name, p in source.named_parameters():
            if not name.startswith("fc"):
                self.register_parameter(name.replace(".", "_"), nn.Parameter(p.detach().clone()))
        self.baked: tuple[Tensor, ...] | None = None  # set by bake()

    def bake(self) -> None:
        with torch.no_grad():
            self.baked = self.neuron_values()

    def neuron_values(self) -> tuple[Tensor, ...]:
        """``(beta1, threshold1, bias1, beta2, threshold2, bias2, beta3)``, transforms applied."""
        if self.baked is not None:
            return self.baked
        return (
            torch.sigmoid(self.lib1_raw_beta),
            F.softplus(self.lib1_raw_threshold),
            self.lib1_raw_bias,
            torch.sigmoid(self.lib2_raw_beta),
            F.softplus(self.lib2_raw_threshold),
            self.lib2_raw_bias,
            torch.sigmoid(self.li_raw_beta),
        )

    def forward(self, xs: Tensor) -> Tensor:
        beta1, threshold1, bias1, beta2, threshold2, bias2, beta3 = self.neuron_values()
        mem1, mem2, mem3 = (xs.new_zeros(xs.shape[1], n) for n in SIZES[1:])
        outs = []
        for x in xs:
            mem1 = mem1 * beta1 + self.fc1(x)
            s1 = SPIKE(mem1 + bias1 - threshold1)
            mem1 = mem1 - s1 * threshold1
            mem2 = mem2 * beta2 + self.fc2(s1)
            s2 = SPIKE(mem2 + bias2 - threshold2)
            mem2 = mem2 - s2 * threshold2
            mem3 = mem3 * beta3 + self.fc3(s2)
            outs.append(mem3)
        return torch.stack(outs)

    def floor(self, xs: Tensor) -> Tensor:
        """The three Linear layers alone, each over all steps at once (no neurons)."""
        return self.fc3(self.fc2(self.fc1(xs)))

    def grads(self) -> dict[str, Tensor]:
        """The gradients by the name of the matching tracetorch parameter."""
        return {
            name.replace("_raw", ".raw") if name.startswith("l") else name: p.grad
            for name, p in self.named_parameters()
        }


def run_sequence(model: tt.Model, xs: Tensor, compile: bool = False) -> Tensor:
    model.zero_states()
    return tt.run(model, xs, mode="sequence", compile=compile)


def loss(out: Tensor) -> None:
    out.square().mean().backward()


def spikingjelly(source: TTNet) -> Callable[[Tensor], Tensor] | None:
    """SpikingJelly's multi-step LIF network with the same Linear weights, or ``None``.

    Not a dependency (run with SpikingJelly 2.0.0, installed beside the project). Its LIF with
    ``decay_input=False, v_reset=None`` is ``v = (1 - 1/tau) v + x`` with reset by
    subtraction; the output layer fires too (SpikingJelly has no plain leaky integrator).
    """
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except ImportError:
        return None
    try:
        nodes = [
            neuron.LIFNode(
                tau=10.0,  # beta = 0.9
                decay_input=False,
                v_reset=None,
                surrogate_function=surrogate.ATan(),
                step_mode="m",
            )
            for _ in range(3)
        ]
        fcs = copy_linears(source)
        net = nn.Sequential(*(m for pair in zip(fcs, nodes, strict=True) for m in pair))

        def run(xs: Tensor) -> Tensor:
            functional.reset_net(net)
            return net(xs)

        run(torch.rand(2, 1, SIZES[0]))
        return run
    except Exception as error:  # an API that changed: report, keep benchmarking
        print(f"skipping SpikingJelly: {type(error).__name__}: {error}")
        return None


def peak_memory(fn: Callable[[], object]) -> int | None:
    """The most bytes torch's CPU allocator held during ``fn()`` above what it held before.

    ``None`` where this version of the profiler does not report its allocations.
    """
    from torch.profiler import ProfilerActivity, profile

    # tracetorch's scans keep their sequence buffers for the next call: let them go, so that
    # this run allocates its own and they count
    tt.autograd.empty_cache()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:  # the profiler's event tree: an experimental API
        from torch._C._profiler import _EventType

        nodes = list(prof.profiler.kineto_results.experimental_event_tree())
    except (ImportError, AttributeError):
        return None
    events = []
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        if node.tag == _EventType.Allocation:
            fields = node.extra_fields
            events.append((node.start_time_ns, fields.alloc_size, fields.total_allocated))
    if not events:
        return None
    events.sort()
    _, size, total = events[0]
    before = total - size
    return max(total for _, _, total in events) - before


def compile_time(fn: Callable[[], object]) -> float:
    """Seconds of the first call of ``fn`` (the compile), inductor's caches disabled."""
    import torch._inductor.config

    torch._inductor.config.force_disable_caches = True
    try:
        with warnings.catch_warnings():  # that this also turns off profile-guided recompiles
            warnings.filterwarnings("ignore", "dynamo_pgo force disabled")
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
    finally:
        torch._inductor.config.force_disable_caches = False


def check_same(ours: TTNet, plain: PlainNet, steps: int) -> None:
    """Sequence mode and step mode give the plain loop's outputs and gradients."""
    xs = torch.rand(steps, 64, SIZES[0])
    expected = plain(xs)
    plain.zero_grad()
    loss(expected)
    grads = plain.grads()
    rates: dict[str, float] = {}
    hooks = [
        lib.register_forward_hook(lambda m, i, out, name=name: rates.update({name: out.mean()}))
        for name, lib in (("lib1", ours.lib1), ("lib2", ours.lib2))
    ]
    for run in (run_sequence, run_tt):
        ours.zero_grad()
        out = run(ours, xs)
        torch.testing.assert_close(out, expected)
        loss(out)
        for name, p in ours.named_parameters():
            torch.testing.assert_close(p.grad, grads[name], msg=lambda m, n=name: f"{n}: {m}")
    for hook in hooks:
        hook.remove()
    assert all(0 < rate < 1 for rate in rates.values()), f"firing rates {rates}: vacuous check"
    ours.zero_grad()
    plain.zero_grad()


def repeats_at(steps: int, repeats: int) -> int:
    """Fewer repeats beyond 25 steps (about the same time per table), but at least 3."""
    return max(min(3, repeats), round(repeats * min(1.0, 25 / steps)))


def network_tables(
    ours: TTNet,
    plain: PlainNet,
    jelly: Callable[[Tensor], Tensor] | None,
    steps: int,
    repeats: int,
    compile_inference: bool,
    compile_training: bool,
    check: bool,
) -> str:
    """Training, memory and inference tables at ``steps`` timesteps; returns the summary.

    ``check``: first check that tracetorch gives the plain loop's outputs in inference too
    (without autograd both run other kernels: tracetorch fuses its updates).
    """
    xs = torch.rand(steps, 64, SIZES[0])
    train = {
        PLAIN: lambda: loss(plain(xs)),
        STEPS: lambda: loss(run_tt(ours, xs)),
        SEQUENCE: lambda: loss(run_sequence(ours, xs)),
        FLOOR: lambda: loss(plain.floor(xs)),
    }
    if jelly is not None:
        train[JELLY] = lambda: loss(jelly(xs))
    compiled = {}
    if compile_training:
        compiled["training"] = compile_time(lambda: loss(run_sequence(ours, xs, compile=True)))
        train[COMPILED] = lambda: loss(run_sequence(ours, xs, compile=True))
    print(f"\nT = {steps}")
    train_t = medians_table(
        f"training (batch 64, forward + backward), {repeats} repeats",
        train,
        repeats,
        {"plain": PLAIN},
    )

    print("peak memory of one training run (batch 64), torch's CPU allocations")
    memory: dict[str, int | None] = {}
    for key in (PLAIN, STEPS, SEQUENCE, FLOOR):
        for p in (*ours.parameters(), *plain.parameters()):
            p.grad = None
        memory[key] = peak_memory(train[key])
    for key, size in memory.items():
        if size is None or memory[PLAIN] is None:
            print(f"    {key:<40} (the profiler reports no allocations here)")
        else:
            ratio = size / memory[PLAIN]
            print(f"    {key:<40} {size / 2**20:8.1f} MiB   ratio vs plain {ratio:6.3f}")

    xs1 = torch.rand(steps, 1, SIZES[0])
    ours.TTcompile()
    plain.bake()
    with torch.inference_mode():
        if check:
            torch.testing.assert_close(run_sequence(ours, xs1), plain(xs1))
            torch.testing.assert_close(run_tt(ours, xs1), plain(xs1))
        infer = {
            PLAIN: lambda: plain(xs1),
            STEPS: lambda: run_tt(ours, xs1),
            SEQUENCE: lambda: run_sequence(ours, xs1),
            FLOOR: lambda: plain.floor(xs1),
        }
        if jelly is not None:
            infer[JELLY] = lambda: jelly(xs1)
        if compile_inference:
            compiled["inference"] = compile_time(lambda: run_sequence(ours, xs1, compile=True))
            expected = run_sequence(ours, xs1)
            torch.testing.assert_close(run_sequence(ours, xs1, compile=True), expected)
            infer[COMPILED] = lambda: run_sequence(ours, xs1, compile=True)
            # what any compiled call costs here, whatever it computes: the dynamo entry, the
            # guard check and the compiled region's wrappers around one small kernel
            trivial = torch.compile(lambda x: x + 1, options={"cpp_wrapper": True})
            trivial(xs1)
            infer[TRIVIAL] = lambda: trivial(xs1)
        infer_t = medians_table(
            f"inference (batch 1, TTcompile'd, inference_mode), {repeats * 4} repeats, "
            f"call by call",
            infer,
            repeats * 4,
            {"plain": PLAIN},
        )
        by_position: dict[str, list[float]] = {}
        burst_t = medians_table(
            f"the same, in bursts of {BURST} calls, {repeats} repeats",
            infer,
            repeats,
            {"plain": PLAIN},
            burst=BURST,
            positions=by_position,
        )
    print(f"the bursts call by call: median ms of the 1st, 2nd, ... {BURST}th call in a row")
    for key, seconds in by_position.items():
        print(f"    {key:<40} " + " ".join(f"{t * 1e3:6.3f}" for t in seconds))
    ours.TTdecompile()
    plain.baked = None
    for kind, seconds in compiled.items():
        print(f"compile=True, {kind}: the first call (the compile) took {seconds:.1f} s")

    line = f"T = {steps}: sequence mode ratio vs the plain loop: training "
    line += f"{train_t[SEQUENCE] / train_t[PLAIN]:.3f}"
    if COMPILED in train_t:
        line += f" (compiled {train_t[COMPILED] / train_t[PLAIN]:.3f}, "
        line += f"compile {compiled['training']:.0f} s)"
    for kind, t in (("call by call", infer_t), (f"in bursts of {BURST}", burst_t)):
        line += f", batch-1 inference {kind} {t[SEQUENCE] / t[PLAIN]:.3f}"
        if COMPILED in t:
            line += f" (compiled {t[COMPILED] / t[PLAIN]:.3f})"
    if COMPILED in by_position:
        last = by_position[COMPILED][-1] / by_position[PLAIN][-1]
        line += f", compiled, the {BURST}th call of a burst {last:.3f}"
    if "inference" in compiled:
        line += f", compile {compiled['inference']:.0f} s"
    if memory[SEQUENCE] is not None and memory[PLAIN] is not None:
        line += f", peak training memory {memory[SEQUENCE] / memory[PLAIN]:.3f}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script only")
    parser.add_argument("--repeats", type=int, default=30, help="training repeats at T = 25")
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 100, 500])
    parser.add_argument(
        "--compile-steps",
        type=int,
        nargs="*",
        default=None,
        help="sequence lengths at which compile=True is timed for inference (default: 25; "
        "the compile takes longer the longer the sequence: minutes at 100)",
    )
    parser.add_argument(
        "--compile-training",
        action="store_true",
        help="also time compile=True in training at the first of --steps (a slow compile)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.repeats, args.steps = 1, [3, 4]
    compile_steps = args.compile_steps
    if compile_steps is None:
        compile_steps = [] if args.smoke else [25]
    torch.manual_seed(0)

    ours = TTNet()
    plain = PlainNet(ours)
    jelly = spikingjelly(ours)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, network "
        f"Linear-LIB-Linear-LIB-Linear-LI {SIZES}; SpikingJelly: "
        f"{'found' if jelly else 'not found'}"
    )
    check_same(ours, plain, args.steps[0])
    summary = [
        network_tables(
            ours,
            plain,
            jelly,
            steps,
            repeats_at(steps, args.repeats),
            compile_inference=steps in compile_steps,
            compile_training=args.compile_training and steps == args.steps[0],
            check=steps == args.steps[0],
        )
        for steps in args.steps
    ]
    gru = gru_tables(args.repeats * 4)  # 120 by default: the GRU ratios sit near their targets
    print("\nsummary (targets at T = 25: training <= 0.70, batch-1 inference <= 0.20)")
    for line in (*summary, gru):
        print(f"    {line}")


def gru_tables(repeats: int) -> str:
    """``tt.rnn.GRU`` against ``nn.GRU`` and an ``nn.GRUCell`` loop; returns the summary."""
    xs = torch.rand(50, 32, 64)
    torch_gru, torch_cell = nn.GRU(64, 128), nn.GRUCell(64, 128)
    ours_seq, ours_step = tt.rnn.GRU.from_torch(torch_gru), tt.rnn.GRU.from_torch(torch_cell)

    def cell_loop(xs: Tensor) -> Tensor:
        h = xs.new_zeros(xs.shape[1], 128)
        outs = []
        for x in xs:
            h = torch_cell(x, h)
            outs.append(h)
        return torch.stack(outs)

    pairs = (
        (ours_seq, lambda: run_sequence(ours_seq, xs), torch_gru, lambda: torch_gru(xs)[0]),
        (ours_step, lambda: run_tt(ours_step, xs), torch_cell, lambda: cell_loop(xs)),
    )
    for ours, run_ours, theirs, run_theirs in pairs:  # the same outputs and gradients
        out = run_ours()
        torch.testing.assert_close(out, run_theirs(), atol=1e-5, rtol=1e-4)
        for module, y in ((ours, out), (theirs, run_theirs())):
            module.zero_grad()
            loss(y)
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)

    names = ("tt.rnn.GRU, sequence mode", "nn.GRU", "tt.rnn.GRU, step mode", "nn.GRUCell loop")
    t = medians_table(
        "GRU [50, 32, 64] -> 128, forward + backward",
        {
            names[0]: lambda: loss(run_sequence(ours_seq, xs)),
            names[1]: lambda: loss(torch_gru(xs)[0]),
            names[2]: lambda: loss(run_tt(ours_step, xs)),
            names[3]: lambda: loss(cell_loop(xs)),
        },
        repeats,
        {"nn.GRU": names[1], "cell loop": names[3]},
    )
    return (
        f"GRU ratio: sequence mode vs nn.GRU {t[names[0]] / t[names[1]]:.3f}, step mode vs "
        f"the nn.GRUCell loop {t[names[2]] / t[names[3]]:.3f} (targets <= 1.05)"
    )


if __name__ == "__main__":
    main()
