"""The Exciter network: custom gradients and callbacks that run during backward.

The network is ``Linear(5 -> 3) -> Exciter(3) -> MaskedLinear(3 -> 3, diagonal) -> ReLU ->
Linear(3 -> 1)``. On the way back:

- the ``Exciter`` passes the gradient only where its input lay within ``[-10, 10]`` (a clamped
  input gets zero gradient), then calls its backward callbacks under ``torch.no_grad()``;
- the ``MaskedLinear`` weight gets gradient on its diagonal only: each hidden neuron feeds
  only its own successor.

The callback here looks at the gradient arriving at the Exciter's output and probes the
network on held-out data (an extra forward pass, which builds no graph because callbacks run
under ``no_grad``). The task is made up on the spot: a regression target that this small
network can represent exactly, plus a little noise.

Run: ``python examples/exciter_network.py`` (``--quick`` for a tiny run, ``--help`` for the
options). Writes the loss curve ``exciter_network_loss.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

import tracetorch as tt


def build_network() -> nn.Sequential:
    """``Linear(5, 3) -> Exciter(3) -> MaskedLinear(3, 3, diagonal) -> ReLU -> Linear(3, 1)``."""
    return nn.Sequential(
        nn.Linear(5, 3),
        tt.snn.Exciter(3),
        tt.nn.MaskedLinear(3, 3, mask="diagonal"),
        nn.ReLU(),
        nn.Linear(3, 1),
    )


def make_data(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Inputs ``[n, 5]`` and targets ``[n, 1]``: two rectified projections plus noise.

    The inputs are wide (standard deviation 4), so the first layer sometimes drives the
    Exciter beyond its clamp, where the gradient stops.
    """
    x = 4 * torch.randn(n, 5, generator=generator)
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0, 1.0], [0.0, 1.0, 1.0, -1.5, 0.5]]) / 4
    hidden = torch.relu(x @ w.T)
    y = hidden[:, :1] - 0.5 * hidden[:, 1:] + 0.05 * torch.randn(n, 1, generator=generator)
    return x, y


class GradientReporter:
    """A backward callback: reports the gradient at the Exciter and probes the test loss."""

    def __init__(self, model: nn.Module, x_test: Tensor, y_test: Tensor, every: int) -> None:
        self.model, self.x_test, self.y_test, self.every = model, x_test, y_test, every
        self.calls = 0
        self.probes: list[tuple[int, float]] = []  # (backward call, test loss)

    def __call__(self, layer: tt.snn.Exciter, grad_output: Tensor) -> None:
        self.calls += 1
        if self.calls != 1 and self.calls % self.every != 0:
            return
        # Runs under no_grad: this probe builds no graph and leaves the backward alone.
        test_loss = nn.functional.mse_loss(self.model(self.x_test), self.y_test).item()
        self.probes.append((self.calls, test_loss))
        tqdm.write(
            f"[callback] backward {self.calls:4d}: grad at the Exciter output "
            f"{list(grad_output.shape)}, mean |grad| {grad_output.abs().mean().item():.2e}, "
            f"grad enabled: {torch.is_grad_enabled()}, probed test loss {test_loss:.4f}"
        )


def save_figure(losses: list[float], probes: list[tuple[int, float]], path: Path) -> None:
    """Plot the training loss and the probed test loss against the training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, label="training loss")
    if probes:
        steps, values = zip(*probes, strict=True)
        ax.plot(steps, values, "o", label="test loss (probed in the callback)")
    ax.set(xlabel="step", ylabel="MSE", yscale="log", title="Exciter network")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the Exciter network on a toy regression, with a backward callback.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=75, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="points per batch")
    parser.add_argument("--samples", type=int, default=512, help="training points")
    parser.add_argument("--lr", type=float, default=3e-2, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="random seed of data and weights")
    parser.add_argument("--out", default=".", metavar="DIR", help="folder for the files written")
    parser.add_argument(
        "--quick", action="store_true", help="tiny run for tests: few samples and epochs"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[float]:
    """Train the network; returns the training loss of every step."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs, samples = (20, 256) if args.quick else (args.epochs, args.samples)

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    x_train, y_train = make_data(samples, generator)
    x_test, y_test = make_data(256, generator)
    model = build_network()
    steps = epochs * -(-samples // args.batch_size)
    reporter = GradientReporter(model, x_test, y_test, every=max(steps // 5, 1))
    handle = model[1].register_backward_callback(reporter)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    losses = []  # of every step
    report_every = max(epochs // 10, 1)
    show_bar = sys.stdout.isatty()
    for epoch in tqdm(range(1, epochs + 1), desc="training", unit="epoch", disable=not show_bar):
        total = 0.0
        for batch in torch.randperm(samples, generator=generator).split(args.batch_size):
            loss = nn.functional.mse_loss(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()  # calls the reporter once, from inside the backward pass
            optimizer.step()
            losses.append(loss.item())
            total += loss.item() * len(batch)
        if epoch == 1 or epoch % report_every == 0:
            tqdm.write(f"epoch {epoch:3d}  loss {total / samples:.4f} (mean over the epoch)")
    handle.remove()

    off_diagonal = model[2].weight.grad[~model[2].mask].abs().max().item()
    print(f"largest gradient off the MaskedLinear diagonal: {off_diagonal}")
    with torch.no_grad():
        clamped = (model[0](x_test).abs() > 10).float().mean().item()
    print(f"Exciter inputs beyond the clamp (zero gradient) on the test set: {clamped:.1%}")
    figure_path = out / "exciter_network_loss.png"
    save_figure(losses, reporter.probes, figure_path)
    print("files written:", f"  {figure_path}", sep="\n")
    return losses


if __name__ == "__main__":
    main()
