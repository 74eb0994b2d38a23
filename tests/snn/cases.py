"""The leaky-integrator family's rows of the layer table: every public name once, plus variants.

Recurrent layers get a nonzero ``rec_weight`` so that their feedback path changes the outputs
the generic checks compare. Firing kinds run with the smooth ``sigmoid4x`` spike so that the
``"gradients"`` check applies; the ``*-hard`` rows and :class:`~tracetorch.snn.LIF` keep the
default hard spike, whose surrogate gradient finite differences cannot confirm: they skip the
``"gradients"`` check (the surrogate backward is checked in ``test_snn_family.py``); every
other generic check applies.
"""

from __future__ import annotations

from layer_table import LayerCase

import tracetorch as tt
from tracetorch.snn.family import NAMES, config_from_name


def _extra(name: str) -> dict[str, float]:
    """Keyword arguments that make every path of ``name`` matter in the checks."""
    config = config_from_name(name)
    if not config.recurrent:
        return {}
    if config.dual:
        return {"pos_rec_weight": 0.5, "neg_rec_weight": -0.3}
    return {"rec_weight": 0.5}


def _case(label: str, name: str, smooth: bool = True, **kwargs: object) -> LayerCase:
    """A row for ``name``; firing kinds get the smooth ``sigmoid4x`` unless ``smooth=False``.

    A smooth spike lets the ``"gradients"`` check compare autograd with finite differences;
    the default hard spike (surrogate gradient) skips that check.
    """
    kwargs = {**_extra(name), **kwargs}
    firing = config_from_name(name).firing != "none"
    if firing and smooth:
        kwargs["spike_fn"] = tt.functional.sigmoid4x
    skip = ("gradients",) if firing and not smooth else ()
    make = lambda dim=-1: getattr(tt.snn, name)(4, dim=dim, **kwargs)  # noqa: E731
    return LayerCase(label, make, (3, 4), skip=skip)


SURROGATE_CASES = [
    LayerCase(
        "LIF",
        lambda dim=-1: tt.snn.LIF(4, beta=0.8, threshold=0.5, dim=dim),
        (3, 4),
        skip=("gradients",),
    ),
    LayerCase(
        "LIF-rank0-fixed",
        lambda dim=-1: tt.snn.LIF(4, 0.7, 0.6, dim, 0, 0, False, False, "fast_sigmoid"),
        (3, 4),
        skip=("gradients",),
    ),
]

ALIF_CASES = [  # adaptive LIF: smooth spikes for the gradient check, and the default hard spike
    LayerCase(
        "ALIF",
        lambda dim=-1: tt.snn.ALIF(
            4, rho=0.8, threshold=0.5, beta_a=0.7, dim=dim, spike_fn=tt.functional.sigmoid4x
        ),
        (3, 4),
    ),
    LayerCase(
        "ALIF-hard",
        lambda dim=-1: tt.snn.ALIF(4, beta=0.8, rho=0.9, threshold=0.5, dim=dim),
        (3, 4),
        skip=("gradients",),
    ),
]

CASES = [
    *(_case(name, name) for name in NAMES),
    _case("LIB-rank0-fixed", "LIB", beta_rank=0, threshold_rank=0, learn_beta=False),
    _case("DSRLITS-values", "DSRLITS", pos_beta=0.7, neg_beta=0.95, bias=0.2, pos_scale=2.0),
    _case("SLIEMA-rank0", "SLIEMA", alpha=0.3, alpha_rank=0, beta_rank=0),
    *(_case(f"{name}-hard", name, smooth=False) for name in ("LIB", "SLIB", "DSRLIT", "RLITS")),
    _case("SLIT-zero", "SLIT", reset="zero"),
    *SURROGATE_CASES,
    *ALIF_CASES,
]
