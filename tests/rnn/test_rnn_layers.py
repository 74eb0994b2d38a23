"""SimpleRNN, GRU and LSTM against PyTorch's nn.RNN/nn.GRU/nn.LSTM and their cells."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import tracetorch as tt

IN, HID, B, STEPS = 5, 7, 4, 20

# (tracetorch class, PyTorch sequence module, cell, extra constructor options)
KINDS = {
    "rnn-tanh": (tt.rnn.SimpleRNN, nn.RNN, nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn-relu": (tt.rnn.SimpleRNN, nn.RNN, nn.RNNCell, {"nonlinearity": "relu"}),
    "gru": (tt.rnn.GRU, nn.GRU, nn.GRUCell, {}),
    "lstm": (tt.rnn.LSTM, nn.LSTM, nn.LSTMCell, {}),
}
WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


def sequence(dtype=torch.float32, shape=(STEPS, B, IN), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(dtype)


def run(layer: tt.Layer, xs: torch.Tensor) -> torch.Tensor:
    return torch.stack([layer(x) for x in xs])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_sequence_module(kind, bias, dtype):
    cls, seq_type, _, options = KINDS[kind]
    torch.manual_seed(1)
    module = seq_type(IN, HID, bias=bias, **options).to(dtype)
    layer = cls.from_torch(module)
    assert layer.weight_ih.dtype == dtype and (layer.bias_ih is None) == (not bias)
    xs = sequence(dtype)
    with torch.no_grad():
        want, final = module(xs)
        got = run(layer, xs)
    tol = TOLERANCE[dtype]
    assert got.dtype == dtype
    assert torch.allclose(got, want, rtol=0, atol=tol), (got - want).abs().max()
    if kind == "lstm":
        assert torch.allclose(layer.c, final[1][0], rtol=0, atol=tol)
    assert got[-1].abs().max() > 0.05  # a live output, not a vanishing one


@pytest.mark.parametrize("kind", KINDS)
def test_matches_cell(kind):
    cls, _, cell_type, options = KINDS[kind]
    torch.manual_seed(2)
    cell = cell_type(IN, HID, **options)
    layer = cls.from_torch(cell)
    state = None
    with torch.no_grad():
        for x in sequence():
            state = cell(x) if state is None else cell(x, state)
            want = state[0] if kind == "lstm" else state
            assert torch.allclose(layer(x), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("dim", "layout"), [(1, (B, IN, 3)), (-3, (B, IN, 2, 3)), (0, (IN, B))])
def test_any_feature_dim(kind, dim, layout):
    """Features at dim give the same numbers as the module run on features-last data."""
    cls, seq_type, _, options = KINDS[kind]
    torch.manual_seed(3)
    module = seq_type(IN, HID, **options).double()
    layer = cls.from_torch(module, dim=dim)
    assert layer.dim == dim
    xs = sequence(torch.float64, (STEPS, *layout))
    with torch.no_grad():
        got = run(layer, xs)  # [STEPS, ..., HID at dim, ...]
        feature_axis = dim % len(layout) + 1
        flat = xs.movedim(feature_axis, -1)
        want, _ = module(flat.reshape(STEPS, -1, IN))
    assert got.shape == (STEPS, *layout[: dim % len(layout)], HID, *layout[dim % len(layout) + 1 :])
    want = want.reshape(*flat.shape[:-1], HID).movedim(-1, feature_axis)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_pytorch(kind, dtype):
    """Backward through 20 steps: input and parameter gradients equal PyTorch's."""
    cls, seq_type, _, options = KINDS[kind]
    torch.manual_seed(4)
    module = seq_type(IN, HID, **options).to(dtype)
    layer = cls.from_torch(module)
    xs = sequence(dtype)
    weights = torch.randn(STEPS, B, HID, dtype=dtype)  # a loss weighing every step differently
    # gradients reach ~10: float32 sums of 80 terms round at ~1e-6 relative
    tol = {"rtol": 1e-6, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 0, "atol": 1e-10}
    xs_torch, xs_tt = xs.clone().requires_grad_(), xs.clone().requires_grad_()
    (module(xs_torch)[0] * weights).sum().backward()
    (run(layer, xs_tt) * weights).sum().backward()
    assert torch.allclose(xs_tt.grad, xs_torch.grad, **tol)
    assert xs_tt.grad[0].abs().max() > 1e-3  # the gradient reaches the first step
    for name in WEIGHTS:
        ours, theirs = getattr(layer, name).grad, getattr(module, name + "_l0").grad
        assert torch.allclose(ours, theirs, **tol), name


