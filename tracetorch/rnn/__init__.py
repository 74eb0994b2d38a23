"""Recurrent layers, one timestep per call."""

from .cell import CellLayer
from .gru import GRU
from .layer import Layer
from .lstm import LSTM
from .minigru import MiniGRU
from .simple_rnn import SimpleRNN

__all__ = ["GRU", "LSTM", "CellLayer", "Layer", "MiniGRU", "SimpleRNN"]
