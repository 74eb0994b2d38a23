"""The custom-layer tutorial (seed 004): its code, as written, runs and behaves as it says."""

import pytest
import torch
from torch import nn

import tracetorch as tt


# --- the tutorial's code, unchanged ---------------------------------------------------------
class MiniGRU(tt.rnn.Layer):
    def __init__(self, in_features: int, out_features: int, dim: int = -1):
        super().__init__(num_neurons=out_features, dim=dim)
        self._initialize_state("H")
        self.gates = nn.Linear(in_features + out_features, 2 * out_features)
        self.candidate = nn.Linear(in_features + out_features, out_features)

    def forward(self, x):
        self._ensure_states(x)
        x = self._to_working_dim(x)
        H = self._to_working_dim(self.H)
        H_x = torch.cat([H, x], dim=-1)
        reset, update = torch.sigmoid(self.gates(H_x)).chunk(2, dim=-1)
        candidate = torch.tanh(self.candidate(torch.cat([H * reset, x], dim=-1)))
        H = H * (1 - update) + update * candidate
        self.H = self._from_working_dim(H)
        return self.H


class Net(tt.Model):
    def __init__(self):
        super().__init__()
        self.layer = MiniGRU(64, 32)

    def forward(self, x):
        return self.layer(x)


class DecayLayer(tt.snn.Layer):
    def __init__(self, num_neurons: int, beta: float = 0.9):
        super().__init__(num_neurons)
        self._initialize_state("mem")
        self._register_decay("beta", beta, rank=1, learnable=True)

    def forward(self, x):
        self._ensure_states(x)
        self.mem = self.mem * self.beta + x
        return self.mem


# --- what the tutorial says about it --------------------------------------------------------


def test_net_runs_and_prints_the_shape_the_tutorial_shows():
    model = Net()
    model.zero_states()
    y = model(torch.rand(16, 64))
    assert y.shape == torch.Size([16, 32])


def test_initialize_state_sets_none_and_ensure_states_creates_it_lazily():
    layer = MiniGRU(64, 32)
    assert layer.H is None
    layer(torch.rand(16, 64))
    assert layer.H.shape == (16, 32)


def test_minigru_works_on_another_feature_dimension():
    layer = MiniGRU(6, 4, dim=1)
    y = layer(torch.rand(2, 6, 5))
    assert y.shape == (2, 4, 5)
    assert layer.H.shape == (2, 4, 5)


def test_model_zero_and_detach_states_reach_the_tutorial_layers():
    model = Net()
    model(torch.rand(2, 64))
    assert model.layer.H.grad_fn is not None
    model.detach_states()
    assert model.layer.H.grad_fn is None and model.layer.H is not None
    model.zero_states()
    assert model.layer.H is None


def test_decay_layer_keeps_beta_in_unit_interval_and_stores_it_raw():
    layer = DecayLayer(3, beta=0.9)
    assert isinstance(layer.raw_beta, nn.Parameter)
    torch.testing.assert_close(layer.beta, torch.full((3,), 0.9))
    with torch.no_grad():
        layer.raw_beta.fill_(50.0)  # any raw value maps into (0, 1)
    assert bool((layer.beta > 0).all() and (layer.beta <= 1).all())


@pytest.mark.filterwarnings("ignore:.*TTcompile\\(\\)d layer:UserWarning")  # baked on purpose
def test_decay_layer_integrates_and_compiles():
    layer = DecayLayer(2, beta=0.5)
    for _ in range(3):
        y = layer(torch.ones(1, 2))
    torch.testing.assert_close(y, torch.full((1, 2), 1.75))
    layer.zero_states()
    layer.TTcompile()
    assert "raw_beta" not in dict(layer.named_parameters())
    for _ in range(3):
        y2 = layer(torch.ones(1, 2))
    torch.testing.assert_close(y2, y)
