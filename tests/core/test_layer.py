"""tt.Layer: states, working dimension, parameters, compile/decompile, errors."""

import pytest
import torch
from torch import nn

import tracetorch as tt


class Twin(tt.snn.Layer):
    """Two states, a decay, a threshold and a bias: exercises every registration helper."""

    def __init__(self, n: int, dim: int = -1, rank: int = 1, learnable: bool = True):
        super().__init__(n, dim=dim)
        self._initialize_state("a")
        self._initialize_state("b")
        self._register_decay("beta", 0.8, rank, learnable)
        self._register_threshold("threshold", 0.5, rank, learnable)
        self._register_bias("bias", 0.1, rank, learnable)

    def forward(self, x):
        self._ensure_states(x)
        x = self._to_working_dim(x)
        a = self._to_working_dim(self.a) * self.beta + x
        b = self._to_working_dim(self.b) * self.beta + torch.tanh(a - self.threshold + self.bias)
        self.a, self.b = self._from_working_dim(a), self._from_working_dim(b)
        return self.b


# ------------------------------------------------------------------------------------ states


def test_states_are_none_until_the_first_forward_then_zeros_like_the_input():
    layer = Twin(4).double()  # the input must have the dtype of the parameters
    assert layer.a is None and layer.b is None
    x = torch.rand(2, 3, 4, dtype=torch.float64)
    layer._ensure_states(x)
    for state in (layer.a, layer.b):
        assert state.shape == (2, 3, 4) and state.dtype == torch.float64
        assert state.device == x.device and not state.any()


def test_ensure_states_puts_num_neurons_at_dim():
    layer = tt.rnn.MiniGRU(3, 5, dim=-3)
    layer._ensure_states(torch.rand(2, 3, 7, 7))
    assert layer.H.shape == (2, 5, 7, 7)


def test_working_dim_round_trip_and_free_when_last():
    layer = Twin(4, dim=1)
    x = torch.rand(2, 4, 3)
    w = layer._to_working_dim(x)
    assert w.shape == (2, 3, 4)
    assert torch.equal(layer._from_working_dim(w), x)
    last = Twin(4)
    y = torch.rand(2, 4)
    assert last._to_working_dim(y) is y and last._from_working_dim(y) is y
    assert Twin(4, dim=2)._to_working_dim(x.transpose(1, 2)).data_ptr() == x.data_ptr()


def test_zero_states_and_detach_states():
    layer = Twin(4)
    x = torch.rand(2, 4, requires_grad=True)
    layer(x)
    assert layer.b.grad_fn is not None
    values = layer.b.clone()
    layer.detach_states()
    assert layer.b.grad_fn is None and torch.equal(layer.b, values)
    layer.zero_states()
    assert layer.a is None and layer.b is None


def test_gradients_flow_through_several_timesteps_and_stop_at_detach():
    layer = Twin(3)
    xs = [torch.rand(2, 3, requires_grad=True) for _ in range(4)]
    for x in xs:
        y = layer(x)
    y.sum().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in xs)

    layer.zero_states()
    early, late = torch.rand(2, 3, requires_grad=True), torch.rand(2, 3, requires_grad=True)
    layer(early)
    layer.detach_states()
    layer(late).sum().backward()
    assert early.grad is None and late.grad.abs().sum() > 0


def test_state_assignment_must_be_a_tensor_or_none():
    layer = Twin(2)
    with pytest.raises(TypeError, match="Twin: state 'a' must be a tensor or None"):
        layer.a = 3.0


def test_to_moves_live_states_and_follows_dtype():
    layer = Twin(3)
    layer(torch.rand(2, 3))
    layer.to(torch.float64)
    assert layer.a.dtype == torch.float64 and layer.raw_beta.dtype == torch.float64
    y = layer(torch.rand(2, 3, dtype=torch.float64))
    assert y.dtype == torch.float64
    layer.half()
    assert layer.b.dtype == torch.float16


def test_dim_minus_three_matches_dim_minus_one_on_the_permuted_input():
    torch.manual_seed(0)
    conv_layer = tt.rnn.MiniGRU(3, 5, dim=-3)
    flat_layer = tt.rnn.MiniGRU(3, 5, dim=-1)
    flat_layer.load_state_dict(conv_layer.state_dict())
    xs = torch.rand(4, 2, 3, 6, 7)  # [T, B, C, H, W]
    for x in xs:
        y_conv = conv_layer(x)
        y_flat = flat_layer(x.permute(0, 2, 3, 1))
        torch.testing.assert_close(y_conv, y_flat.permute(0, 3, 1, 2))


