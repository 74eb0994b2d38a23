"""check_layer: passes a correct layer, rejects each kind of broken layer with the right message.

The layer table's built-in layers are run through it in ``tests/test_all_layers.py``.
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import Tensor

import tracetorch as tt
from tracetorch.testing import CHECKS, LayerCheckError, check_layer


class Leaky(tt.snn.Layer):
    """A correct layer: ``mem = beta * mem + x`` with a per-neuron learnable decay."""

    def __init__(self, n: int = 4, dim: int = -1) -> None:
        super().__init__(n, dim=dim)
        self._register_decay("beta", torch.linspace(0.5, 0.9, n))
        self._initialize_state("mem")

    def step(self, mem: Tensor, x: Tensor) -> Tensor:
        return mem * self.beta + x

    def forward(self, x: Tensor) -> Tensor:
        self._ensure_states(x)
        mem = self.step(self._to_working_dim(self.mem), self._to_working_dim(x))
        self.mem = self._from_working_dim(mem)
        return self.mem


def make(cls):
    return lambda dim=-1: cls(4, dim=dim)


def failure(cls, shape=(3, 4), **kwargs) -> LayerCheckError:
    with pytest.raises(LayerCheckError) as info:
        check_layer(make(cls), shape, **kwargs)
    assert info.value.layer == cls.__name__
    assert str(info.value).startswith(f"check_layer: {cls.__name__} failed the")
    return info.value


# --------------------------------------------------------------------------- broken layers


class _DoubledGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mem, x, beta):
        ctx.save_for_backward(mem, beta)
        return mem * beta + x

    @staticmethod
    def backward(ctx, grad):
        mem, beta = ctx.saved_tensors
        return grad * beta, grad, 2 * (grad * mem).sum_to_size(beta.shape)  # 2x: wrong


class WrongBackward(Leaky):
    def step(self, mem, x):
        return _DoubledGradient.apply(mem, x, self.beta)


class UnbatchedState(Leaky):
    """Creates its state by hand and shares it across the batch (shape ``[num_neurons]``)."""

    def forward(self, x):
        if self.mem is None:
            self.mem = x.new_zeros(self.num_neurons)
        self.mem = self.mem * self.beta + x.mean(dim=0)
        return x - self.mem


class Float32State(Leaky):
    """Creates and keeps its state in float32 whatever the input's dtype."""

    def forward(self, x):
        if self.mem is None:
            self.mem = torch.zeros(x.shape)
        self.mem = self.mem * self.beta.float() + x.float()
        return self.mem.to(x.dtype)


class NoDetach(Leaky):
    def detach_states(self):
        pass


class RemembersInput(Leaky):
    """Detaches its state but keeps the last input (with its graph) in a plain attribute."""

    def zero_states(self):
        super().zero_states()
        self.last = None

    def forward(self, x):
        last = getattr(self, "last", None)
        self.last = x
        y = super().forward(x)
        return y if last is None else y + 0.1 * last


class NoZero(Leaky):
    def zero_states(self):
        pass


class IgnoresDim(Leaky):
    """Broadcasts beta against the last dimension whatever ``dim`` is."""

    def forward(self, x):
        self._ensure_states(x)
        self.mem = self.mem * self.beta + x
        return self.mem


class LastDimSoftmax(Leaky):
    """Normalises over the last dimension instead of ``dim``: right shapes, wrong values."""

    def forward(self, x):
        return super().forward(torch.softmax(x, dim=-1))


class WrongInverse(tt.snn.Layer):
    """Stores its gain through exp but "inverts" it with the identity."""

    def __init__(self, n, dim=-1):
        super().__init__(n, dim=dim)
        self._register_parameter("gain", 2.0, rank=0, transform=torch.exp, inverse=lambda v: v)
        self._initialize_state("mem")

    def forward(self, x):
        self._ensure_states(x)
        self.mem = 0.5 * self.mem + self.gain * x
        return self.mem


class HiddenCounter(Leaky):
    """Counts its steps in an attribute that is not a declared state."""

    def __init__(self, n, dim=-1):
        super().__init__(n, dim=dim)
        self.t = 0

    def zero_states(self):
        super().zero_states()
        self.t = 0

    def forward(self, x):
        self.t += 1
        return super().forward(x) * self.t


class Noisy(Leaky):
    """A random layer: passes when the RNG is seeded before each run."""

    def forward(self, x):
        return super().forward(x + 0.1 * torch.randn_like(x))


class Stateless(tt.snn.Layer):
    def __init__(self, n, dim=-1):
        super().__init__(n, dim=dim)
        self._register_bias("shift", torch.linspace(-1, 1, n))

    def forward(self, x):
        return torch.tanh(x + self._from_working_dim(self.shift.expand_as(self._to_working_dim(x))))


