"""Spiking digits: a LIF network classifies rate-coded 8x8 digits, trained through time.

scikit-learn's bundled handwritten digits (1797 images of 8x8 pixels, no download) are turned
into spike trains by rate coding: at every timestep each pixel fires with a probability equal
to its intensity. A network ``64 -> 128 LIF -> 10 LI``, written one timestep per call, runs
in sequence mode (every layer over all timesteps in one call, ``tt.run(..., mode="sequence")``;
the speed-up over step mode is printed first); the read-out's membrane, averaged over time,
gives the class scores. Training is plain
backpropagation through time with Adam, the spikes passing their gradient through the LIF
layer's surrogate derivative. A stratified quarter of the images is held out for testing.

Run: ``python examples/digits_snn.py`` (``--quick`` for a tiny run, ``--help`` for the
options). Writes ``digits_snn_raster.png`` (the spikes of one test digit) and
``digits_snn_training.png`` (loss and accuracy per epoch) into ``--out``. The last line
printed is ``test accuracy: 0.xxx``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

import tracetorch as tt


def load_data(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pixel intensities in ``[0, 1]`` (``[N, 64]``) and labels, split 75/25 stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=seed
    )
    return x_train, x_test, y_train, y_test


class SpikingClassifier(tt.Model):
    """``Linear -> LIF -> Linear -> LI``: spikes in, the read-out membrane out, one step a call."""

    def __init__(self, inputs: int = 64, hidden: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.lif = tt.snn.LIF(hidden, beta=0.9, threshold=1.0)
        self.fc2 = nn.Linear(hidden, classes)
        self.readout = tt.snn.LI(classes, beta=0.8)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.fc2(self.lif(self.fc1(x))))

    def classify(self, spikes: Tensor, mode: str = "sequence") -> Tensor:
        """Class scores ``[N, classes]`` for spike trains ``[T, N, F]``: the mean read-out.

        ``mode="sequence"`` runs each layer over all timesteps in one call, ``"step"`` one
        timestep per call; both compute the same scores (see ``tt.run``).
        """
        self.zero_states()  # every batch is a new set of sequences
        return self.run(spikes, mode=mode).mean(dim=0)


def time_modes(model: SpikingClassifier, spikes: Tensor, labels: Tensor) -> dict[str, float]:
    """Seconds per training batch (forward + backward) in each mode, median of a few runs."""
    times = {}
    for mode in ("step", "sequence"):
        runs = []
        for _ in range(6):
            start = time.perf_counter()
            loss = nn.functional.cross_entropy(model.classify(spikes, mode), labels)
            loss.backward()
            runs.append(time.perf_counter() - start)
        runs = runs[1:]  # the first run warms up
        times[mode] = sorted(runs)[len(runs) // 2]
    model.zero_grad()
    return times


@torch.no_grad()
def accuracy(model: SpikingClassifier, spikes: Tensor, labels: Tensor, batch: int = 512) -> float:
    """Fraction of correctly classified sequences."""
    correct = 0
    for start in range(0, len(labels), batch):
        scores = model.classify(spikes[:, start : start + batch])
        correct += (scores.argmax(dim=1) == labels[start : start + batch]).sum().item()
    return correct / len(labels)


def save_raster(
    model: SpikingClassifier, image: Tensor, spikes: Tensor, label: int, path: Path
) -> None:
    """Plot the input spikes, hidden spikes and read-out membranes of one test digit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with torch.no_grad(), tt.record(model, states=False, outputs=["lif", "readout"]) as seen:
        model.zero_states()
        model.run(spikes.unsqueeze(1), mode="sequence")  # one digit: a batch of one
    hidden_spikes, readout = seen["lif"][:, 0], seen["readout"][:, 0]

    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2), gridspec_kw={"width_ratios": [1, 2, 2, 2]})
    axes[0].imshow(image.reshape(8, 8), cmap="gray_r")
    axes[0].set_title(f"test digit (label {label})")
    axes[0].axis("off")
    tt.plot.raster(spikes, ax=axes[1])
    axes[1].set(title="input spikes (64 pixels)", ylabel="pixel")
    tt.plot.raster(hidden_spikes, ax=axes[2])
    axes[2].set(title=f"LIF spikes ({hidden_spikes.shape[1]} neurons)", ylabel="neuron")
    for c in range(readout.shape[1]):
        axes[3].plot(readout[:, c], lw=2.5 if c == label else 0.8, label=str(c))
    axes[3].set(xlabel="timestep", ylabel="membrane", title="LI read-out (bold: true class)")
    axes[3].legend(fontsize=6, ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_training_curve(losses: list[float], accuracies: list[float], path: Path) -> None:
    """Plot the mean training loss and the test accuracy of every epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(losses) + 1)
    fig, ax_loss = plt.subplots(figsize=(6, 3.5))
    ax_loss.plot(epochs, losses, "o-", color="C0")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Spiking digits")
    ax_acc = ax_loss.twinx()
    ax_acc.plot(epochs, accuracies, "s-", color="C1")
    ax_acc.set_ylabel("test accuracy", color="C1")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> float:
    """Train and evaluate; returns the final test accuracy."""
    parser = argparse.ArgumentParser(
        description="Classify rate-coded digits with a LIF network.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=15, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")
    parser.add_argument("--steps", type=int, default=20, help="timesteps per image")
    parser.add_argument("--lr", type=float, default=5e-3, help="initial Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, weights and spikes")
    parser.add_argument(
        "--mode",
        choices=("sequence", "step"),
        default="sequence",
        help="run each layer over all timesteps at once, or one timestep per call",
    )
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
    torch.set_num_threads(args.threads)
    epochs = 1 if args.quick else args.epochs

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    x_train, x_test, y_train, y_test = load_data(args.seed)
    if args.quick:
        x_train, y_train = x_train[:300], y_train[:300]
    # one fixed encoding for testing
    test_spikes = tt.encode.rate(x_test, args.steps, generator=generator)
    print(f"{len(x_train)} training and {len(x_test)} test images, {args.steps} timesteps each")

    model = SpikingClassifier()
    probe = tt.encode.rate(x_train[: args.batch_size], args.steps, generator=generator)
    times = time_modes(model, probe, y_train[: args.batch_size])
    print(
        f"one training batch: {1e3 * times['step']:.1f} ms in step mode, "
        f"{1e3 * times['sequence']:.1f} ms in sequence mode "
        f"(speed-up {times['step'] / times['sequence']:.1f}x); training in {args.mode} mode"
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    batches = -(-len(x_train) // args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * batches)
    losses, accuracies = [], []
    show_bar = sys.stdout.isatty()
    with tqdm(total=epochs * batches, desc="training", unit="batch", disable=not show_bar) as bar:
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(x_train), generator=generator)
            total, seen = 0.0, 0
            for start in range(0, len(order), args.batch_size):
                index = order[start : start + args.batch_size]
                # fresh spikes every batch
                spikes = tt.encode.rate(x_train[index], args.steps, generator=generator)
                scores = model.classify(spikes, args.mode)
                loss = nn.functional.cross_entropy(scores, y_train[index])
                optimizer.zero_grad()
                loss.backward()  # through every timestep of the batch
                optimizer.step()
                schedule.step()
                total, seen = total + loss.item() * len(index), seen + len(index)
                bar.update()
                bar.set_postfix(epoch=epoch, loss=f"{total / seen:.3f}")  # mean so far
            losses.append(total / len(x_train))
            accuracies.append(accuracy(model, test_spikes, y_test))
            tqdm.write(
                f"epoch {epoch:3d}  loss {losses[-1]:.4f} (mean over the epoch)  "
                f"test accuracy {accuracies[-1]:.3f}"
            )

    sample = 0
    raster_path, training_path = out / "digits_snn_raster.png", out / "digits_snn_training.png"
    save_raster(model, x_test[sample], test_spikes[:, sample], int(y_test[sample]), raster_path)
    save_training_curve(losses, accuracies, training_path)
    print("files written:", *(f"  {path}" for path in (raster_path, training_path)), sep="\n")
    print(f"finished in {time.perf_counter() - started:.1f} s")
    print(f"test accuracy: {accuracies[-1]:.3f}")
    return accuracies[-1]


if __name__ == "__main__":
    main()
