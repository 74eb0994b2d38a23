"""Recurrent layers, one timestep per call."""

from .layer import Layer
from .minigru import MiniGRU

__all__ = ["Layer", "MiniGRU"]
