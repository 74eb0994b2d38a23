"""Plain functions: the math of one step, transforms and helpers. Tensors in, tensors out."""

from .alif import alif_step
from .decay import decay_to_halflife, decay_to_timesteps, halflife_to_decay, timesteps_to_decay
from .integrate import leaky_integrate, subtract_product
from .leaky import LeakyConfig, fire, leaky_step, split_sign
from .minigru import minigru_sequence, minigru_step
from .quantize import probabilistic_ste, round_ste, stochastic_round_ste
from .recurrent import gru_step, lstm_step, rnn_step
from .spike import sigmoid4x
from .transforms import sigmoid_inverse, softplus_inverse

__all__ = [
    "LeakyConfig",
    "alif_step",
    "decay_to_halflife",
    "decay_to_timesteps",
    "fire",
    "gru_step",
    "halflife_to_decay",
    "leaky_integrate",
    "leaky_step",
    "lstm_step",
    "minigru_sequence",
    "minigru_step",
    "probabilistic_ste",
    "rnn_step",
    "round_ste",
    "sigmoid4x",
    "sigmoid_inverse",
    "softplus_inverse",
    "split_sign",
    "stochastic_round_ste",
    "subtract_product",
    "timesteps_to_decay",
]
