"""tracetorch: stateful spiking and recurrent layers that behave like ordinary PyTorch modules."""

from . import autograd, core, encode, functional, loss, nn, rnn, snn, testing
from .core import (
    Layer,
    Model,
    TTcompile,
    TTdecompile,
    detach_states,
    layers,
    load_states,
    run,
    save_states,
    sequence_mode,
    zero_states,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Import ``tt.plot`` on first use, so that ``import tracetorch`` needs no matplotlib."""
    if name == "plot":
        import importlib

        return importlib.import_module(".plot", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Layer",
    "Model",
    "TTcompile",
    "TTdecompile",
    "autograd",
    "core",
    "detach_states",
    "encode",
    "functional",
    "layers",
    "load_states",
    "loss",
    "nn",
    "plot",
    "rnn",
    "run",
    "save_states",
    "sequence_mode",
    "snn",
    "testing",
    "zero_states",
]
