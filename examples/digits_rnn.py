"""Classify handwritten digits read one row at a time by a tracetorch recurrent layer.

scikit-learn's bundled 8x8 digits (``sklearn.datasets.load_digits``, shipped with the
package: nothing is downloaded) are read row by row, a sequence of 8 timesteps of 8 pixels.
A :class:`tracetorch.rnn.GRU` (``--cell lstm``: :class:`~tracetorch.rnn.LSTM`, ``--cell rnn``:
:class:`~tracetorch.rnn.SimpleRNN`) keeps its hidden state between the rows inside a
:class:`tracetorch.Model`; a linear readout of the state after the last row gives the class.
Training is backpropagation through time with Adam, on one CPU thread (the matrices are tiny).

Run ``python examples/digits_rnn.py`` (about 10 s, test accuracy about 0.98; ``--quick`` for
a tiny run, ``--help`` for the options). Writes ``digits_rnn_training.png`` (loss and test
accuracy per epoch) and ``digits_rnn_hidden.png`` (the hidden state of one test digit, row by
row) into ``--out`` and ends by printing ``test accuracy: 0.xxx``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn
from tqdm import tqdm

import tracetorch as tt

TARGET_ACCURACY = 0.93
ROWS = 8  # timesteps: one per image row
PIXELS = 8  # features per timestep: the pixels of a row
CLASSES = 10


class RowReader(tt.Model):
    """A recurrent layer that reads one image row per call, and a linear readout."""

    def __init__(self, hidden: int, cell: str) -> None:
        super().__init__()
        layer_type = {"rnn": tt.rnn.SimpleRNN, "gru": tt.rnn.GRU, "lstm": tt.rnn.LSTM}[cell]
        self.rnn = layer_type(PIXELS, hidden)
        self.readout = nn.Linear(hidden, CLASSES)

    def forward(self, row: Tensor) -> Tensor:
        return self.readout(self.rnn(row))

    def read(self, images: Tensor) -> Tensor:
        """Logits after the last row of each image ``[B, ROWS, PIXELS]``, from zero states."""
        self.zero_states()
        for t in range(ROWS):
            logits = self(images[:, t])
        return logits


def load_data(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The digits as ``[N, ROWS, PIXELS]`` images in [0, 1]: a stratified 75/25 split."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, stratify=labels, random_state=seed
    )
    return x_train, x_test, y_train, y_test


@torch.no_grad()
def accuracy(model: RowReader, images: Tensor, labels: Tensor) -> float:
    return (model.read(images).argmax(dim=-1) == labels).float().mean().item()


def plot_training(losses: list[float], accuracies: list[float], path: Path) -> None:
    epochs = range(1, len(losses) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, losses, marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title="Loss")
    ax_acc.plot(epochs, accuracies, marker="o", color="tab:green")
    ax_acc.axhline(TARGET_ACCURACY, color="grey", linestyle="--", linewidth=1)
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="Test accuracy", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def plot_hidden(model: RowReader, image: Tensor, label: int, path: Path) -> None:
    """The image, the hidden state after each row, and the class probabilities per row."""
    model.zero_states()
    hidden, probabilities = [], []
    for t in range(ROWS):
        logits = model(image[None, t])
        hidden.append(model.rnn.h[0].clone())
        probabilities.append(logits[0].softmax(dim=-1))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), width_ratios=(1, 3, 1.5))
    axes[0].imshow(image.numpy(), cmap="gray_r")
    axes[0].set(title=f"digit {label}, read row by row", xticks=[], ylabel="row (timestep)")
    shown = axes[1].imshow(
        torch.stack(hidden).numpy(), aspect="auto", cmap="coolwarm", vmin=-1, vmax=1
    )
    axes[1].set(title="hidden state h after each row", xlabel="hidden unit", ylabel="row")
    fig.colorbar(shown, ax=axes[1])
    axes[2].imshow(
        torch.stack(probabilities).numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1
    )
    axes[2].set(title="readout probability", xlabel="class", ylabel="row", xticks=range(10))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--cell", choices=("rnn", "gru", "lstm"), default="gru", help="the recurrent layer"
    )
    parser.add_argument("--hidden", type=int, default=128, help="hidden units")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch")
    parser.add_argument("--lr", type=float, default=5e-3, help="initial Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="random seed of split and weights")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads for torch (small layers: 1 is fastest)"
    )
    parser.add_argument("--out", default=".", metavar="DIR", help="folder for the files written")
    parser.add_argument(
        "--quick", action="store_true", help="tiny run for tests: few samples and epochs"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # The matrices are tiny (batch 32, 128 units): a second thread brings nothing, and on a
    # busy machine threads waiting for each other cost many times the work itself.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, min(args.threads, cores or 1)))
    torch.manual_seed(args.seed)
    x_train, x_test, y_train, y_test = load_data(args.seed)
    epochs = args.epochs
    if args.quick:
        x_train, y_train, epochs = x_train[:300], y_train[:300], 1

    model = RowReader(args.hidden, args.cell)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(args.seed)
    losses, accuracies = [], []
    progress = tqdm(
        range(1, epochs + 1),
        desc=f"training {args.cell.upper()}",
        unit="epoch",
        disable=not sys.stdout.isatty(),
    )
    for epoch in progress:
        model.train()
        total, count = 0.0, 0
        for batch in torch.randperm(len(x_train), generator=generator).split(args.batch_size):
            logits = model.read(x_train[batch])  # backpropagation through the 8 rows
            loss = nn.functional.cross_entropy(logits, y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(batch), count + len(batch)
        scheduler.step()
        model.eval()
        losses.append(total / count)
        accuracies.append(accuracy(model, x_test, y_test))
        tqdm.write(
            f"epoch {epoch:3d}  loss {losses[-1]:.4f} (mean over the epoch)  "
            f"test accuracy {accuracies[-1]:.3f}"
        )

    training_path, hidden_path = out / "digits_rnn_training.png", out / "digits_rnn_hidden.png"
    plot_training(losses, accuracies, training_path)
    plot_hidden(model, x_test[0], int(y_test[0]), hidden_path)
    print("files written:", *(f"  {path}" for path in (training_path, hidden_path)), sep="\n")
    print(f"test accuracy: {accuracies[-1]:.3f}")
    return accuracies[-1]


if __name__ == "__main__":
    arguments = sys.argv[1:]
    final = main(arguments)
    if "--quick" not in arguments and final < TARGET_ACCURACY:
        sys.exit(f"digits_rnn: test accuracy {final:.3f} is below {TARGET_ACCURACY}")