# -------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("learnable", [True, False])
def test_register_parameter_storage(rank, learnable):
    layer = Twin(4, rank=rank, learnable=learnable)
    for name, value in (("beta", 0.8), ("threshold", 0.5), ("bias", 0.1)):
        raw = getattr(layer, "raw_" + name)
        assert isinstance(raw, nn.Parameter) is learnable
        assert (("raw_" + name) in dict(layer.named_buffers())) is (not learnable)
        assert raw.shape == ((4,) if rank else ())
        torch.testing.assert_close(getattr(layer, name), torch.full(raw.shape, value))
        assert name in layer.parameter_names


def test_transformed_values_follow_the_raw_parameter_and_get_gradients():
    layer = Twin(2)
    with torch.no_grad():
        layer.raw_beta.fill_(0.0)
        layer.raw_threshold.fill_(-30.0)
    torch.testing.assert_close(layer.beta, torch.full((2,), 0.5))
    assert bool((layer.threshold > 0).all())
    layer(torch.rand(3, 2)).sum().backward()
    assert layer.raw_beta.grad is not None


def test_tensor_values_per_neuron():
    beta = torch.tensor([0.1, 0.5, 0.9])
    layer = tt.snn.Decay(3, beta=beta)
    torch.testing.assert_close(layer.beta, beta)
    beta.fill_(0.3)  # the layer keeps its own copy
    torch.testing.assert_close(layer.beta, torch.tensor([0.1, 0.5, 0.9]))


def test_public_parameter_is_read_only():
    layer = tt.snn.Decay(2)
    with pytest.raises(AttributeError, match="raw_beta"):
        layer.beta = torch.ones(2)


def test_instances_of_one_class_keep_their_own_parameters():
    a, b = tt.snn.Decay(2, beta=0.2), tt.snn.Decay(3, beta=0.7, beta_rank=0)
    torch.testing.assert_close(a.beta, torch.full((2,), 0.2))
    torch.testing.assert_close(b.beta, torch.tensor(0.7))


@pytest.mark.filterwarnings("ignore:.*TTcompile\\(\\)d layer:UserWarning")  # baked on purpose
def test_ttcompile_bakes_and_ttdecompile_restores_the_same_parameter_objects():
    torch.manual_seed(0)
    layer = Twin(3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    xs = torch.randn(5, 2, 3)

    def run():
        layer.zero_states()
        return torch.stack([layer(x) for x in xs])

    reference = run()
    raw_beta = layer.raw_beta
    layer.TTcompile()
    layer.TTcompile()  # idempotent
    assert not list(layer.parameters())
    assert set(dict(layer.named_buffers())) == {"beta", "threshold", "bias"}
    torch.testing.assert_close(run(), reference, atol=1e-6, rtol=0)
    layer.TTdecompile()
    layer.TTdecompile()  # idempotent
    assert layer.raw_beta is raw_beta  # the optimizer's parameter is back
    torch.testing.assert_close(run(), reference, atol=1e-6, rtol=0)
    run().sum().backward()
    before = layer.raw_beta.detach().clone()
    optimizer.step()
    assert not torch.equal(before, layer.raw_beta)


def test_compiled_layer_state_dict_round_trip():
    layer = tt.snn.Decay(3, beta=0.6)
    layer.TTcompile()
    other = tt.snn.Decay(3)
    other.TTcompile()
    other.load_state_dict(layer.state_dict())
    torch.testing.assert_close(other.beta, torch.full((3,), 0.6))


def test_repr_shows_neurons_dim_parameters_and_states():
    layer = tt.snn.Decay(3, beta=0.5, dim=-2)
    text = repr(layer)
    assert "num_neurons=3" in text and "dim=-2" in text and "mem: None" in text
    layer(torch.rand(2, 3, 4))
    assert "mem: [2, 3, 4]" in repr(layer)
    assert "beta=0.5" in repr(layer)


# ------------------------------------------------------------------------------- bad input


def _snapshot(layer):
    return {name: getattr(layer, name) for name in layer.state_names}


def _assert_unchanged(layer, snapshot):
    for name, before in snapshot.items():
        after = getattr(layer, name)
        assert after is before


def test_wrong_feature_size_is_rejected_before_any_change():
    layer = tt.snn.Decay(4)
    with pytest.raises(
        ValueError, match=r"Decay: expected 4 features at dim -1, got input of shape \(2, 5\)"
    ):
        layer(torch.rand(2, 5))
    assert layer.mem is None
    gru = tt.rnn.MiniGRU(3, 5)
    with pytest.raises(ValueError, match="MiniGRU: expected 3 features"):
        gru(torch.rand(2, 5))


def test_batch_shape_change_with_live_states_asks_for_zero_states():
    layer = Twin(4)
    layer(torch.rand(2, 4))
    snapshot = _snapshot(layer)
    with pytest.raises(ValueError, match=r"Twin: input of shape \(3, 4\).*zero_states\(\)"):
        layer(torch.rand(3, 4))
    with pytest.raises(ValueError, match="zero_states"):
        layer(torch.rand(1, 4))  # would broadcast: still refused
    _assert_unchanged(layer, snapshot)
    layer.zero_states()
    assert layer(torch.rand(3, 4)).shape == (3, 4)


def test_dim_out_of_range():
    layer = tt.snn.Decay(4, dim=-3)
    with pytest.raises(ValueError, match=r"Decay: dim=-3 is out of range for an input with 2"):
        layer(torch.rand(2, 4))
    assert layer.mem is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"beta": 1.0}, ValueError, r"Decay: expected beta in \(0.0, 1.0\), got 1.0"),
        ({"beta": 0.0}, ValueError, r"expected beta in \(0.0, 1.0\)"),
        ({"beta": -0.5}, ValueError, "expected beta in"),
        ({"beta": float("nan")}, ValueError, "Decay: beta must be finite"),
        ({"beta": float("inf")}, ValueError, "must be finite"),
        (
            {"beta": torch.tensor([0.5, 0.5])},
            ValueError,
            "expected beta of length 1 or 3.*got length 2",
        ),
        ({"beta": torch.full((3, 3), 0.5)}, ValueError, r"got a tensor of shape \(3, 3\)"),
        ({"beta": torch.full((3,), 0.5), "beta_rank": 0}, ValueError, "length 1 \\(rank 0"),
        ({"beta_rank": 2}, ValueError, "Decay: expected beta_rank to be 0 or 1, got 2"),
        (
            {"beta": "0.9"},
            TypeError,
            "Decay: expected beta to be a float or a 0-d/1-d tensor, got str",
        ),
    ],
)
def test_bad_parameter_values_at_construction(kwargs, error, message):
    with pytest.raises(error, match=message):
        tt.snn.Decay(3, **kwargs)


