"""Custom autograd functions with hand-derived backward passes.

Every Function here uses the ``setup_context`` style. The elementwise functions, the linear
layer, the surrogate spike and the Exciter's clamp have a vmap rule and work with double
backward and with ``torch.func`` (``vmap``, ``grad``, ``jacrev``). :class:`LeakyScan`, the
whole-sequence scan behind sequence mode, is first-order: ``torch.func.grad`` works, a second
derivative raises a clear error. Each class has a lowercase functional helper
(``Square`` -> :func:`square`, ...), which calls it through :func:`apply`: ``Function.apply``
minus the signature binding torch does at every call of a ``setup_context`` Function (use it
for your own Functions too, passing every argument). On the CPU the scan takes its
``[T, ...]`` buffers from a cache that reuses them between calls (:func:`sequence_buffer`;
:func:`empty_cache`, :func:`set_cache_limit`).
"""

from .buffers import cache_limit, empty_cache, sequence_buffer, set_cache_limit
from .clipped_relu import ClippedReLUFunction, clipped_relu
from .elementwise import (
    Cube,
    Exp,
    ReLU,
    Sigmoid,
    Square,
    Tanh,
    cube,
    exp,
    relu,
    sigmoid,
    square,
    tanh,
)
from .function import apply
from .leaky_scan import LeakyScan, leaky_scan, scan_supported
from .learned_silu import LearnedSiLU, learned_silu
from .linear import Linear, linear
from .surrogate import SURROGATES, Heaviside, SpikeFn, Surrogate, heaviside, spike_fn

__all__ = [
    "SURROGATES",
    "ClippedReLUFunction",
    "Cube",
    "Exp",
    "Heaviside",
    "LeakyScan",
    "LearnedSiLU",
    "Linear",
    "ReLU",
    "Sigmoid",
    "SpikeFn",
    "Square",
    "Surrogate",
    "Tanh",
    "apply",
    "cache_limit",
    "clipped_relu",
    "cube",
    "empty_cache",
    "exp",
    "heaviside",
    "leaky_scan",
    "learned_silu",
    "linear",
    "relu",
    "scan_supported",
    "sequence_buffer",
    "set_cache_limit",
    "sigmoid",
    "spike_fn",
    "square",
    "tanh",
]
