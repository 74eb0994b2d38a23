"""Hand-written backward passes at work: a network built from ``tracetorch.autograd``.

Every operation of the network below is a custom :class:`torch.autograd.Function` from
:mod:`tracetorch.autograd` whose backward pass was derived by hand:

    x -> Linear -> LearnedSiLU -> Linear -> Tanh -> Linear -> prediction
    loss = mean(Square(prediction - target))

It learns a smooth 2-D function for a few hundred steps. At every step the gradients of all
parameters are also computed by PyTorch's own autograd on the same expression written with
ordinary operations (``F.linear``, ``slope * F.silu``, ``torch.tanh``, ``** 2``), and the
largest absolute difference is tracked. The script exits with status 1 if the two ever
disagree.

Run: ``python examples/custom_autograd.py`` (``--quick`` for a tiny run, ``--help`` for the
options). Writes ``custom_autograd.png`` (loss curve and gradient agreement) into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from tracetorch import autograd as ag

TOLERANCE = 1e-10  # float64: the two backward passes differ only by rounding


def init_params(hidden: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Weights ``[out, in]``, biases ``[out]`` (broadcast over the batch) and a slope per unit."""

    def uniform(*shape: int, fan_in: int) -> Tensor:
        bound = 1 / math.sqrt(fan_in)
        return (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound

    return {
        "W1": uniform(hidden, 2, fan_in=2),
        "b1": uniform(hidden, fan_in=2),
        "slope": torch.ones(hidden, dtype=torch.float64),
        "W2": uniform(hidden, hidden, fan_in=hidden),
        "b2": uniform(hidden, fan_in=hidden),
        "W3": uniform(1, hidden, fan_in=hidden),
        "b3": uniform(1, fan_in=hidden),
    }


def loss_custom(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
    """The loss through the hand-written Functions of ``tracetorch.autograd``."""
    h = ag.learned_silu(ag.linear(x, p["W1"], p["b1"]), p["slope"])
    h = ag.tanh(ag.linear(h, p["W2"], p["b2"]))
    prediction = ag.linear(h, p["W3"], p["b3"])
    return ag.square(prediction - y).mean()


def loss_pytorch(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
    """The same loss with PyTorch's built-in operations (differentiated by PyTorch)."""
    h = p["slope"] * F.silu(F.linear(x, p["W1"], p["b1"]))
    h = torch.tanh(F.linear(h, p["W2"], p["b2"]))
    prediction = F.linear(h, p["W3"], p["b3"])
    return ((prediction - y) ** 2).mean()


def compare_with_pytorch(
    params: dict[str, Tensor], x: Tensor, y: Tensor
) -> tuple[Tensor, dict[str, Tensor], dict[str, float]]:
    """Gradients of the custom loss, and their largest difference from PyTorch's, per parameter.

    Returns:
        ``(loss, gradients, differences)``: the custom loss, its gradient for every
        parameter, and ``max |custom - pytorch|`` for every parameter.
    """
    names = list(params)
    loss = loss_custom(params, x, y)
    ours = torch.autograd.grad(loss, [params[n] for n in names])
    reference_loss = loss_pytorch(params, x, y)
    theirs = torch.autograd.grad(reference_loss, [params[n] for n in names])
    differences = {
        n: (a - b).abs().max().item() for n, a, b in zip(names, ours, theirs, strict=True)
    }
    differences["loss"] = (loss - reference_loss).abs().item()
    return loss.detach(), dict(zip(names, ours, strict=True)), differences


def make_data(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Points of ``[-2, 2]^2`` and the target ``sin(x1) * cos(x2)``."""
    x = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 4 - 2
    return x, (torch.sin(x[:, :1]) * torch.cos(x[:, 1:]))


def save_figure(losses: list[float], worst: list[float], path: Path) -> None:
    """Loss curve and the largest gradient difference of every step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_diff) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(losses)
    ax_loss.set(xlabel="step", ylabel="MSE", yscale="log", title="training loss")
    ax_diff.plot([max(w, 1e-20) for w in worst], color="C2")
    ax_diff.axhline(TOLERANCE, ls="--", color="0.5", label="tolerance")
    ax_diff.set(
        xlabel="step", ylabel="max |custom - PyTorch|", yscale="log", title="gradient agreement"
    )
    ax_diff.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a network of hand-written Functions, checking every gradient.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=150, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="points per batch")
    parser.add_argument("--samples", type=int, default=256, help="training points")
    parser.add_argument("--hidden", type=int, default=16, help="hidden units")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="random seed of data and weights")
    parser.add_argument("--out", default=".", metavar="DIR", help="folder for the files written")
    parser.add_argument(
        "--quick", action="store_true", help="tiny run for tests: few samples and epochs"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train, check every step's gradients; returns the exit status (0: all agreed)."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs, samples = (15, 128) if args.quick else (args.epochs, args.samples)
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead

    generator = torch.Generator().manual_seed(args.seed)
    params = {k: v.requires_grad_() for k, v in init_params(args.hidden, generator).items()}
    x_train, y_train = make_data(samples, generator)
    optimizer = torch.optim.Adam(params.values(), lr=args.lr)

    loss, grads, differences = compare_with_pytorch(params, x_train, y_train)
    print(f"initial loss {loss.item():.4f}; gradients of the hand-written backward passes:")
    for name, grad in grads.items():
        print(
            f"  d loss / d {name:5s} shape {list(grad.shape)!s:9s} norm {grad.norm().item():.4e}"
            f"  max |custom - PyTorch| {differences[name]:.1e}"
        )

    losses, worst = [], []  # of every step
    report_every = max(epochs // 10, 1)
    show_bar = sys.stdout.isatty()
    for epoch in tqdm(range(1, epochs + 1), desc="training", unit="epoch", disable=not show_bar):
        total = 0.0
        for batch in torch.randperm(len(x_train), generator=generator).split(args.batch_size):
            loss, grads, differences = compare_with_pytorch(params, x_train[batch], y_train[batch])
            for name, grad in grads.items():
                params[name].grad = grad
            optimizer.step()
            losses.append(loss.item())
            worst.append(max(differences.values()))
            total += loss.item() * len(batch)
        if epoch == 1 or epoch % report_every == 0:
            tqdm.write(f"epoch {epoch:3d}  loss {total / len(x_train):.4f} (mean over the epoch)")

    with torch.no_grad():
        final = loss_custom(params, x_train, y_train).item()
    print(
        f"loss: {losses[0]:.4f} at the first step, {final:.4f} on all data after {len(losses)} "
        f"steps ({epochs} epochs)"
    )
    print(f"max abs difference between custom and PyTorch gradients: {max(worst):.3e}")
    figure_path = out / "custom_autograd.png"
    save_figure(losses, worst, figure_path)
    print("files written:", f"  {figure_path}", sep="\n")
    if max(worst) > TOLERANCE:
        print(f"FAILED: the gradients disagree by more than {TOLERANCE:g}", file=sys.stderr)
        return 1
    print("the hand-written gradients agree with PyTorch's autograd")
    return 0


if __name__ == "__main__":
    sys.exit(main())
