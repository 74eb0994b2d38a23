"""Spiking and leaky-integrator layers.

The leaky-integrator family (``LIF``, ``LI``, ``LIB``, ... see :mod:`tracetorch.snn.family`)
is one layer, :class:`LeakyIntegrator`, under 33 names; :class:`Decay` is the custom-layer
tutorial's name for :class:`LI`.
"""

from . import family
from .alif import ALIF
from .decay import Decay
from .exciter import Exciter, ExciterFunction
from .family import LIF, NAMES
from .layer import Layer
from .leaky import LeakyIntegrator

globals().update({name: getattr(family, name) for name in NAMES})

__all__ = [  # the family's names are listed once, in family.NAMES
    "LIF",
    *NAMES,
    "ALIF",
    "Decay",
    "Exciter",
    "ExciterFunction",
    "Layer",
    "LeakyIntegrator",
]
