"""Test helpers for code built on tracetorch: gradient checks for functions and layers."""

from .check_function import GradientCheckError, check_function
from .check_layer import CHECKS, LayerCheckError, check_layer

__all__ = ["CHECKS", "GradientCheckError", "LayerCheckError", "check_function", "check_layer"]
