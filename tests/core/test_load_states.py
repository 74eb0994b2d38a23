"""load_states checks every entry before it loads any: bad input never leaves a trace."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import tracetorch as tt


class Net(tt.Model):
    """Three layers: one spiking, one with two states (LSTM), one leaky integrator."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), tt.snn.LIB(4), tt.rnn.LSTM(4, 5), tt.snn.LI(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


KEYS = ["net.1.mem", "net.2.h", "net.2.c", "net.3.mem"]
LAYER_OF = {"net.1.mem": "LIB", "net.2.h": "LSTM", "net.2.c": "LSTM", "net.3.mem": "LI"}


def ran(batch: int = 2, steps: int = 3) -> Net:
    """A model whose states are live after ``steps`` steps on a batch of ``batch``."""
    torch.manual_seed(0)
    model = Net()
    for x in torch.randn(steps, batch, 3):
        model(x)
    return model


def snapshot(model: nn.Module) -> dict[str, torch.Tensor | None]:
    """Every declared state under ``model`` (``None`` included), as it is now."""
    return {
        f"{path}.{name}" if path else name: getattr(layer, name)
        for path, layer in tt.layers(model)
        for name in layer.state_names
    }


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor | None]) -> None:
    after = snapshot(model)
    assert after.keys() == before.keys()
    for key, state in before.items():
        if state is None:
            assert after[key] is None, key
        else:
            assert after[key] is state, key  # the very same tensor: not even replaced
            assert torch.equal(after[key], state.clone()), key


def message_pattern(key: str, *middle: str) -> str:
    """The shape of every load_states message about one entry."""
    head = re.escape(f"Net.load_states: {key!r} ({LAYER_OF[key]}): ")
    return head + ".*" + ".*".join(map(re.escape, middle)) + ".*nothing was loaded$"


def other_values(model: nn.Module, fill: float = 7.0) -> dict[str, torch.Tensor]:
    """Valid states for ``model`` that differ from its live ones."""
    return {key: torch.full_like(value, fill) for key, value in model.save_states().items()}


BAD_VALUES = {
    "int": (lambda t: t.to(torch.int64), TypeError, ["floating", "torch.int64"]),
    "bool": (lambda t: t > 0, TypeError, ["floating", "torch.bool"]),
    "complex": (lambda t: t.to(torch.complex64), TypeError, ["floating", "torch.complex64"]),
    "sparse": (lambda t: t.to_sparse(), TypeError, ["dense", "sparse_coo", ".to_dense()"]),
    "meta": (lambda t: t.to("meta"), ValueError, ["meta device"]),
    "wrong size": (lambda t: t[..., :-1], ValueError, ["features at dim -1", "got state of shape"]),
    "not a tensor": (lambda t: t.tolist(), TypeError, ["expected a tensor, got list"]),
}


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("bad", BAD_VALUES, ids=str)
def test_a_bad_value_anywhere_loads_nothing(bad, key):
    model = ran()
    states = other_values(model)
    make_bad, error, words = BAD_VALUES[bad]
    states[key] = make_bad(states[key])
    before = snapshot(model)
    with pytest.raises(error, match=message_pattern(key, *words)):
        model.load_states(states)
    assert_untouched(model, before)


def test_a_meta_tensor_as_the_last_key_leaves_the_earlier_layers_untouched():
    model = ran()
    states = other_values(model)
    last = list(states)[-1]
    states[last] = torch.empty_like(states[last], device="meta")
    before = snapshot(model)
    with pytest.raises(ValueError, match=message_pattern(last, "meta")):
        model.load_states(states)
    assert_untouched(model, before)
    assert not any(torch.equal(state, states["net.1.mem"]) for state in before.values())


def test_bad_values_on_a_fresh_model_leave_every_state_none():
    states = other_values(ran())
    states["net.3.mem"] = states["net.3.mem"].to(torch.int32)
    model = Net()
    with pytest.raises(TypeError, match="nothing was loaded"):
        model.load_states(states)
    assert all(state is None for state in snapshot(model).values())


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "live"])
def test_a_batch_mismatch_across_two_layers_loads_nothing(fresh):
    model = Net() if fresh else ran(batch=2)
    states = other_values(ran(batch=2))
    states["net.3.mem"] = torch.zeros(3, 5)
    before = snapshot(model)
    with pytest.raises(
        ValueError, match=message_pattern("net.3.mem", "batch size 3", "'net.1.mem'")
    ):
        model.load_states(states)
    assert_untouched(model, before)


def test_the_batch_rule_skips_states_with_the_features_first_or_one_dimension():
    # dim 0 is the batch only where it is not the feature dimension of a state of 2+ dims
    model = nn.ModuleDict(
        {
            "batched": tt.snn.LI(4),
            "features_first": tt.snn.LI(4, dim=0),
            "unbatched": tt.snn.LI(4),
            "channels": tt.snn.LI(4, dim=-3),
        }
    )
    states = {
        "batched.mem": torch.ones(2, 4),
        "features_first.mem": torch.ones(4, 3),
        "unbatched.mem": torch.ones(4),
        "channels.mem": torch.ones(2, 4, 6, 6),
    }
    tt.load_states(model, states)
    for key, value in states.items():
        layer = model[key.split(".")[0]]
        assert torch.equal(layer.mem, value)
    states["channels.mem"] = torch.ones(5, 4, 6, 6)
    with pytest.raises(ValueError, match="batch size 5"):
        tt.load_states(model, states)


