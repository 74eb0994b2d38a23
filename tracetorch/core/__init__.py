"""The stateful-layer machinery: :class:`Layer`, :class:`Model` and tree-wide operations."""

from .functional import checkpoint, functional_call
from .layer import Layer
from .model import (
    Model,
    TTcompile,
    TTdecompile,
    detach_states,
    layers,
    load_states,
    save_states,
    zero_states,
)
from .sequence import run, sequence_mode

__all__ = [
    "Layer",
    "Model",
    "TTcompile",
    "TTdecompile",
    "checkpoint",
    "detach_states",
    "functional_call",
    "layers",
    "load_states",
    "run",
    "save_states",
    "sequence_mode",
    "zero_states",
]
