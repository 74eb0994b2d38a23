"""One step of the leaky-integrator neuron family, with its four switches.

``[D][S][R]LI<kind>``: *dual* (positive and negative input in separate traces), *synaptic*
(the input first passes through a synaptic trace), *recurrent* (the previous output feeds
back through a recurrent trace) and the *firing* kind (none, binary, ternary, ternary with
output scales), plus *ema* (the membrane is an exponential moving average of its input).
:func:`leaky_step` is the whole neuron; the layers of :mod:`tracetorch.snn` only hold its
parameters and states. Parameters broadcast against the states (scalars, or ``[N]`` with
the features last).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor

from .integrate import leaky_integrate, subtract_product
from .spike import sigmoid4x

__all__ = ["RESETS", "LeakyConfig", "fire", "leaky_step", "split_sign"]

Firing = Literal["none", "binary", "ternary", "scaled"]
Reset = Literal["subtract", "zero", "none"]
RESETS: tuple[str, ...] = get_args(Reset)
"""The reset mechanisms of the firing kinds (see :func:`leaky_step`)."""
TensorFn = Callable[[Tensor], Tensor]


class LeakyConfig(NamedTuple):
    """The switches of one leaky-integrator neuron (a tuple: unpacked once per step).

    Attributes:
        dual: Integrate the positive and negative parts of the input in separate traces,
            each with its own decays (``pos_``/``neg_`` states and parameters).
        synaptic: Pass the input through a synaptic trace ``syn`` (decay ``alpha``) first.
        recurrent: Feed the previous output back through a recurrent trace ``rec``
            (decay ``gamma``, weight ``rec_weight``). Firing kinds only.
        ema: The membrane is an exponential moving average, ``beta*mem + (1-beta)*input``,
            instead of ``beta*mem + input``. Non-firing kinds only.
        firing: ``"none"`` (return the membrane), ``"binary"`` (spikes in ``{0, 1}``),
            ``"ternary"`` (``{-1, 0, 1}``) or ``"scaled"`` (ternary times learnable scales).
    """

    dual: bool = False
    synaptic: bool = False
    recurrent: bool = False
    ema: bool = False
    firing: Firing = "none"


def split_sign(v: Tensor) -> tuple[Tensor, Tensor]:
    """``(max(v, 0), min(v, 0))``: the positive and negative parts, which sum to ``v``."""
    return v.clamp(min=0), v.clamp(max=0)


def _fire_terms(
    mem: Tensor,
    params: Mapping[str, Tensor],
    firing: Firing,
    spike_fn: TensorFn,
    quant_fn: TensorFn | None,
) -> tuple[Tensor, tuple[tuple[Tensor, Tensor], ...]]:
    """:func:`fire` with the reset left as ``(spikes, threshold)`` pairs to multiply and sum.

    :func:`leaky_step` subtracts each product from the membrane itself, which without
    autograd is one fused kernel per pair.
    """
    bias = params.get("bias")
    v = mem if bias is None else mem + bias
    # Without autograd, a spike function with an ``above`` method (SpikeFn) spikes v against
    # a threshold in fewer kernels than spike_fn(v - threshold), with the same result; with
    # autograd the step is left exactly as it was (no extra call per step in training).
    above = None
    if quant_fn is None and not torch.is_grad_enabled():
        above = getattr(spike_fn, "above", None)
    if firing == "binary":
        threshold = params["threshold"]
        s = spike_fn(v - threshold) if above is None else above(v, threshold)
        if quant_fn is not None:
            s = quant_fn(s)
        return s, ((s, threshold),)
    pos_threshold, neg_threshold = params["pos_threshold"], params["neg_threshold"]
    p = spike_fn(v - pos_threshold) if above is None else above(v, pos_threshold)
    n = spike_fn(-neg_threshold - v)
    if quant_fn is not None:
        p, n = quant_fn(p), quant_fn(n)
    n = -n
    terms = ((p, pos_threshold), (n, neg_threshold))
    if firing == "scaled":
        return p * params["pos_scale"] + n * params["neg_scale"], terms
    return p + n, terms


def _reset(terms: tuple[tuple[Tensor, Tensor], ...]) -> Tensor:
    (s, threshold), *rest = terms
    reset = s * threshold
    for s, threshold in rest:
        reset = reset + s * threshold
    return reset


def _keep(terms: tuple[tuple[Tensor, Tensor], ...]) -> Tensor:
    """The factor a zero reset multiplies the membrane by: ``1 - s`` (ternary: ``(1-p)(1+n)``)."""
    (s, _), *rest = terms
    keep = 1 - s
    for n, _ in rest:  # the -1 spikes of a ternary neuron (n <= 0)
        keep = keep * (1 + n)
    return keep


def fire(
    mem: Tensor,
    params: Mapping[str, Tensor],
    firing: Firing,
    spike_fn: TensorFn = sigmoid4x,
    quant_fn: TensorFn | None = None,
) -> tuple[Tensor, Tensor]:
    """Fire from a membrane: returns ``(output, reset)``, to be subtracted from ``mem``.

    Binary: ``s = quant_fn(spike_fn(mem - threshold + bias))``, output ``s``, reset
    ``s * threshold``. Ternary: ``p = quant_fn(spike_fn(mem - pos_threshold + bias))``,
    ``n = -quant_fn(spike_fn(-neg_threshold - mem - bias))``, output ``p + n`` (``"scaled"``:
    ``p * pos_scale + n * neg_scale``), reset ``p * pos_threshold + n * neg_threshold``.

    Args:
        mem: The membrane after integration.
        params: ``threshold`` (binary) or ``pos_threshold`` and ``neg_threshold``, optionally
            ``bias`` (absent: 0), and ``pos_scale``, ``neg_scale`` for ``"scaled"``.
        firing: ``"binary"``, ``"ternary"`` or ``"scaled"``.
        spike_fn: Maps ``membrane - threshold`` to a firing value. One with a method
            ``above(v, threshold)`` equal to ``spike_fn(v - threshold)`` (as
            :class:`~tracetorch.autograd.SpikeFn` has, which needs one kernel fewer without
            autograd) is called through it while autograd records nothing, where no
            ``quant_fn`` is given.
        quant_fn: Applied to the firing value; ``None`` for the identity.
    """
    out, terms = _fire_terms(mem, params, firing, spike_fn, quant_fn)
    return out, _reset(terms)


def leaky_step(
    x: Tensor,
    state: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    config: LeakyConfig,
    spike_fn: TensorFn = sigmoid4x,
    quant_fn: TensorFn | None = None,
    reset: Reset = "subtract",
) -> tuple[Tensor, dict[str, Tensor]]:
    """One timestep of a leaky-integrator neuron configured by ``config``.

    1. Synaptic trace (S): ``syn = alpha*syn + (1-alpha)*x``; the membrane receives ``syn``.
       Dual: ``pos_syn``, ``neg_syn`` integrate ``split_sign(x)``; ``syn = pos_syn + neg_syn``.
    2. Recurrent trace (R): ``rec = gamma*rec + (1-gamma)*prev_output``; the membrane receives
       ``rec_weight*rec`` more. Dual: ``pos_rec``, ``neg_rec`` integrate
       ``split_sign(prev_output)``; with ``rec = pos_rec + neg_rec``, the positive membrane
       receives ``pos_rec_weight*max(rec, 0)``, the negative ``neg_rec_weight*min(rec, 0)``.
    3. Membrane: ``mem = beta*mem + input`` (ema: ``beta*mem + (1-beta)*input``). Dual:
       ``pos_mem``, ``neg_mem`` integrate ``split_sign(input)``; ``mem = pos_mem + neg_mem``.
    4. Firing (see :func:`fire`) and reset; without firing the output is ``mem``. ``reset``:

       - ``"subtract"``: ``mem = mem - s*threshold`` (ternary: ``- p*pos_threshold -
         n*neg_threshold``; dual: each of ``pos_mem``, ``neg_mem`` takes half).
       - ``"zero"``: ``mem = mem * (1 - s)`` (ternary: ``mem * (1 - p) * (1 + n)``, zero where
         either fired; dual: both traces). With hard spikes the membrane becomes exactly 0
         where a spike fired; written as a product, the surrogate gradient of the spike also
         flows through the reset (as in snnTorch's ``reset_mechanism="zero"``).
       - ``"none"``: no reset.
    5. Recurrent: ``prev_output = output``.

    Args:
        x: The input current of this step, ``[*, N]``.
        state: The states before the step, by name: ``mem`` (dual: ``pos_mem``, ``neg_mem``),
            ``syn`` (``pos_syn``, ``neg_syn``), ``rec`` (``pos_rec``, ``neg_rec``) and
            ``prev_output``, as the configuration uses them.
        params: The parameter values by name (decays already in ``(0, 1)``): ``alpha``,
            ``beta``, ``gamma``, ``rec_weight`` (dual: ``pos_``/``neg_`` each) and those of
            :func:`fire`; each a scalar or ``[N]``.
        config: The switches.
        spike_fn, quant_fn: The firing functions (see :func:`fire`).
        reset: ``"subtract"`` (default), ``"zero"`` or ``"none"``; unused without firing.

    Returns:
        ``(output, new_state)``, ``new_state`` holding every state of ``state``.

    Raises:
        ValueError: A firing configuration with an unknown ``reset``.

    Example:
        >>> import torch
        >>> from tracetorch.functional import LeakyConfig, leaky_step
        >>> config = LeakyConfig(synaptic=True)
        >>> state = {"syn": torch.zeros(1), "mem": torch.zeros(1)}
        >>> params = {"alpha": torch.tensor(0.5), "beta": torch.tensor(0.9)}
        >>> for _ in range(2):
        ...     out, state = leaky_step(torch.ones(1), state, params, config)
        >>> state["syn"], out
        (tensor([0.7500]), tensor([1.2000]))
    """
    dual, synaptic, recurrent, ema, firing = config
    new: dict[str, Tensor] = {}
    if synaptic:
        if dual:
            x_pos, x_neg = split_sign(x)
            pos_syn = new["pos_syn"] = torch.lerp(x_pos, state["pos_syn"], params["pos_alpha"])
            neg_syn = new["neg_syn"] = torch.lerp(x_neg, state["neg_syn"], params["neg_alpha"])
            x = pos_syn + neg_syn
        else:
            x = new["syn"] = torch.lerp(x, state["syn"], params["alpha"])
    if recurrent:
        prev = state["prev_output"]
        if dual:
            prev_pos, prev_neg = split_sign(prev)
            pos_rec = new["pos_rec"] = torch.lerp(prev_pos, state["pos_rec"], params["pos_gamma"])
            neg_rec = new["neg_rec"] = torch.lerp(prev_neg, state["neg_rec"], params["neg_gamma"])
            rec_pos, rec_neg = split_sign(pos_rec + neg_rec)
        else:
            rec = new["rec"] = torch.lerp(prev, state["rec"], params["gamma"])
            x = x + params["rec_weight"] * rec
    if dual:
        x_pos, x_neg = split_sign(x)
        if recurrent:
            x_pos = x_pos + params["pos_rec_weight"] * rec_pos
            x_neg = x_neg + params["neg_rec_weight"] * rec_neg
        pos_mem, neg_mem = state["pos_mem"], state["neg_mem"]
        if ema:
            pos_mem = torch.lerp(x_pos, pos_mem, params["pos_beta"])
            neg_mem = torch.lerp(x_neg, neg_mem, params["neg_beta"])
        else:
            pos_mem = leaky_integrate(pos_mem, x_pos, params["pos_beta"])
            neg_mem = leaky_integrate(neg_mem, x_neg, params["neg_beta"])
        mem = pos_mem + neg_mem
    elif ema:
        mem = torch.lerp(x, state["mem"], params["beta"])
    else:
        mem = leaky_integrate(state["mem"], x, params["beta"])
    if firing == "none":
        out = mem
    else:
        out, terms = _fire_terms(mem, params, firing, spike_fn, quant_fn)
        if reset == "subtract":
            if dual:
                half = _reset(terms) * 0.5
                pos_mem, neg_mem = pos_mem - half, neg_mem - half
            else:
                for s, threshold in terms:
                    mem = subtract_product(mem, s, threshold)
        elif reset == "zero":
            keep = _keep(terms)
            if dual:
                pos_mem, neg_mem = pos_mem * keep, neg_mem * keep
            else:
                mem = mem * keep
        elif reset != "none":
            raise ValueError(f"leaky_step: expected reset in {RESETS}, got {reset!r}")
    if dual:
        new["pos_mem"], new["neg_mem"] = pos_mem, neg_mem
    else:
        new["mem"] = mem
    if recurrent:
        new["prev_output"] = out
    return out, new