class VectorSequence(Leaky):
    """A correct override: the loop runs on local tensors, the state is written once."""

    def forward_sequence(self, xs):
        self._ensure_states(xs[0])
        dim = self.dim if self.dim < 0 else self.dim + 1  # counted in the sequence
        mem, outputs = self._to_working_dim(self.mem), []
        for x in xs.movedim(dim, -1):
            mem = self.step(mem, x)
            outputs.append(mem)
        self.mem = self._from_working_dim(mem)
        return torch.stack(outputs).movedim(-1, dim)


class SequenceFromZero(VectorSequence):
    """Starts every sequence from zero, ignoring the live state."""

    def forward_sequence(self, xs):
        self.zero_states()
        return super().forward_sequence(xs)


class SequenceIgnoresDim(Leaky):
    """Right with the features last; broadcasts beta against the last dimension otherwise."""

    def forward_sequence(self, xs):
        self._ensure_states(xs[0])
        mem, outputs = self.mem, []
        for x in xs:
            mem = mem * self.beta + x
            outputs.append(mem)
        self.mem = mem
        return torch.stack(outputs)


class SequenceDetachedBeta(VectorSequence):
    """Reads beta without its graph in sequence mode: raw_beta gets no gradient."""

    def step(self, mem, x):
        return mem * self.beta.detach() + x

    def forward(self, x):
        self._ensure_states(x)
        mem = super().step(self._to_working_dim(self.mem), self._to_working_dim(x))
        self.mem = self._from_working_dim(mem)
        return self.mem


class SequenceKeepsNoState(Leaky):
    """Computes the outputs but never stores the final state."""

    def forward_sequence(self, xs):
        mem = torch.zeros_like(xs[0]) if self.mem is None else self.mem
        outputs = []
        for x in xs:
            mem = self.step(self._to_working_dim(mem), self._to_working_dim(x))
            mem = self._from_working_dim(mem)
            outputs.append(mem)
        return torch.stack(outputs)


class SequenceConcatenates(VectorSequence):
    """Concatenates the outputs along the batch instead of stacking them."""

    def forward_sequence(self, xs):
        return torch.cat(list(super().forward_sequence(xs)))


class SequenceWrongWithoutGrad(Leaky):
    """Right with autograd; without it, a "fast" path that forgets the decay."""

    def forward_sequence(self, xs):
        if torch.is_grad_enabled():
            return super().forward_sequence(xs)
        self._ensure_states(xs[0])
        ys = torch.cumsum(xs, 0) + self.mem
        self.mem = ys[-1]
        return ys


class SequenceFastPathOnData(VectorSequence):
    """Takes a graph-free path when the inputs need no gradient, forgetting the parameters."""

    def forward_sequence(self, xs):
        if xs.requires_grad:
            return super().forward_sequence(xs)
        with torch.no_grad():
            return super().forward_sequence(xs)


class SequenceShortcutAtOneStep(VectorSequence):
    """Returns one step's output, without the time dimension, for a one-step sequence."""

    def forward_sequence(self, xs):
        return self.forward(xs[0]) if len(xs) == 1 else super().forward_sequence(xs)


class DetachesBetaAtOtherDims(Leaky):
    """Right with the features last; with another dim, beta gets no gradient."""

    def step(self, mem, x):
        beta = self.beta if self.dim in (-1, x.dim() - 1) else self.beta.detach()
        return mem * beta + x


class DetachesBetaOnData(Leaky):
    """Gives beta its gradient only when the input requires grad (never on data)."""

    def step(self, mem, x):
        return mem * (self.beta if x.requires_grad else self.beta.detach()) + x


class SequenceCallsItself(Leaky):
    """A loop of ``self(x)``: in sequence mode ``self(x)`` is the sequence path itself."""

    def forward_sequence(self, xs):
        return torch.stack([self(x) for x in xs])


class SequenceNeedsABatch(Leaky):
    """Its sequence path merges the batch dimensions into one, assuming there is one."""

    def forward_sequence(self, xs):
        self._ensure_states(xs[0])
        rows = self._to_working_dim(xs).flatten(1, -2)  # [T, N, F]
        mem, shape = self._to_working_dim(self.mem).flatten(0, -2), self._to_working_dim(xs[0])
        ys = []
        for x in rows:
            mem = self.step(mem, x)
            ys.append(self._from_working_dim(mem.reshape(shape.shape)))
        self.mem = ys[-1]
        return torch.stack(ys)


