"""DistributedDataParallel on a tt.Model: two processes learn what one process learns.

Two CPU processes (gloo backend) each train the model wrapped in ``DistributedDataParallel``
on their half of a fixed batch; one process trains the same model on the whole batch. DDP
averages the gradients of the two halves, which equals the gradient of the mean loss over the
whole batch, so after the same SGD steps the parameters must agree (up to float rounding).

The recipe this checks is the one of ``docs/distributed.rst``: the hidden states are not
parameters or buffers, so DDP neither syncs nor needs to sync them; each rank creates its own
lazily from its first input, and ``zero_states`` runs at every batch. The timesteps are called
one by one through the DDP wrapper, several forwards for one backward, with DDP's defaults
(``find_unused_parameters=False``: every parameter takes part in every step;
``broadcast_buffers=True``: the fixed decay of the last layer is a buffer, equal on every rank).
Without the gradient sync, each half ends more than 1.0 away from the whole batch, far
beyond the 1e-5 tolerance.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import tracetorch as tt

WORLD = 2
STEPS = 3  # optimizer steps
T = 5  # timesteps per sample
BATCH = 8  # the whole batch; each rank takes BATCH // WORLD samples
LR = 0.5


class Net(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.lib = tt.snn.LIB(8)
        self.fc2 = nn.Linear(8, 3)
        self.li = tt.snn.LI(3, learn_beta=False)  # a fixed decay: a buffer DDP broadcasts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.li(self.fc2(self.lib(self.fc1(x))))


def make_model() -> Net:
    torch.manual_seed(0)
    return Net()


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[STEPS, T, BATCH, 6]`` and targets ``[STEPS, BATCH, 3]``."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(STEPS, T, BATCH, 6, generator=g), torch.randn(STEPS, BATCH, 3, generator=g)


def train(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    """``STEPS`` SGD steps; ``model`` is a ``Net`` or a DDP wrapper around one."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for xs, target in zip(inputs, targets, strict=True):
        tt.zero_states(model)  # reaches the Net inside a DDP wrapper too
        optimizer.zero_grad()
        out = torch.stack([model(x) for x in xs]).mean(0)
        nn.functional.mse_loss(out, target).backward()
        optimizer.step()


def worker(rank: int, port: int, folder: str) -> None:
    """One DDP rank: train on its half of the batch, save what it ends with."""
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = make_model()
        ddp = DistributedDataParallel(model)
        inputs, targets = make_data()
        half = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        train(ddp, inputs[:, :, half], targets[:, half])
        torch.save(
            {"params": model.state_dict(), "states": model.save_states()},
            Path(folder) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch build has no torch.distributed with the gloo backend",
)
def test_ddp_on_two_processes_matches_one_process_on_the_whole_batch(tmp_path, monkeypatch):
    # The spawned processes unpickle `worker` by importing this module under its name
    # (pytest's importlib mode may call it `tests.test_distributed`); they inherit sys.path.
    monkeypatch.syspath_prepend(str(Path(__file__).parents[__name__.count(".")]))
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    reference = make_model()
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    train(reference, *make_data())
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(result["params"][name], value, atol=1e-5, rtol=0)
        for name, param in reference.named_parameters():
            assert not torch.equal(param, start[name]), f"{name} did not train"
        # the hidden states are each rank's own: its half of the batch, never synced
        assert {tuple(s.shape) for s in result["states"].values()} == {(4, 8), (4, 3)}