def test_threshold_must_be_positive():
    class Th(tt.snn.Layer):
        def __init__(self, value):
            super().__init__(2)
            self._register_threshold("threshold", value)

    with pytest.raises(ValueError, match=r"Th: expected threshold in \(0.0, inf\), got 0.0"):
        Th(0.0)
    with pytest.raises(ValueError, match="expected threshold in"):
        Th(-1.0)
    assert float(Th(2.0).threshold[0].detach()) == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_bad_num_neurons(bad):
    with pytest.raises(ValueError, match="Decay: expected num_neurons to be a positive int"):
        tt.snn.Decay(bad)


def test_name_collisions_are_rejected():
    class Clash(tt.snn.Layer):
        def __init__(self, first, second, kinds=("state", "state")):
            super().__init__(2)
            for name, kind in zip((first, second), kinds, strict=True):
                if kind == "state":
                    self._initialize_state(name)
                else:
                    self._register_bias(name, 0.0)

    with pytest.raises(ValueError, match="Clash: cannot register state 'mem'"):
        Clash("mem", "mem")
    with pytest.raises(ValueError, match="cannot register parameter 'mem'"):
        Clash("mem", "mem", ("state", "parameter"))
    with pytest.raises(ValueError, match="cannot register state 'forward'"):
        Clash("x", "forward")
    with pytest.raises(ValueError, match="cannot register state 'num_neurons'"):
        Clash("x", "num_neurons")
    with pytest.raises(ValueError, match="cannot register state 'training'"):
        Clash("x", "training")

    class SubmoduleClash(tt.snn.Layer):
        def __init__(self):
            super().__init__(2)
            self.fc = nn.Linear(2, 2)
            self._initialize_state("fc")

    with pytest.raises(ValueError, match="cannot register state 'fc'"):
        SubmoduleClash()


@pytest.mark.parametrize("dim", [-1, -3, 1, 3])
def test_along_dim_broadcasts_a_per_neuron_value_along_dim(dim):
    layer = tt.snn.Decay(4, dim=dim)
    x = torch.zeros(2, 4, 3, 4) if dim in (-3, 1) else torch.zeros(2, 3, 5, 4)
    value = torch.arange(4.0)
    viewed = layer._along_dim(value, x.dim())
    expected = value.view([4 if d == dim % x.dim() else 1 for d in range(x.dim())])
    torch.testing.assert_close((x + viewed), x + expected)
    scalar = torch.tensor(2.0)
    assert layer._along_dim(scalar, x.dim()) is scalar
