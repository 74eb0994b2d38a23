"""Plain functions: the math of one step, transforms and helpers. Tensors in, tensors out."""

from .integrate import leaky_integrate
from .minigru import minigru_step
from .transforms import sigmoid_inverse, softplus_inverse

__all__ = [
    "leaky_integrate",
    "minigru_step",
    "sigmoid_inverse",
    "softplus_inverse",
]