@pytest.mark.parametrize("kind", KINDS)
def test_detach_states_truncates_bptt(kind):
    """After detach_states(), gradients are those of a run that started from the states."""
    cls, _, cell_type, options = KINDS[kind]
    torch.manual_seed(5)
    cell = cell_type(IN, HID, **options).double()
    layer = cls.from_torch(cell)
    xs = sequence(torch.float64, seed=6)[:10].requires_grad_()
    for x in xs[:5]:
        layer(x)
    layer.detach_states()
    state = tuple(getattr(layer, name).clone() for name in layer.state_names)
    assert all(not s.requires_grad for s in state)
    out = run(layer, xs[5:])
    out.sum().backward()
    assert xs.grad[:5].abs().max() == 0 and xs.grad[5:].abs().max() > 0
    ours = {name: getattr(layer, name).grad.clone() for name in WEIGHTS}
    cell.zero_grad()
    hidden = state if kind == "lstm" else state[0]
    total = 0
    for x in xs[5:].detach():
        hidden = cell(x, hidden)
        total = total + (hidden[0] if kind == "lstm" else hidden).sum()
    total.backward()
    for name in WEIGHTS:
        assert torch.allclose(ours[name], getattr(cell, name).grad, rtol=0, atol=1e-12), name


@pytest.mark.parametrize("kind", KINDS)
def test_zero_states_restarts_from_zero(kind):
    cls, _, _, options = KINDS[kind]
    torch.manual_seed(6)
    layer = cls(IN, HID, **options)
    xs = sequence()
    first = layer(xs[0])
    second = layer(xs[0])
    assert not torch.allclose(first, second)  # the state carried over
    layer.zero_states()
    assert all(getattr(layer, name) is None for name in layer.state_names)
    assert torch.equal(layer(xs[0]), first)
    layer.zero_states()
    small = layer(xs[0, :2])  # a new batch size after a reset
    assert small.shape == (2, HID)


@pytest.mark.parametrize("kind", KINDS)
def test_to_torch_round_trip(kind):
    cls, seq_type, cell_type, options = KINDS[kind]
    torch.manual_seed(7)
    layer = cls(IN, HID, **options).double()
    cell, module = layer.to_torch(), layer.to_torch(sequence=True)
    assert type(cell) is cell_type and type(module) is seq_type
    assert cell.weight_hh.dtype == torch.float64
    for name in WEIGHTS:
        assert torch.equal(getattr(cell, name), getattr(layer, name))
        assert torch.equal(getattr(module, name + "_l0"), getattr(layer, name))
    assert getattr(cell, "nonlinearity", None) == getattr(layer, "nonlinearity", None)
    xs = sequence(torch.float64)
    with torch.no_grad():
        assert torch.allclose(run(layer, xs), module(xs)[0], rtol=0, atol=1e-12)
    # copies, not shared tensors
    with torch.no_grad():
        cell.weight_ih.zero_()
    assert layer.weight_ih.abs().max() > 0


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_layout_and_init_match_pytorch(kind, bias):
    """Same parameter names and shapes, and the same draws from the same seed."""
    cls, _, cell_type, options = KINDS[kind]
    torch.manual_seed(8)
    layer = cls(IN, HID, bias=bias, **options)
    torch.manual_seed(8)
    cell = cell_type(IN, HID, bias=bias, **options)
    ours, theirs = dict(layer.named_parameters()), dict(cell.named_parameters())
    assert list(ours) == list(theirs) == list(WEIGHTS if bias else WEIGHTS[:2])
    for name, value in ours.items():
        assert torch.equal(value, theirs[name]), name
    bound = 1 / math.sqrt(HID)
    assert all(p.abs().max() <= bound for p in layer.parameters())
    assert layer.weight_hh.abs().max() > 0.9 * bound  # uniform over the whole range
    assert (layer.bias_ih is None) == (not bias) and (layer.bias_hh is None) == (not bias)
    assert layer.out_features == HID and layer.in_features == IN
    with torch.no_grad():
        layer.weight_ih.zero_()
    layer.reset_parameters()
    assert layer.weight_ih.abs().max() > 0


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (nn.GRU(IN, HID, num_layers=2), "num_layers=2"),
        (nn.GRU(IN, HID, bidirectional=True), "bidirectional=True"),
        (nn.LSTM(IN, HID, proj_size=3), "proj_size=3"),
        (nn.RNN(IN, HID, num_layers=3, bidirectional=True), "num_layers=3.*bidirectional=True"),
    ],
)
def test_from_torch_rejects_unsupported_configurations(module, message):
    cls = {nn.GRU: tt.rnn.GRU, nn.LSTM: tt.rnn.LSTM, nn.RNN: tt.rnn.SimpleRNN}[type(module)]
    with pytest.raises(ValueError, match=f"{cls.__name__}.from_torch: .*{message}"):
        cls.from_torch(module)


