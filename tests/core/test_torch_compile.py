"""An ordinary training loop under ``torch.compile(fullgraph=True)`` stays within a few graphs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tracetorch as tt


class Net(tt.Model):
    def __init__(self):
        super().__init__()
        self.fc1, self.lif = nn.Linear(4, 8), tt.snn.LIF(8)
        self.fc2, self.li = nn.Linear(8, 3), tt.snn.LI(3)

    def forward(self, x):
        return self.li(self.fc2(self.lif(self.fc1(x))))


@pytest.mark.slow
def test_training_then_baked_evaluation_compiles_a_bounded_number_of_graphs():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = Net()
    eager = Net()
    eager.load_state_dict(model.state_dict())
    compiled = torch.compile(model, fullgraph=True)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, eager)]
    for batch in (8, 8, 8, 5):  # a fixed batch, then a smaller last batch
        xs = torch.randn(4, batch, 4)
        for net, run, optimizer in zip((model, eager), (compiled, eager), optimizers, strict=True):
            net.zero_states()
            out = torch.stack([run(x) for x in xs])
            out.square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        torch.testing.assert_close(model.fc1.weight, eager.fc1.weight)
    model.TTcompile()
    eager.TTcompile()
    model.eval()
    eager.eval()
    with torch.inference_mode():
        for batch in (8, 5):
            xs = torch.randn(4, batch, 4)
            model.zero_states()
            eager.zero_states()
            for x in xs:
                torch.testing.assert_close(compiled(x), eager(x))
    # first step (states None) and later steps, for: training, the smaller batch (after
    # which the batch size is dynamic), and baked inference
    assert counters["stats"]["unique_graphs"] <= 6
