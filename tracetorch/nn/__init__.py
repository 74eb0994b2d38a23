"""Stateless building blocks used beside the stateful layers."""

from .masked_linear import MaskedLinear

__all__ = ["MaskedLinear"]