def test_the_states_of_one_layer_must_share_a_shape():
    model = ran()
    states = other_values(model)
    states["net.2.c"] = torch.zeros(2, 1, 5)
    before = snapshot(model)
    with pytest.raises(ValueError, match=message_pattern("net.2.c", "differs from 'net.2.h'")):
        model.load_states(states)
    assert_untouched(model, before)


def test_non_strict_cannot_split_a_layer_across_two_batch_sizes():
    model = ran(batch=2)
    before = snapshot(model)
    with pytest.raises(ValueError, match=message_pattern("net.2.h", "live state 'c'")):
        model.load_states({"net.2.h": torch.zeros(3, 5)}, strict=False)
    assert_untouched(model, before)
    model.load_states({"net.2.h": torch.zeros(2, 5)}, strict=False)  # same shape: fine
    assert torch.equal(model.net[2].h, torch.zeros(2, 5))


def test_a_valid_round_trip_continues_exactly():
    model = ran()
    saved = model.save_states()
    xs = torch.randn(4, 2, 3)
    expected = torch.stack([model(x) for x in xs])
    twin = Net()
    twin.load_state_dict(model.state_dict())
    twin.load_states(saved)
    assert all(twin.save_states()[key] is not value for key, value in saved.items())  # copies
    torch.testing.assert_close(torch.stack([twin(x) for x in xs]), expected, rtol=0, atol=0)


def test_a_float64_snapshot_is_cast_to_the_layer_dtype():
    saved = {key: value.double() for key, value in ran().save_states().items()}
    model = Net()
    model.load_states(saved)
    assert all(value.dtype == torch.float32 for value in model.save_states().values())
    model.double()
    model.load_states({key: value.float() for key, value in saved.items()})
    assert all(value.dtype == torch.float64 for value in model.save_states().values())


def test_saved_states_that_require_grad_are_loaded_detached():
    states = {key: value.requires_grad_() for key, value in other_values(ran()).items()}
    model = Net()
    model.load_states(states)
    assert all(not value.requires_grad for value in model.save_states().values())
    assert model.net[1].mem.grad_fn is None and not model.net[1].mem.requires_grad


@pytest.mark.parametrize(
    ("edit", "listed"),
    [
        (lambda s: s.pop("net.2.c"), r"missing: \['net.2.c'\]; unknown: none"),
        (lambda s: s.update({"net.9.mem": torch.zeros(2, 4)}), r"missing: none; unknown: \["),
    ],
)
def test_strict_rejects_missing_and_unknown_keys(edit, listed):
    model = ran()
    states = other_values(model)
    edit(states)
    before = snapshot(model)
    with pytest.raises(ValueError, match=rf"^Net.load_states: .*{listed}.*nothing was loaded\."):
        model.load_states(states)
    assert_untouched(model, before)


def test_non_strict_loads_the_matching_keys_and_ignores_the_rest():
    model = ran()
    live_lstm = model.net[2].h
    model.load_states(
        {"net.1.mem": torch.ones(2, 4), "net.3.mem": torch.ones(2, 5), "gone.mem": 1},
        strict=False,
    )
    assert torch.equal(model.net[1].mem, torch.ones(2, 4))
    assert torch.equal(model.net[3].mem, torch.ones(2, 5))
    assert model.net[2].h is live_lstm


def test_non_strict_still_checks_the_values_it_loads():
    model = ran()
    before = snapshot(model)
    with pytest.raises(TypeError, match=message_pattern("net.3.mem", "torch.bool")):
        model.load_states(
            {"net.1.mem": torch.ones(2, 4), "net.3.mem": torch.ones(2, 5, dtype=torch.bool)},
            strict=False,
        )
    assert_untouched(model, before)


def test_a_non_mapping_is_rejected_naming_the_model():
    with pytest.raises(
        TypeError, match=r"^Net.load_states: expected a mapping.*nothing was loaded$"
    ):
        Net().load_states([torch.zeros(2, 4)])


def test_a_snapshot_of_a_partly_started_model_rewinds_with_zero_states_first():
    # save_states leaves out states not created yet: the strict load names the way back
    torch.manual_seed(0)
    model = nn.Sequential(tt.snn.LIF(3), tt.snn.Exciter(3), tt.rnn.GRU(3, 2))
    model[0](torch.rand(2, 3))  # only the LIF has run
    saved = tt.save_states(model)
    model(torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"call zero_states\(\) first"):
        tt.load_states(model, saved)
    tt.zero_states(model)
    tt.load_states(model, saved, strict=False)
    assert model[2].h is None and torch.equal(model[0].mem, saved["0.mem"])
