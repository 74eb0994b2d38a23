"""Quickstart: train a small stateful network for a few seconds and watch its loss fall.

The task is made up on the spot: each sequence is noise plus a sine wave whose frequency
says the class; a leaky integrator (``tt.snn.Decay``) followed by a ``tt.rnn.MiniGRU`` reads it
one timestep per call, and a linear readout classifies it from the last step.

Run: ``python examples/quickstart.py`` (``--quick`` for a seconds-long run). Saves the loss
curve as ``quickstart_loss.png`` in the current directory.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn
from tqdm import tqdm

import tracetorch as tt


class Net(tt.Model):
    def __init__(self, hidden: int = 32, classes: int = 3) -> None:
        super().__init__()
        self.encoder = nn.Linear(1, hidden)
        self.integrator = tt.snn.Decay(hidden, beta=0.8)
        self.rnn = tt.rnn.MiniGRU(hidden, hidden)
        self.readout = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.rnn(self.integrator(self.encoder(x))))


def make_batch(batch: int, steps: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences ``[steps, batch, 1]``: a noisy sine whose frequency encodes the label."""
    labels = torch.randint(classes, (batch,))
    t = torch.arange(steps).float().unsqueeze(1)
    waves = torch.sin(2 * math.pi * (labels + 1) * t / steps + torch.rand(batch) * 2 * math.pi)
    return (waves + 0.3 * torch.randn(steps, batch)).unsqueeze(-1), labels


def save_loss_curve(losses: list[float], path: str) -> None:
    """Plot the training loss of every iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses)
    ax.set(xlabel="iteration", ylabel="cross-entropy", title="Quickstart: training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description="Train a small stateful network.")
    parser.add_argument("--quick", action="store_true", help="a few iterations only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small tensors: extra threads only add overhead
    torch.manual_seed(0)
    iterations, steps, classes = (30 if args.quick else 300), 20, 3
    model = Net(classes=classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = torch.tensor(float("nan"))
    losses = []
    for it in tqdm(range(1, iterations + 1), desc="training", unit="it"):
        xs, labels = make_batch(64, steps, classes)
        model.zero_states()  # a new batch of sequences: forget the last one
        for x in xs:  # one timestep per call
            logits = model(x)
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if it == 1 or it % (iterations // 10) == 0:
            tqdm.write(f"iteration {it:4d}  loss {loss.item():.4f}")
    save_loss_curve(losses, "quickstart_loss.png")
    print("saved quickstart_loss.png")
    return loss.item()


if __name__ == "__main__":
    main()
