"""check_sequence: passes models that sequence mode runs right, names what differs otherwise.

It also leaves the model as it found it: states, buffers, ``.grad``, the caller's RNG.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import tracetorch as tt
from tracetorch.testing import SequenceCheckError, check_sequence

F64 = torch.float64


def snn(dtype: torch.dtype = F64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 4), tt.snn.LIB(4), tt.rnn.LSTM(4, 5), nn.Tanh(), tt.snn.SLI(5)
    ).to(dtype)


def conv_snn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        tt.nn.TimeDistributed(nn.Conv2d(2, 4, 3, padding=1)),
        tt.snn.LIB(4, dim=-3, spike_fn=tt.functional.sigmoid4x),
        tt.nn.TimeDistributed(nn.Flatten()),
        nn.Linear(4 * 4 * 4, 3),
        tt.snn.LI(3),
    ).double()


def failure(model: nn.Module, xs: Tensor, what: str, **kwargs: float) -> str:
    with pytest.raises(SequenceCheckError) as info:
        check_sequence(model, xs, **kwargs)
    err = info.value
    assert err.what == what
    assert err.model == type(model).__name__
    message = str(err)
    assert message.startswith(f"check_sequence: {type(model).__name__} ")
    assert "usual causes" in message and "TimeDistributed" in message
    return message


# --------------------------------------------------------------------------- passing models


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["float32", "float64"])
def test_a_model_of_built_in_layers_passes(dtype):
    assert check_sequence(snn(dtype), torch.randn(12, 2, 3, dtype=dtype)) is None


def test_a_conv_snn_with_time_distributed_passes():
    assert check_sequence(conv_snn(), torch.rand(5, 2, 2, 4, 4, dtype=F64)) is None


def test_a_model_without_states_passes():
    assert check_sequence(nn.Linear(3, 2).double(), torch.rand(4, 3, dtype=F64)) is None


# ---------------------------------------------------------------------------- failing models


class FlattensByPosition(tt.Model):
    """``flatten(1)`` counts from the front: in sequence mode it merges batch and channels."""

    def __init__(self) -> None:
        super().__init__()
        self.lib = tt.snn.LIB(2, dim=-3, spike_fn=tt.functional.sigmoid4x)

    def forward(self, x: Tensor) -> Tensor:
        return self.lib(x).flatten(1)


class NormalisesTheBatch(tt.Model):
    """Subtracts the mean of dim 0: the batch step by step, time in sequence mode."""

    def __init__(self) -> None:
        super().__init__()
        self.li = tt.snn.LI(3)

    def forward(self, x: Tensor) -> Tensor:
        y = self.li(x)
        return y - y.mean(dim=0)


def test_a_forward_that_flattens_by_position_fails_on_the_output_shape():
    message = failure(
        FlattensByPosition().double(), torch.rand(4, 3, 2, 2, 2, dtype=F64), "outputs"
    )
    assert (
        "returned torch.float64 of shape (4, 24) in sequence mode, torch.float64 of shape "
        "(4, 3, 8) step by step"
    ) in message
    assert "x.flatten(1)" in message


def test_a_forward_that_reduces_dim_0_fails_on_the_outputs():
    message = failure(NormalisesTheBatch().double(), torch.rand(5, 2, 3, dtype=F64), "outputs")
    assert "gives other outputs in sequence mode than step by step, first at step 0 of 5" in message


def test_an_unwrapped_conv_fails_with_the_error_of_sequence_mode():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), tt.snn.LIB(4, dim=-3)).double()
    message = failure(model, torch.rand(3, 2, 2, 5, 5, dtype=F64), "error")
    assert "raised RuntimeError in sequence mode" in message
    assert "must be wrapped in tt.nn.TimeDistributed" in message
    assert not any("forward" in m.__dict__ for m in model.modules())


class Leaky(tt.snn.Layer):
    """A user layer with its own forward_sequence (subclasses break it in one way each)."""

    def __init__(self, n: int = 4, dim: int = -1) -> None:
        super().__init__(n, dim=dim)
        self._register_decay("beta", torch.linspace(0.5, 0.9, n))
        self._initialize_state("mem")

    def forward(self, x: Tensor) -> Tensor:
        self._ensure_states(x)
        self.mem = self.mem * self.beta + x
        return self.mem

    def decay(self) -> Tensor:
        return self.beta

    def forward_sequence(self, xs: Tensor) -> Tensor:
        self._ensure_states(xs[0])
        mem, outputs = self.mem, []
        for x in xs:
            mem = mem * self.decay() + x
            outputs.append(mem)
        self.mem = mem
        return torch.stack(outputs)


class DetachedBeta(Leaky):
    def decay(self) -> Tensor:
        return self.beta.detach()


class ForgetsItsState(Leaky):
    def forward_sequence(self, xs: Tensor) -> Tensor:
        ys = super().forward_sequence(xs)
        self.zero_states()
        return ys


class SlightlyOff(Leaky):
    def decay(self) -> Tensor:
        return self.beta * (1 + 1e-6)


class WrongWithoutGrad(Leaky):
    def decay(self) -> Tensor:
        return self.beta if torch.is_grad_enabled() else torch.ones_like(self.beta)


class Float32State(Leaky):
    def forward_sequence(self, xs: Tensor) -> Tensor:
        ys = super().forward_sequence(xs)
        self.mem = self.mem.float()
        return ys


class FastPathOnData(Leaky):
    def forward_sequence(self, xs: Tensor) -> Tensor:
        if xs.requires_grad:
            return super().forward_sequence(xs)
        with torch.no_grad():  # "nothing to differentiate": but beta is
            return super().forward_sequence(xs)


def user_model(cls: type[Leaky]) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), cls(4), nn.Linear(4, 2)).double()


def test_a_correct_user_forward_sequence_passes():
    assert check_sequence(user_model(Leaky), torch.randn(6, 2, 3, dtype=F64)) is None


@pytest.mark.parametrize(
    ("layer", "what", "expected"),
    [
        (DetachedBeta, "gradients", ["gives another gradient w.r.t. parameter '1.raw_beta'"]),
        (ForgetsItsState, "states", ["'1.mem'"]),
        (
            WrongWithoutGrad,  # wrong only without autograd
            "outputs",
            ["gives other outputs in sequence mode under torch.no_grad() than step by step"],
        ),
        (
            Float32State,  # a state left in another dtype
            "states",
            [
                "'1.mem': 'torch.float32 of shape (2, 4)'",
                "'1.mem': 'torch.float64 of shape (2, 4)'",
            ],
        ),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_a_wrong_user_layer_fails_naming_what_differs(layer, what, expected):
    message = failure(user_model(layer), torch.randn(6, 2, 3, dtype=F64), what)
    for text in expected:
        assert text in message


def test_a_layer_wrong_only_on_data_inputs_fails_naming_the_parameter():
    message = failure(FastPathOnData(4).double(), torch.randn(6, 2, 4, dtype=F64), "gradients")
    assert "w.r.t. parameter 'raw_beta' in sequence mode on xs that does not require grad" in (
        message
    )


def test_tolerances_decide_what_is_equal():
    xs = torch.randn(6, 2, 3, dtype=F64)
    message = failure(user_model(SlightlyOff), xs, "outputs")
    assert "max |diff|" in message
    assert check_sequence(user_model(SlightlyOff), xs, atol=1e-4, rtol=1e-4) is None
    assert check_sequence(user_model(SlightlyOff).float(), xs.float()) is None  # loose in float32


def test_the_user_layer_is_also_caught_by_check_layer():
    with pytest.raises(tt.testing.LayerCheckError) as info:
        tt.testing.check_layer(lambda dim=-1: DetachedBeta(4, dim=dim), (2, 4), skip=["dim"])
    assert info.value.check == "sequence"


# ------------------------------------------------------------------ the model is left alone


def test_states_buffers_grads_and_rng_are_left_as_they_were():
    model = snn()
    xs = torch.randn(6, 2, 3, dtype=F64)
    assert check_sequence(model, xs) is None
    assert model[1].mem is None and model[4].syn is None  # no states before: none after
    tt.run(model, xs[:3])
    saved = tt.save_states(model)
    rng = torch.get_rng_state()
    check_sequence(model, xs)
    after = tt.save_states(model)
    assert after.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(after[key], value), key
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


class TwoShapes(tt.Model):
    """Its second layer sees ``[2, B, F]`` where the first sees ``[B, F]``."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = tt.snn.LI(4), tt.snn.LI(4)

    def forward(self, x: Tensor) -> Tensor:
        y = self.a(x)
        return self.b(torch.stack([y, -y], dim=-3)).sum(-3)