@pytest.mark.parametrize(
    ("cls", "module"),
    [
        (tt.rnn.GRU, nn.LSTM(IN, HID)),
        (tt.rnn.LSTM, nn.GRUCell(IN, HID)),
        (tt.rnn.SimpleRNN, nn.Linear(IN, HID)),
    ],
)
def test_from_torch_rejects_other_modules(cls, module):
    with pytest.raises(TypeError, match=f"{cls.__name__}.from_torch: expected an nn.*, got "):
        cls.from_torch(module)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_is_a_clear_error(kind):
    cls, _, _, options = KINDS[kind]
    layer = cls(IN, HID, **options)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: expected {IN} features at dim -1"):
        layer(torch.randn(B, IN + 1))
    assert all(getattr(layer, name) is None for name in layer.state_names)
    layer(torch.randn(B, IN))
    with pytest.raises(ValueError, match="zero_states"):
        layer(torch.randn(B + 1, IN))


def test_bad_arguments():
    with pytest.raises(ValueError, match="SimpleRNN: expected nonlinearity 'tanh' or 'relu'"):
        tt.rnn.SimpleRNN(IN, HID, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="GRU: expected bias to be a bool"):
        tt.rnn.GRU(IN, HID, bias="yes")
    with pytest.raises(ValueError, match="LSTM: expected in_features to be a positive int"):
        tt.rnn.LSTM(0, HID)
    with pytest.raises(ValueError, match="GRU: expected out_features to be a positive int"):
        tt.rnn.GRU(IN, 0)
    with pytest.raises(ValueError, match="MiniGRU: expected out_features to be a positive int"):
        tt.rnn.MiniGRU(IN, 0)
    with pytest.raises(TypeError, match="CellLayer: CellLayer is a base class"):
        tt.rnn.CellLayer(IN, HID)
    rnn = tt.rnn.SimpleRNN(IN, HID, nonlinearity="relu")
    with pytest.raises(ValueError, match="SimpleRNN: expected nonlinearity 'tanh' or 'relu'"):
        rnn.nonlinearity = "sigmoid"  # sequence mode would have run ReLU, step mode raised
    assert rnn.nonlinearity == "relu"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_forward_mode_tangents_are_the_same_in_both_modes(kind, dtype):
    # the CPU's float32 LSTM kernel (mkldnn) has no forward-mode rule: sequence mode loops
    import torch.autograd.forward_ad as fwad

    cls, _, _, options = KINDS[kind]
    torch.manual_seed(0)
    layer = cls(IN, HID, **options).to(dtype)
    xs = sequence(dtype, shape=(5, B, IN))
    tangents = []
    for mode in ("step", "sequence"):
        layer.zero_states()
        with fwad.dual_level():
            ys = tt.run(layer, fwad.make_dual(xs, torch.ones_like(xs)), mode=mode)
            tangents.append(fwad.unpack_dual(ys).tangent)
    torch.testing.assert_close(tangents[1], tangents[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [tt.rnn.GRU, tt.rnn.LSTM, tt.rnn.SimpleRNN, tt.rnn.MiniGRU])
def test_an_input_made_under_inference_mode_in_training(cls):
    # MiniGRU takes it in both modes; the fused kernels must save it: a clear error in both
    layer = cls(IN, HID)
    with torch.inference_mode():
        xs = sequence(shape=(4, B, IN))
    for mode in ("step", "sequence"):
        layer.zero_states()
        if cls is tt.rnn.MiniGRU:
            tt.run(layer, xs, mode=mode).sum().backward()
            assert layer.gates.weight.grad is not None
        else:
            with pytest.raises(RuntimeError, match=f"{cls.__name__}: the input was made under"):
                tt.run(layer, xs, mode=mode)
            assert all(state is None for state in tt.save_states(layer).values())


def test_repr_tells_the_configuration():
    text = repr(tt.rnn.SimpleRNN(IN, HID, bias=False, nonlinearity="relu"))
    assert f"in_features={IN}, num_neurons={HID}" in text
    assert "nonlinearity='relu'" in text and "bias=False" in text
    layer = tt.rnn.LSTM(IN, HID)
    layer(torch.randn(B, IN))
    assert f"h: [{B}, {HID}], c: [{B}, {HID}]" in repr(layer) and "bias" not in repr(layer)


def test_model_resets_every_recurrent_layer():
    class Net(tt.Model):
        def __init__(self) -> None:
            super().__init__()
            self.gru = tt.rnn.GRU(IN, HID)
            self.lstm = tt.rnn.LSTM(HID, HID)
            self.readout = nn.Linear(HID, 2)

        def forward(self, x):
            return self.readout(self.lstm(self.gru(x)))

    net = Net()
    xs = sequence()
    first = net(xs[0])
    net(xs[1])
    assert set(net.save_states()) == {"gru.h", "lstm.h", "lstm.c"}
    net.zero_states()
    assert net.lstm.c is None and net.gru.h is None
    assert torch.equal(net(xs[0]), first)


@pytest.mark.parametrize("how", ["orthogonal", "weight_norm", "prune"])
@pytest.mark.parametrize("kind", KINDS)
def test_parametrized_or_pruned_weights_in_both_modes(kind, how):
    cls, _, _, options = KINDS[kind]
    torch.manual_seed(0)
    layer = cls(IN, HID, **options).double()
    if how == "orthogonal":
        nn.utils.parametrizations.orthogonal(layer, "weight_hh")
    elif how == "weight_norm":
        nn.utils.parametrizations.weight_norm(layer, "weight_ih")
    else:
        prune.l1_unstructured(layer, "weight_ih", amount=0.5)
    plain = cls(IN, HID, **options).double()  # the weights the parametrization computes
    with torch.no_grad():
        for name in WEIGHTS:
            getattr(plain, name).copy_(getattr(layer, name))
    xs = sequence(torch.float64)
    expected = run(plain, xs)
    step = run(layer, xs)
    step_grads = torch.autograd.grad(step.sum(), list(layer.parameters()))
    layer.zero_states()
    ys = tt.run(layer, xs, mode="sequence")
    torch.testing.assert_close(step, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(ys, expected, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(ys.sum(), list(layer.parameters()))
    for a, b in zip(step_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_a_subclass_may_add_a_state_of_its_own(kind):
    cls, _, _, options = KINDS[kind]

    class Smoothed(cls):
        """The cell's output, plus a running average of it kept as a state."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._initialize_state("avg")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self._ensure_states(x)  # creates avg as zeros on the first step
            h = super().forward(x)
            self.avg = 0.9 * self.avg + 0.1 * h
            return h

    torch.manual_seed(0)
    layer = Smoothed(IN, HID, **options).double()
    plain = cls(IN, HID, **options).double()
    plain.load_state_dict(layer.state_dict())
    assert layer.state_names == (*plain.state_names, "avg")
    xs = sequence(torch.float64)
    expected = run(plain, xs)
    for mode in ("step", "sequence"):
        layer.zero_states()
        torch.testing.assert_close(tt.run(layer, xs, mode=mode), expected, rtol=0, atol=1e-12)
        average = torch.zeros_like(expected[0])
        for h in expected:
            average = 0.9 * average + 0.1 * h
        torch.testing.assert_close(layer.avg, average, rtol=0, atol=1e-12)
    assert tt.testing.check_layer(lambda dim=-1: Smoothed(IN, HID, dim=dim, **options), (B, IN))
