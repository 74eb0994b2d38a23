"""tracetorch: stateful spiking and recurrent layers that behave like ordinary PyTorch modules."""

from . import autograd, core, encode, functional, loss, nn, rnn, snn, testing
from .core import (
    Layer,
    Model,
    TTcompile,
    TTdecompile,
    checkpoint,
    detach_states,
    functional_call,
    layers,
    load_states,
    run,
    save_states,
    sequence_mode,
    zero_states,
)
from .deployment import export, export_onnx
from .recording import record

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Import ``tt.plot`` and ``tt.nir`` on first use (``import tracetorch`` needs neither)."""
    if name in ("plot", "nir"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Layer",
    "Model",
    "TTcompile",
    "TTdecompile",
    "autograd",
    "checkpoint",
    "core",
    "detach_states",
    "encode",
    "export",
    "export_onnx",
    "functional",
    "functional_call",
    "layers",
    "load_states",
    "loss",
    "nir",
    "nn",
    "plot",
    "record",
    "rnn",
    "run",
    "save_states",
    "sequence_mode",
    "snn",
    "testing",
    "zero_states",
]
