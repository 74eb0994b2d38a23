"""Quickstart: train a small stateful network, evaluate it, save its states and resume from them.

The task is made up on the spot: each sequence is noise plus a sine wave whose frequency
says the class; a leaky integrator (``tt.snn.Decay``) followed by a ``tt.rnn.MiniGRU`` reads it
one timestep per call, and a linear readout classifies it from the last step. The script
walks through the cycle of the documentation's quickstart page:

1. **train**: ``zero_states()`` before every batch, the loss on the output of the last step;
2. **evaluate**: ``TTcompile()`` first, then ``torch.inference_mode()``; afterwards
   ``TTdecompile()`` and ``zero_states()`` make the model ready to train again;
3. **save and load states**: ``save_states()`` halfway through a sequence, ``torch.save`` it
   beside the weights, load both into a fresh model, which finishes the sequence exactly as
   the uninterrupted model does.

Run: ``python examples/quickstart.py`` (``--quick`` for a tiny run, ``--help`` for the
options). Writes ``quickstart_loss.png`` (the loss of every iteration) and
``quickstart_checkpoint.pt`` (weights and states) into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

import tracetorch as tt

CLASSES = 3
BATCHES_PER_EPOCH = 30


class Net(tt.Model):
    def __init__(self, hidden: int = 32, classes: int = CLASSES) -> None:
        super().__init__()
        self.encoder = nn.Linear(1, hidden)
        self.integrator = tt.snn.Decay(hidden, beta=0.8)
        self.rnn = tt.rnn.MiniGRU(hidden, hidden)
        self.readout = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.rnn(self.integrator(self.encoder(x))))

    def classify(self, xs: torch.Tensor) -> torch.Tensor:
        """Logits after the last step of sequences ``[steps, batch, 1]``, from zero states."""
        self.zero_states()  # a new batch of sequences: forget the last one
        for x in xs:  # one timestep per call
            logits = self(x)
        # The last step has seen the whole sequence: only then is the frequency known.
        return logits


def make_batch(batch: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences ``[steps, batch, 1]``: a noisy sine whose frequency encodes the label."""
    labels = torch.randint(CLASSES, (batch,))
    t = torch.arange(steps).float().unsqueeze(1)
    waves = torch.sin(2 * math.pi * (labels + 1) * t / steps + torch.rand(batch) * 2 * math.pi)
    return (waves + 0.3 * torch.randn(steps, batch)).unsqueeze(-1), labels


def save_loss_curve(losses: list[float], path: Path) -> None:
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a small stateful network, evaluate it, save and restore its states.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per batch")
    parser.add_argument("--steps", type=int, default=20, help="timesteps per sequence")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="random seed of data and weights")
    parser.add_argument("--out", default=".", metavar="DIR", help="folder for the files written")
    parser.add_argument(
        "--quick", action="store_true", help="tiny run for tests: few samples and epochs"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> float:
    """Train, evaluate, save and resume; returns the test accuracy."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # small tensors: extra threads only add overhead
    torch.manual_seed(args.seed)
    epochs, batches = (3, 10) if args.quick else (args.epochs, BATCHES_PER_EPOCH)

    # 1. Train: backpropagation through the whole sequence, the loss on its last step.
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    losses, epoch_losses = [], []
    show_bar = sys.stdout.isatty()
    for epoch in tqdm(range(1, epochs + 1), desc="training", unit="epoch", disable=not show_bar):
        total = 0.0
        for _ in range(batches):
            xs, labels = make_batch(args.batch_size, args.steps)
            loss = nn.functional.cross_entropy(model.classify(xs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            total += loss.item()
        epoch_losses.append(total / batches)
        tqdm.write(f"epoch {epoch:3d}  loss {epoch_losses[-1]:.4f} (mean over the epoch)")

    # 2. Evaluate: bake the constrained parameters first, then run without autograd.
    xs_test, labels_test = make_batch(512, args.steps)
    model.TTcompile()
    with torch.inference_mode():
        accuracy = (model.classify(xs_test).argmax(dim=-1) == labels_test).float().mean().item()
    model.TTdecompile()  # the raw parameters back: the model could train again
    model.zero_states()  # states made under inference_mode cannot enter a graph

    # 3. Save the states halfway through a sequence, next to the weights, and resume from them.
    half = args.steps // 2
    checkpoint_path = out / "quickstart_checkpoint.pt"
    with torch.no_grad():
        model.zero_states()
        for x in xs_test[:half]:
            model(x)
        states = model.save_states()  # detached copies keyed "path.state": "integrator.mem", ...
        torch.save({"model": model.state_dict(), "states": states}, checkpoint_path)
        for x in xs_test[half:]:
            uninterrupted = model(x)

        fresh = Net()
        checkpoint = torch.load(checkpoint_path, weights_only=True)
        fresh.load_state_dict(checkpoint["model"])
        fresh.load_states(checkpoint["states"])
        for x in xs_test[half:]:
            resumed = fresh(x)
    print(
        f"saved the states {sorted(states)} after step {half} of {args.steps}; a fresh model "
        f"loaded from {checkpoint_path.name} ends the sequence with the same output: "
        f"{torch.allclose(resumed, uninterrupted)}"
    )

    loss_path = out / "quickstart_loss.png"
    save_loss_curve(losses, loss_path)
    print("files written:", *(f"  {path}" for path in (loss_path, checkpoint_path)), sep="\n")
    first, last = epoch_losses[0], epoch_losses[-1]
    print(f"mean loss: {first:.4f} in the first epoch, {last:.4f} in the last")
    print(f"test accuracy: {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
