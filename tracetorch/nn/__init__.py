"""Stateless building blocks used beside the stateful layers."""

from .masked_linear import MaskedLinear
from .time_distributed import TimeDistributed

__all__ = ["MaskedLinear", "TimeDistributed"]
