"""Test helpers for code built on tracetorch: gradient checks for functions and layers, and the
check that a model computes the same in sequence mode as step by step."""

from .check_function import GradientCheckError, check_function
from .check_layer import CHECKS, LayerCheckError, check_layer
from .check_sequence import SequenceCheckError, check_sequence

__all__ = [
    "CHECKS",
    "GradientCheckError",
    "LayerCheckError",
    "SequenceCheckError",
    "check_function",
    "check_layer",
    "check_sequence",
]
