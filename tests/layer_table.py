"""One table of every built-in stateful layer: the generic checks run over all of it.

Each family adds its own cases (``tests/snn/cases.py``, ``tests/rnn/cases.py``); a new layer
gets every generic check (``tt.testing.check_layer``, dim invariance, save/load, ...) by
adding one line there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import tracetorch as tt


@dataclass(frozen=True)
class LayerCase:
    """A built-in layer and how to drive it.

    Attributes:
        name: Test id.
        make: Builds the layer; takes the ``dim`` keyword (feature dimension).
        input_shape: An input shape with the features last (used with ``dim=-1``).
        skip: Checks of ``tt.testing.check_layer`` not to run for this case (``"gradients"``
            for hard-spiking layers: a surrogate gradient is not the derivative finite
            differences measure).
    """

    name: str
    make: Callable[..., tt.Layer]
    input_shape: tuple[int, ...]
    skip: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return self.name


CORE_CASES = [
    LayerCase("Decay", lambda dim=-1: tt.snn.Decay(4, beta=0.8, dim=dim), (3, 4)),
    LayerCase("Decay-rank0-fixed", lambda dim=-1: tt.snn.Decay(4, 0.7, dim, 0, False), (3, 4)),
    LayerCase("MiniGRU", lambda dim=-1: tt.rnn.MiniGRU(3, 5, dim=dim), (2, 3)),
    LayerCase("Exciter", lambda dim=-1: tt.snn.Exciter(4, dim=dim), (3, 4)),
    LayerCase(
        "Exciter-select_last",
        lambda dim=-1: tt.snn.Exciter(4, low=-2.0, high=2.0, select_last=True, dim=dim),
        (3, 4),
    ),
]


def all_cases() -> list[LayerCase]:
    """Every case: the core cases, then those of ``snn/cases.py`` and ``rnn/cases.py``."""
    cases = list(CORE_CASES)
    for family in ("snn", "rnn"):
        cases.extend(importlib.import_module(f"{family}.cases").CASES)
    return cases
