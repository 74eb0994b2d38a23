"""The stateful-layer machinery: :class:`Layer`, :class:`Model` and tree-wide operations."""

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

__all__ = [
    "Layer",
    "Model",
    "TTcompile",
    "TTdecompile",
    "detach_states",
    "layers",
    "load_states",
    "save_states",
    "zero_states",
]