def test_the_same_state_tensors_are_put_back_whatever_their_shapes():
    model = TwoShapes().double()
    xs = torch.randn(5, 3, 4, dtype=F64, requires_grad=True)
    model.run(xs)  # live states of two batch shapes, with their graph
    before = (model.a.mem, model.b.mem)
    assert check_sequence(model, xs.detach()) is None
    assert model.a.mem is before[0] and model.b.mem is before[1]
    model.b.mem.sum().backward()  # the graph behind them is intact
    assert xs.grad is not None


def test_batch_norm_statistics_are_restored_even_when_the_check_fails():
    torch.manual_seed(0)
    model = nn.Sequential(tt.nn.TimeDistributed(nn.BatchNorm2d(2)), tt.snn.LI(2, dim=-3)).double()
    bn = model[0].module
    xs = torch.randn(4, 3, 2, 2, 2, dtype=F64)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    # training mode: a step normalises with the statistics of its batch, sequence mode with
    # those of every step at once
    failure(model, xs, "outputs")
    for key, value in bn.state_dict().items():
        assert torch.equal(value, before[key]), key
    model.eval()
    assert check_sequence(model, xs) is None


def test_random_modules_draw_the_same_numbers_when_the_draws_line_up():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), tt.snn.LI(4)).double()
    noise = model[0].register_forward_hook(lambda m, args, y: y + 0.01 * torch.randn(()))
    assert check_sequence(model, torch.randn(1, 2, 3, dtype=F64)) is None  # one draw each
    noise.remove()


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "xs",
    [torch.tensor(1.0), torch.zeros(0, 2, 3), torch.zeros(4, 2, 3, dtype=torch.long), [1.0]],
    ids=["0-d", "no-steps", "integer", "list"],
)
def test_bad_xs(xs):
    with pytest.raises(ValueError, match=r"check_sequence: expected xs to be a floating-point"):
        check_sequence(snn(), xs)


def test_an_error_step_by_step_is_raised_as_it_is():
    model = snn()
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        check_sequence(model, torch.randn(4, 2, 5, dtype=F64))
    assert tt.save_states(model) == {}
