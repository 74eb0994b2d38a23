"""One step of the adaptive leaky integrate-and-fire neuron (ALIF) of LSNNs.

Bellec, Salaj, Subramoney, Legenstein and Maass, "Long short-term memory and
learning-to-learn in networks of spiking neurons", NeurIPS 2018. Every spike raises the
neuron's threshold, which then relaxes back with its own, usually slow, decay: the neuron
tires, and the adaptation variable ``a`` keeps a memory of its recent activity much longer
than the membrane does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from .integrate import leaky_integrate, subtract_product
from .spike import sigmoid4x

__all__ = ["alif_step"]


def alif_step(
    x: Tensor,
    state: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    spike_fn: Callable[[Tensor], Tensor] = sigmoid4x,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One timestep of an adaptive LIF neuron.

    1. Membrane: ``mem = beta*mem + x``.
    2. Adaptive threshold, from the adaptation before this step:
       ``A = threshold + beta_a*a``.
    3. Firing: ``s = spike_fn(mem - A)``.
    4. Reset by subtraction of the threshold that was crossed: ``mem = mem - s*A``.
    5. Adaptation: ``a = rho*a + (1 - rho)*s``.

    Step 5 is the form of the LSNN paper (Bellec et al. 2018): ``a`` is a moving average of
    the spikes, so ``beta_a`` is the threshold increase of a neuron firing at every step.
    The e-prop paper (Bellec et al. 2020) writes ``a = rho*a + s`` with a strength
    ``beta_e``: the same neuron with ``beta_a = beta_e / (1 - rho)``. Subtracting the
    adaptive threshold ``A`` (not the baseline ``threshold``) follows the LSNN reference
    implementation; the input enters unscaled, as in :class:`~tracetorch.snn.LIF` (the
    paper's ``(1 - alpha) R_m`` factor belongs to the weights before the layer).

    Args:
        x: The input current of this step, ``[*, N]``.
        state: ``mem`` (membrane) and ``a`` (adaptation) before the step.
        params: ``beta`` (membrane decay), ``rho`` (adaptation decay), ``threshold``
            (baseline threshold) and ``beta_a`` (adaptation strength); each a scalar or
            ``[N]``, broadcastable against the states.
        spike_fn: Maps ``mem - A`` to a firing value (a Heaviside step with a surrogate
            gradient, or a smooth function such as :func:`sigmoid4x`).

    Returns:
        ``(spikes, new_state)`` with ``new_state`` holding ``mem`` and ``a``.

    Example:
        >>> import torch
        >>> from tracetorch.autograd import spike_fn
        >>> from tracetorch.functional import alif_step
        >>> params = {"beta": torch.tensor(0.5), "rho": torch.tensor(0.5),
        ...           "threshold": torch.tensor(1.0), "beta_a": torch.tensor(1.0)}
        >>> state = {"mem": torch.zeros(1), "a": torch.zeros(1)}
        >>> spikes = []
        >>> for _ in range(4):
        ...     s, state = alif_step(torch.full((1,), 0.75), state, params, spike_fn("atan"))
        ...     spikes.append(s.item())
        >>> spikes, state["a"]  # the second spike needs a higher membrane: it comes later
        ([0.0, 1.0, 0.0, 0.0], tensor([0.1250]))
    """
    threshold = params["threshold"] + params["beta_a"] * state["a"]
    mem = leaky_integrate(state["mem"], x, params["beta"])
    s = spike_fn(mem - threshold)
    mem = subtract_product(mem, s, threshold)
    a = torch.lerp(s, state["a"], params["rho"])
    return s, {"mem": mem, "a": a}
