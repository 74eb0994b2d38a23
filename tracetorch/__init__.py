"""tracetorch: stateful spiking and recurrent layers that behave like ordinary PyTorch modules."""

from . import autograd, core, functional, nn, rnn, snn, testing
from .core import (
    Layer,
    Model,
    TTcompile,
    TTdecompile,
    detach_states,
    layers,
    load_states,
    save_states,
    zero_states,
)

__version__ = "0.1.0"

__all__ = [
    "Layer",
    "Model",
    "TTcompile",
    "TTdecompile",
    "autograd",
    "core",
    "detach_states",
    "functional",
    "layers",
    "load_states",
    "nn",
    "rnn",
    "save_states",
    "snn",
    "testing",
    "zero_states",
]
