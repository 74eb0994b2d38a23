"""The recurrent family's rows of the layer table (MiniGRU is in ``layer_table.CORE_CASES``)."""

from __future__ import annotations

from layer_table import LayerCase

import tracetorch as tt

CASES = [
    LayerCase("SimpleRNN", lambda dim=-1: tt.rnn.SimpleRNN(3, 4, dim=dim), (2, 3)),
    LayerCase(
        "SimpleRNN-relu-nobias",
        lambda dim=-1: tt.rnn.SimpleRNN(3, 4, dim=dim, bias=False, nonlinearity="relu"),
        (2, 3),
    ),
    LayerCase("GRU", lambda dim=-1: tt.rnn.GRU(3, 4, dim=dim), (2, 2, 3)),
    LayerCase("GRU-nobias", lambda dim=-1: tt.rnn.GRU(3, 4, dim=dim, bias=False), (2, 3)),
    LayerCase("LSTM", lambda dim=-1: tt.rnn.LSTM(3, 4, dim=dim), (2, 3)),
    LayerCase("LSTM-nobias", lambda dim=-1: tt.rnn.LSTM(3, 4, dim=dim, bias=False), (2, 3)),
]
