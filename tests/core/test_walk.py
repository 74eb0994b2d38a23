"""The module-tree walk behind zero_states, sequence mode and the other whole-model calls."""

from __future__ import annotations

from torch import nn

import tracetorch as tt
from tracetorch.core.walk import find_modules


def _tree() -> tuple[nn.Module, tt.snn.LIF]:
    shared = tt.snn.LIF(3)
    net = nn.Sequential(
        nn.Linear(3, 3),
        shared,
        nn.Sequential(tt.snn.LI(3), shared),  # registered twice
        nn.ModuleDict({"a": tt.snn.LIB(3), "b": nn.ReLU()}),
        tt.nn.TimeDistributed(nn.Linear(3, 3)),
    )
    net.add_module("empty", None)
    return net, shared


def test_the_walk_finds_what_named_modules_finds_in_its_order() -> None:
    net, _ = _tree()
    for match in (lambda m: True, lambda m: isinstance(m, tt.Layer), lambda m: False):
        expected = [sub for _, sub in net.named_modules() if match(sub)]
        assert find_modules(net, match) == expected


def test_the_walk_can_stop_at_the_outermost_matches() -> None:
    net, shared = _tree()
    inner = net[2]
    found = find_modules(net, lambda m: isinstance(m, nn.Sequential), enter_matches=False)
    assert found == [net]
    found = find_modules(net, lambda m: m is inner or m is shared, enter_matches=False)
    assert found == [shared, inner]  # shared once, though registered twice


def test_a_module_alone_is_its_own_tree() -> None:
    layer = tt.snn.LIF(3)
    assert find_modules(layer, lambda m: True) == [layer]