class Pair(tt.snn.Layer):
    """A layer built from two Leaky layers; its states are theirs."""

    def __init__(self, n: int = 4, dim: int = -1) -> None:
        super().__init__(n, dim=dim)
        self.a, self.b = Leaky(n, dim=dim), Leaky(n, dim=dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(self.a(x))


class PairForgetsInnerState(Pair):
    """Its sequence path runs ``a`` detached from its state: ``a.mem`` is never stored."""

    def forward_sequence(self, xs):
        ys = []
        mem = torch.zeros_like(xs[0]) if self.a.mem is None else self.a.mem
        for x in xs:
            mem = self.a.step(mem, x)
            ys.append(self.b(mem))
        return torch.stack(ys)


# ----------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("cls", [Leaky, Stateless, Pair])
def test_correct_layers_pass(cls):
    assert check_layer(make(cls), (3, 4)) is True


def test_random_layer_passes_with_its_rng_seeded():
    assert check_layer(make(Noisy), (3, 4), skip=["dim"])
    err = failure(Noisy)  # its draws land elsewhere on a permuted input
    assert err.check == "dim"


def test_correct_layer_passes_on_other_shapes():
    assert check_layer(make(Leaky), (4,), steps=2)
    assert check_layer(make(Leaky), (2, 3, 4), steps=4)


def test_callers_rng_is_left_alone():
    state = torch.get_rng_state()
    check_layer(make(Noisy), (2, 4), skip=["dim"])
    assert torch.equal(torch.get_rng_state(), state)


def test_wrong_backward_fails_the_gradient_check_naming_the_parameter():
    err = failure(WrongBackward)
    assert err.check == "gradients"
    assert "parameter 'raw_beta'" in str(err)
    assert "is wrong" in str(err)
    assert isinstance(err.__cause__, tt.testing.GradientCheckError)


def test_state_without_batch_dimensions_fails_lazy_states():
    err = failure(UnbatchedState)
    assert err.check == "lazy_states"
    assert "state 'mem' has shape (4,)" in str(err) and "expected (3, 4)" in str(err)
    assert "_ensure_states" in str(err)


def test_state_in_the_wrong_dtype_fails_lazy_states():
    err = failure(Float32State)
    assert err.check == "lazy_states"
    assert "torch.float32" in str(err) and "dtype" in str(err)


def test_detach_that_does_nothing_fails():
    err = failure(NoDetach)
    assert err.check == "detach_states"
    assert "still has a grad_fn" in str(err)


def test_gradient_leaking_past_detach_fails():
    err = failure(RemembersInput)
    assert err.check == "detach_states"
    assert "reaches the input of step 0" in str(err)


def test_zero_states_that_does_nothing_fails():
    err = failure(NoZero)
    assert err.check == "zero_states"
    assert "state 'mem' is not None after zero_states()" in str(err)


def test_layer_that_ignores_dim_fails():
    err = failure(IgnoresDim)
    assert err.check == "dim"
    assert "RuntimeError" in str(err)  # beta [4] broadcast against a last dim of size 2


def test_layer_that_normalises_the_wrong_dim_fails():
    err = failure(LastDimSoftmax)
    assert err.check == "dim"
    assert "the outputs differ at step 0" in str(err) and "dim=-2" in str(err)


def test_wrong_inverse_fails_ttcompile():
    err = failure(WrongInverse)
    assert err.check == "ttcompile"
    assert "after changing the baked values, TTdecompile()" in str(err)


def test_undeclared_state_fails_save_load():
    err = failure(HiddenCounter)
    assert err.check == "save_load"
    assert "after load_states()" in str(err)


def test_skip_leaves_out_the_named_checks():
    assert check_layer(make(NoDetach), (3, 4), skip=["detach_states"])
    assert check_layer(make(Leaky), (3, 4), skip=CHECKS)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_shape": ()}, "input_shape"),
        ({"input_shape": (3, 0)}, "input_shape"),
        ({"steps": 1}, "steps"),
        ({"skip": ["gradient"]}, "unknown check"),
        ({"skip": "dim"}, "unknown check"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"make_layer": make(Leaky), "input_shape": (3, 4), **kwargs}
    with pytest.raises(ValueError, match=match):
        check_layer(**arguments)


def test_make_layer_must_build_a_layer_that_takes_dim():
    with pytest.raises(TypeError, match="tracetorch Layer"):
        check_layer(lambda dim=-1: torch.nn.Linear(4, 4), (3, 4))
    with pytest.raises(LayerCheckError, match="pass the dim keyword") as info:
        check_layer(lambda dim=-1: Leaky(4), (3, 4))
    assert info.value.check == "dim"
    assert check_layer(lambda dim=-1: Leaky(4), (3, 4), skip=["dim"])


def test_checks_are_named_ttcompile_and_sequence():
    assert CHECKS[-2:] == ("save_load", "sequence") and "ttcompile" in CHECKS
    with pytest.raises(ValueError, match="unknown check"):
        check_layer(make(Leaky), (3, 4), skip=["compiled"])


def test_the_old_name_compile_is_understood_with_a_warning(monkeypatch):
    ran = []
    checker = sys.modules["tracetorch.testing.check_layer"]._Checker
    monkeypatch.setattr(checker, "ttcompile", lambda self: ran.append(True))
    with pytest.warns(FutureWarning, match="now named 'ttcompile'"):
        assert check_layer(make(Leaky), (3, 4), skip=("compile", "sequence"))
    assert ran == []
    assert check_layer(make(Leaky), (3, 4), skip=("sequence",)) and ran == [True]


def test_a_correct_forward_sequence_passes_on_every_layout():
    assert check_layer(make(VectorSequence), (3, 4))
    assert check_layer(make(VectorSequence), (4,), steps=2)
    assert check_layer(make(VectorSequence), (2, 3, 4), steps=4)


def test_forward_sequence_starting_from_zero_fails_sequence():
    err = failure(SequenceFromZero)
    assert err.check == "sequence"
    assert "forward_sequence vs forward step by step" in str(err)
    assert "forward_sequence after one step of forward" in str(
        err
    ) and "outputs differ at step 1" in str(err)


def test_forward_sequence_that_ignores_dim_fails_sequence_at_another_dim():
    assert check_layer(make(SequenceIgnoresDim), (3, 4), skip=["dim", "sequence"])
    err = failure(SequenceIgnoresDim)
    assert err.check == "sequence"
    assert "forward_sequence raised RuntimeError" in str(err) and "dim=-2" in str(err)
    assert isinstance(err.__cause__, RuntimeError)


def test_forward_sequence_with_a_wrong_gradient_fails_sequence_naming_the_parameter():
    err = failure(SequenceDetachedBeta)
    assert err.check == "sequence"
    assert "the gradient w.r.t. parameter 'raw_beta' differs" in str(err)


def test_forward_sequence_that_stores_no_state_fails_sequence():
    err = failure(SequenceKeepsNoState)
    assert err.check == "sequence"
    assert "state 'mem' is None after forward_sequence, (3, 4) after the steps" in str(err)


def test_forward_sequence_with_the_wrong_shape_fails_sequence():
    err = failure(SequenceConcatenates)
    assert err.check == "sequence"
    assert "of shape (9, 4), expected torch.float64 of shape (3, 3, 4)" in str(err)


def test_skipping_dim_checks_sequence_with_the_features_last_only():
    assert check_layer(lambda dim=-1: SequenceIgnoresDim(4), (3, 4), skip=["dim"])


def test_forward_sequence_wrong_only_without_autograd_fails_sequence():
    err = failure(SequenceWrongWithoutGrad)
    assert err.check == "sequence"
    assert "under torch.no_grad()): the outputs differ at step 1" in str(err)


def test_forward_sequence_calling_the_layer_fails_as_in_sequence_mode():
    err = failure(SequenceCallsItself)
    assert err.check == "sequence"
    assert "forward_sequence raised TypeError" in str(err)
    assert "called as layer(xs) in tt.sequence_mode(layer)" in str(err)


def test_the_states_of_layers_inside_a_layer_are_compared():
    err = failure(PairForgetsInnerState)
    assert err.check == "sequence"
    assert "state 'a.mem' is None after forward_sequence, (3, 4) after the steps" in str(err)


def test_forward_sequence_that_needs_a_batch_fails_on_batch_free_input():
    err = failure(SequenceNeedsABatch, skip=["dim"])  # features last: right with a batch
    assert err.check == "sequence"
    assert "forward_sequence raised" in str(err) and "xs of shape (3, 4)," in str(err)


def test_forward_sequence_wrong_only_on_inputs_without_grad_fails_sequence():
    err = failure(SequenceFastPathOnData)
    assert err.check == "sequence"
    assert "xs not requiring grad): the gradient w.r.t. parameter 'raw_beta' differs" in str(err)


def test_forward_sequence_wrong_only_for_one_step_fails_sequence():
    err = failure(SequenceShortcutAtOneStep)
    assert err.check == "sequence"
    assert "shape (3, 4), expected torch.float64 of shape (1, 3, 4)" in str(err)


def test_a_gradient_wrong_only_with_another_dim_fails_dim():
    err = failure(DetachesBetaAtOtherDims, skip=["sequence"])
    assert err.check == "dim"
    assert "with dim=-2, the gradient w.r.t. parameter 'raw_beta' differs" in str(err)


def test_a_gradient_wrong_only_on_inputs_without_grad_fails_gradients():
    err = failure(DetachesBetaOnData)
    assert err.check == "gradients"
    assert "gradient w.r.t. parameter 'raw_beta' is wrong when only x[t=0]" in str(err)
    assert "branch on requires_grad" in str(err)


def test_make_layer_returning_one_instance_is_refused_before_it_is_changed():
    layer = Leaky(4)
    with pytest.raises(TypeError, match="returned the same Leaky twice"):
        check_layer(lambda dim=-1: layer, (3, 4))
    assert layer.raw_beta.dtype == torch.float32 and layer.mem is None
