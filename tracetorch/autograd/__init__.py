"""Custom autograd functions with hand-derived backward passes.

Every Function here uses the ``setup_context`` style and has a vmap rule, so it works with
double backward and with ``torch.func`` (``vmap``, ``grad``, ``jacrev``). Each class has a
lowercase functional helper (``Square`` -> :func:`square`, ...).
"""

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
from .learned_silu import LearnedSiLU, learned_silu
from .linear import Linear, linear
from .surrogate import SURROGATES, Heaviside, SpikeFn, Surrogate, heaviside, spike_fn

__all__ = [
    "SURROGATES",
    "ClippedReLUFunction",
    "Cube",
    "Exp",
    "Heaviside",
    "LearnedSiLU",
    "Linear",
    "ReLU",
    "Sigmoid",
    "SpikeFn",
    "Square",
    "Surrogate",
    "Tanh",
    "clipped_relu",
    "cube",
    "exp",
    "heaviside",
    "learned_silu",
    "linear",
    "relu",
    "sigmoid",
    "spike_fn",
    "square",
    "tanh",
]
