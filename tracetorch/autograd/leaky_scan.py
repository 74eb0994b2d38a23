"""A whole sequence of a leaky-integrator neuron in one call, with a hand-written BPTT.

:func:`leaky_scan` gives the same outputs, final states and gradients as calling
:func:`tracetorch.functional.leaky_step` once per timestep, but for the common
configurations (:func:`scan_supported`) it runs the forward loop without recording an
autograd graph and differentiates it with one reverse-time loop (:class:`LeakyScan`).
Every other configuration falls back to the loop of :func:`~tracetorch.functional.leaky_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..functional.leaky import LeakyConfig, Reset, leaky_step
from ..functional.spike import sigmoid4x
from .buffers import sequence_buffer
from .function import _transformed, apply
from .surrogate import _IN_PLACE, SURROGATES, SpikeFn

__all__ = ["LeakyScan", "leaky_scan", "scan_supported"]

TensorFn = Callable[[Tensor], Tensor]

# The backward works on blocks of as many steps as fit in about this many elements (512 KiB
# of float32): few kernels per block, each on enough elements to pay for its launch, and a
# block's temporaries small enough to stay in a CPU core's cache.
_CHUNK_ELEMENTS = 131072


class _Spec(NamedTuple):
    """What the scan computes and keeps (the non-tensor argument of :class:`LeakyScan`)."""

    synaptic: bool
    ema: bool
    firing: bool  # binary firing with reset by subtraction; False: the output is the membrane
    spike: SpikeFn | None  # Heaviside with this surrogate; None: sigmoid4x
    fused: bool  # addcmul kernels (leaky_step without autograd) or mul then add (with autograd)
    keep_z: bool  # keep every spike-function input (a surrogate derivative needs it, unless
    # the membranes are kept: then the backward recomputes it from them)
    keep_mem: bool  # keep every post-reset membrane (d beta needs it)
    keep_syn: bool  # keep every synaptic trace (d alpha or an EMA's d beta needs it)
    keep_xs: bool  # save the inputs and syn_0 (d alpha or an EMA's d beta needs them)
    # the first step's leak as one addcmul even where ``fused`` is False: leaky_step fuses a
    # step in which neither the membrane, nor what it receives, nor beta needs a gradient
    # (only the threshold or the bias does), and the two forms can differ in the last bit
    fuse_first: bool = False


def scan_supported(
    config: LeakyConfig,
    spike_fn: TensorFn,
    quant_fn: TensorFn | None,
    reset: Reset = "subtract",
) -> bool:
    """Whether :func:`leaky_scan` takes its fast path for this neuron.

    Supported: not dual, not recurrent, no ``quant_fn``, firing ``"none"`` (any ``spike_fn``:
    it is not called) or ``"binary"`` with ``reset="subtract"`` and ``spike_fn`` either
    :func:`tracetorch.functional.sigmoid4x` or a :class:`~tracetorch.autograd.SpikeFn`.
    Synaptic and EMA may be on or off. That covers LI, SLI, LIEMA, SLIEMA, LIB, SLIB, LIF and
    Decay; the others run as a loop of :func:`~tracetorch.functional.leaky_step`.

    Args:
        config: The neuron's switches.
        spike_fn: The spike function the neuron fires with.
        quant_fn: The quantizer applied to spikes, or ``None``.
        reset: What a spike does to the membrane (see :func:`leaky_scan`).

    Returns:
        ``True`` if :func:`leaky_scan` runs :class:`LeakyScan` (or its graph-free loop).

    Example:
        >>> from tracetorch.autograd import scan_supported, spike_fn
        >>> from tracetorch.functional import LeakyConfig, sigmoid4x
        >>> scan_supported(LeakyConfig(firing="binary"), spike_fn("atan"), None)
        True
        >>> scan_supported(LeakyConfig(firing="ternary"), sigmoid4x, None)
        False
    """
    dual, _, recurrent, _, firing = config
    if dual or recurrent or quant_fn is not None:
        return False
    if firing == "none":
        return True
    if firing != "binary" or reset != "subtract":
        return False
    return spike_fn is sigmoid4x or type(spike_fn) is SpikeFn


def _scan_forward(
    xs: Tensor,
    mem: Tensor,
    syn: Tensor | None,
    alpha: Tensor | None,
    beta: Tensor,
    threshold: Tensor | None,
    bias: Tensor | None,
    spec: _Spec,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """The forward loop, no graph: ``(outputs, mem, syn, zs, mems, syns)``.

    ``zs`` (spike-function inputs), ``mems`` (post-reset membranes) and ``syns`` (synaptic
    traces) are ``[T, ...]`` where ``spec`` asks to keep them for the backward, else
    ``None``. Each step performs the float operations of
    :func:`~tracetorch.functional.leaky_step` in the same order (``spec.fused``: those it
    performs without autograd; ``spec.fuse_first``: the first step's leak as the step fuses
    it when neither the membrane, nor what it receives, nor beta needs a gradient).
    """
    synaptic, ema, firing, spike, fused, keep_z, keep_mem, keep_syn, _, fuse_first = spec
    steps = xs.shape[0]

    def destinations(keep: bool) -> tuple[Tensor | None, tuple[Tensor, ...]]:
        """Per-step slices of a new ``[T, ...]`` tensor, or one step buffer reused."""
        if keep:
            seq = sequence_buffer(xs)
            return seq, seq.unbind(0)
        return None, (torch.empty_like(xs[0]),) * steps

    out = sequence_buffer(xs)
    outs = out.unbind(0)
    z_seq = mem_seq = syn_seq = None
    if synaptic:
        syn_seq, syn_dsts = destinations(keep_syn)
    if firing:
        if spike is None or keep_z:
            z_seq, z_dsts = destinations(keep_z)
        elif bias is not None:
            v = torch.empty_like(xs[0])  # u + bias, compared with the threshold
        mem_seq, mem_dsts = destinations(keep_mem)
        u = torch.empty_like(xs[0])  # the membrane before reset
    for t, x in enumerate(xs.unbind(0)):
        if synaptic:
            syn = x = torch.lerp(x, syn, alpha, out=syn_dsts[t])
        m = u if firing else outs[t]
        if ema:
            torch.lerp(x, mem, beta, out=m)
        elif fused or (fuse_first and t == 0):
            torch.addcmul(x, mem, beta, out=m)
        else:
            torch.mul(mem, beta, out=m).add_(x)
        if not firing:
            mem = m
            continue
        s = outs[t]
        if spike is None or keep_z:
            z = z_dsts[t]
            if bias is None:
                torch.sub(u, threshold, out=z)
            else:
                torch.add(u, bias, out=z).sub_(threshold)
            if spike is None:
                torch.sigmoid(z.mul_(4), out=s)  # z is a step buffer: only surrogates keep it
            else:
                torch.gt(z, 0, out=s)
        else:  # z > 0 exactly when u + bias > threshold (IEEE subtraction keeps the sign)
            torch.gt(u if bias is None else torch.add(u, bias, out=v), threshold, out=s)
        mem = mem_dsts[t]  # the previous membrane has been read: its buffer may be reused
        if fused or spike is not None:  # s in {0, 1}: s * threshold is exact, one rounding
            torch.addcmul(u, s, threshold, value=-1, out=mem)
        else:
            torch.sub(u, torch.mul(s, threshold, out=mem), out=mem)
    if not firing or mem_seq is not None:
        mem = mem.clone()  # not a view of another output
    if syn_seq is not None:
        syn = syn.clone()
    return out, mem, syn, z_seq, mem_seq, syn_seq


class _NoDoubleBackward(torch.autograd.Function):
    """``(grad, anchor) -> grad``, whose own backward raises.

    :class:`LeakyScan` passes its gradients through it under ``create_graph=True``, with its
    own output as the anchor: the gradients then hang on the graph of the scan, and
    differentiating them raises instead of silently leaving out the terms through the scan.
    """

    @staticmethod
    def forward(grad: Tensor, anchor: Tensor) -> Tensor:
        return grad.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, _: Tensor) -> tuple[None, None]:
        raise RuntimeError(
            "leaky_scan: its gradient is not differentiable (double backward through "
            "LeakyScan is not supported); for higher-order gradients run the loop of "
            "tracetorch.functional.leaky_step instead"
        )


class LeakyScan(torch.autograd.Function):
    r"""The forward loop of a leaky-integrator neuron and its hand-derived BPTT.

    ``LeakyScan.apply(xs, mem, syn, alpha, beta, threshold, bias, spec)`` returns
    ``(outputs, mem_T, syn_T, zs, mems, syns)``; call it through :func:`leaky_scan`, which
    builds ``spec`` and drops the last three (sequences kept for the backward, no gradient;
    the backward's working memory: one that frees the graph overwrites ``mems``).
    ``syn``, ``alpha`` (not synaptic), ``threshold`` (no firing) and ``bias`` may be ``None``.

    Forward, step ``t`` (``m`` the membrane, ``I`` what it receives, ``f`` the spike function):

    - synaptic: ``syn_t = lerp(x_t, syn_{t-1}, alpha) = alpha syn_{t-1} + (1-alpha) x_t``,
      ``I_t = syn_t``; otherwise ``I_t = x_t``
    - ``u_t = beta m_{t-1} + I_t`` (EMA: ``lerp(I_t, m_{t-1}, beta)``)
    - firing: ``z_t = u_t + bias - threshold`` (no bias: 0), ``s_t = f(z_t)`` (the output),
      ``m_t = u_t - s_t threshold``; otherwise the output is ``m_t = u_t``.

    Backward (BPTT), for ``t = T-1`` down to ``0``, with ``o_t = dL/doutput_t``,
    ``G_t = dL/dm_t`` and ``H_t = dL/du_t``; ``G_{T-1}`` is the gradient of the final ``mem``,
    and every gradient left out counts as zero. The reference is the autograd graph of
    :func:`~tracetorch.functional.leaky_step` in step mode, which differentiates the reset
    ``m_t = u_t - s_t * threshold`` into both factors (``s_t`` and ``threshold``) and the
    spike through the surrogate:

    - firing: ``dL/ds_t = o_t - threshold G_t`` (output and reset);
      ``dL/dz_t = f'(z_t) dL/ds_t``; ``H_t = G_t + dL/dz_t`` (``u_t`` reaches ``m_t``
      directly and through ``z_t``); otherwise ``H_t = G_t + o_t``
    - the leak: ``G_{t-1} = beta H_t`` (EMA too: ``d lerp / d m_{t-1} = beta``), carried to the
      step before; ``dL/dmem_0 = beta H_0``
    - ``dL/dthreshold = -sum_t (s_t G_t + dL/dz_t)`` (reset, then ``z``);
      ``dL/dbias = sum_t dL/dz_t``
    - ``dL/dbeta = sum_t H_t m_{t-1}`` (EMA: ``H_t (m_{t-1} - I_t)``);
      ``dL/dI_t = H_t`` (EMA: ``(1 - beta) H_t``)
    - synaptic: ``K_t = dL/dsyn_t = dL/dI_t + alpha K_{t+1}`` (at ``t = T-1`` the gradient of
      the final ``syn`` instead of ``alpha K_T``); ``dL/dx_t = (1 - alpha) K_t``,
      ``dL/dsyn_0 = alpha K_0``, ``dL/dalpha = sum_t K_t (syn_{t-1} - x_t)``; otherwise
      ``dL/dx_t = dL/dI_t``.

    ``f'`` is ``4 s (1 - s)`` for :func:`~tracetorch.functional.sigmoid4x` and the surrogate
    derivative ``SURROGATES[name].derivative(z, slope)`` for a
    :class:`~tracetorch.autograd.SpikeFn`. Every parameter gradient is summed over time and
    over the dims the parameter was broadcast along.

    Saved, each only where a requested gradient needs it: the outputs (the spikes ``s``, or
    the membranes ``m`` without firing), the post-reset membranes ``m`` (for ``d beta``), the
    spike-function inputs ``z`` only for a surrogate when ``m`` is not kept (otherwise
    ``z_t = m_t + s_t threshold (+ bias) - threshold`` is recomputed; sigmoid4x's ``f'`` comes
    from ``s``), the synaptic traces, ``xs`` and ``syn_0`` (for ``d alpha`` and an EMA's
    ``d beta``); ``u`` and ``f'`` are never stored. So a LIF with a learnable decay keeps two
    sequences (spikes, which the next layer keeps anyway, and membranes) where the step
    loop's graph keeps three (spike inputs, membranes, spikes).

    How the backward runs: the recursion through the leak is linear in ``H``. Firing,
    ``H_t = G_t (1 - threshold f'(z_t)) + o_t f'(z_t)`` and ``G_t = beta H_{t+1}``, so
    ``H_t = A_t H_{t+1} + B_t`` with ``A_t = beta (1 - threshold f'(z_t))`` and
    ``B_t = o_t f'(z_t)`` (otherwise ``A_t = beta``, ``B_t = o_t``); at ``t = T-1``,
    ``H_{T-1} = (1 - threshold f'(z_{T-1})) G_{T-1} + B_{T-1}``. Only ``H_t += A_t H_{t+1}``
    has to run one step at a time, one kernel per step. ``f'``, ``A``, ``B`` and the sums
    over time run on blocks of steps, a few kernels per block, taking ``G_t = beta H_{t+1}``
    and ``dL/dz_t = H_t - G_t`` from ``H``, and so does ``dL/dthreshold``'s
    ``sum_t s_t G_t = beta sum_t s_t H_{t+1} + s_{T-1} G_{T-1}``. The synaptic recursion
    ``K_t = dL/dI_t + alpha K_{t+1}`` runs in place on ``H`` afterwards, one kernel per step.
    A block holds about ``_CHUNK_ELEMENTS`` elements (8 steps of ``[64, 256]``): its two
    temporaries stay small and in cache, and the sums over time go into step-sized
    accumulators. Where the membranes are kept and the graph is not (``retain_graph=False``),
    ``H`` (and so ``dL/dx``) goes into the membranes' buffer, a block's slots once the block
    has read them for the last time: no whole-sequence buffer more than the forward's.
    Otherwise it and the forward's sequences come from
    :func:`~tracetorch.autograd.sequence_buffer`, which reuses them between calls.
    It is not itself differentiable: differentiating its result (``create_graph=True``, then
    a second backward) raises.
    """

    forward = staticmethod(_scan_forward)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        xs, mem, syn, alpha, beta, threshold, bias, spec = inputs
        out, _, _, *internal = output
        for seq in internal:
            if seq is not None:
                ctx.mark_non_differentiable(seq)
        ctx.set_materialize_grads(False)
        ctx.spec = spec
        keep_xs = spec.keep_xs
        ctx.save_for_backward(
            xs if keep_xs else None,
            mem,
            syn if keep_xs else None,
            alpha,
            beta,
            threshold,
            bias,
            out,
            *internal,
        )

    @staticmethod
    def backward(
        ctx: Any,
        g_out: Tensor | None,
        g_mem: Tensor | None,
        g_syn: Tensor | None,
        *_internal: None,
    ) -> tuple[Tensor | None, ...]:
        if any(g is not None and _batched(g) for g in (g_out, g_mem, g_syn)):
            raise RuntimeError(
                "leaky_scan: the hand-written backward of sequence mode's scan cannot run "
                "batched (torch.autograd.grad(..., is_grads_batched=True), "
                "torch.autograd.functional.jacobian(vectorize=True)); run the model in "
                "mode='step', pass vectorize=False, or take the Jacobian with "
                "torch.func.jacrev, through which sequence mode runs a plain loop"
            )
        saved = ctx.saved_tensors  # read once: a non-reentrant checkpoint allows no second read
        if not torch.is_grad_enabled():
            return _backward(ctx, saved, g_out, g_mem, g_syn)
        # create_graph=True (or a torch.func transform): compute the gradients without a
        # graph, and make them raise if they are differentiated in turn.
        with torch.no_grad():
            grads = _backward(ctx, saved, g_out, g_mem, g_syn)
        anchor = saved[7]  # the outputs: their graph leads to every input
        return tuple(None if g is None else apply(_NoDoubleBackward, g, anchor) for g in grads)


def _batched(grad: Tensor) -> bool:
    """Whether ``grad`` is a batch of gradients (``autograd.grad(..., is_grads_batched=True)``)."""
    return torch._C._functorch.is_legacy_batchedtensor(grad)


def _graph_kept() -> bool:
    """Whether the backward running now keeps the graph (``retain_graph``); ``True`` if unknown."""
    try:
        return bool(torch._C._autograd._get_current_graph_task_keep_graph())
    except (AttributeError, RuntimeError):
        return True


def _backward(
    ctx: Any,
    saved: tuple[Tensor | None, ...],
    g_out: Tensor | None,
    g_mem: Tensor | None,
    g_syn: Tensor | None,
) -> tuple[Tensor | None, ...]:
    """The reverse-time pass of :class:`LeakyScan` on its ``saved`` tensors: the derivation,
    and how it runs, are in its docstring."""
    xs, mem0, syn0, alpha, beta, threshold, bias, out, z_seq, mem_seq, syn_seq = saved
    synaptic, ema, firing, spike, *_ = ctx.spec
    need_x, need_mem, need_syn, need_alpha, need_beta, need_th, need_bias, _ = ctx.needs_input_grad
    if g_out is None and g_mem is None:
        # Only the final syn is used: H = 0, and nothing but the synaptic trace (x, syn_0,
        # alpha) has a path to the loss. The rest gets None, as the step loop's graph gives.
        need_mem = need_beta = need_th = need_bias = False
    need_in = need_x or need_syn or need_alpha  # dL/dI_t is wanted
    need_dz = firing and (need_th or need_bias)
    need_sg = firing and need_th
    steps = out.shape[0]
    last = steps - 1
    step_numel = max(1, out[0].numel())
    chunk = min(steps, max(1, _CHUNK_ELEMENTS // step_numel))  # steps per block

    # H_t = dL/du_t for every step (then dL/dI_t, dL/dx_t). Where the membranes are kept and
    # the graph is freed after this backward, H goes into their buffer, a block's slots once
    # nothing reads them any more (after the block): no whole-sequence buffer more.
    into_mem = mem_seq is not None and not _graph_kept()
    h = mem_seq if into_mem else sequence_buffer(out)
    blocks = out[:chunk]  # the shape of a block of steps (buffers from the cache: no faults)
    hbuf = sequence_buffer(blocks) if into_mem else None  # a block's H before it moves to h
    # f', then A', then the products summed over time
    block = sequence_buffer(blocks) if firing or need_beta else None
    # the sums over time, step-sized: each block adds its own sum (a block's products in
    # ``block`` first)
    step = out[0]
    acc_beta = torch.zeros_like(step) if need_beta else None
    acc_dz = torch.zeros_like(step) if need_dz else None
    acc_sh = torch.zeros_like(step) if need_sg else None  # s_t H_{t+1}
    prev_seq = (mem_seq if firing else out) if need_beta else None  # m_t, post-reset
    ins = (syn_seq if synaptic else xs) if ema and need_beta else None  # I_t
    beta_threshold = beta * threshold if firing else None

    def slopes(start: int, stop: int) -> Tensor:
        """``f'(z_t)`` for the steps ``start:stop``, stacked (in ``block`` where it can be)."""
        into = block[: stop - start]
        if spike is None:  # sigmoid(4 z): f' = 4 s (1 - s)
            s = out[start:stop]
            return torch.addcmul(s, s, s, value=-1, out=into).mul_(4)
        surrogate = SURROGATES[spike.surrogate]
        if z_seq is not None:  # kept for the backward: not to be overwritten
            return surrogate.derivative(z_seq[start:stop], spike.slope)
        # from the kept membranes: u_t = m_t + s_t threshold, z_t = u_t (+ bias) - threshold
        z = torch.addcmul(mem_seq[start:stop], out[start:stop], threshold, out=into)
        z = (z if bias is None else z.add_(bias)).sub_(threshold)
        derivative = _IN_PLACE.get(surrogate.derivative, surrogate.derivative)
        return derivative(z, spike.slope)

    for stop in range(steps, 0, -chunk):
        start = max(stop - chunk, 0)
        n = stop - start
        hc = hbuf[:n] if into_mem else h[start:stop]  # H_start .. H_{stop-1}
        hcs = hc.unbind(0)
        h_after = h[stop] if stop < steps else None  # H_stop, from the block after
        # B_t (and H_{T-1}), then A_t
        if firing:
            df = slopes(start, stop)
            if g_out is None:
                hc.zero_()
            else:
                torch.mul(g_out[start:stop], df, out=hc)
            if stop == steps and g_mem is not None:  # + (1 - threshold f') G_{T-1}
                hcs[-1].add_(g_mem).addcmul_(df[-1], g_mem * threshold, value=-1)
            factors = torch.addcmul(beta, df, beta_threshold, value=-1, out=block[:n]).unbind(0)
            bases = hcs  # B_t, then H_t in place
        else:  # B_t = o_t: read where it is
            if stop == steps:
                if g_out is None:
                    hcs[-1].zero_()
                else:
                    hcs[-1].copy_(g_out[last])
                if g_mem is not None:
                    hcs[-1].add_(g_mem)
            factors = (beta,) * n
            bases = g_out[start:stop].unbind(0) if g_out is not None else None
        # the recursion, one step at a time: H_t = A_t H_{t+1} + B_t
        for i in range(n - 1 if stop == steps else n, 0, -1):
            after = hcs[i] if i < n else h_after
            if bases is None:
                torch.mul(after, beta, out=hcs[i - 1])
            else:
                torch.addcmul(bases[i - 1], factors[i - 1], after, out=hcs[i - 1])
        # the sums over time: G_t = beta H_{t+1} (t < T-1), so dL/dz_t = H_t - beta H_{t+1}
        if need_dz:
            if n > 1:
                acc_dz.add_(
                    torch.addcmul(hc[:-1], hc[1:], beta, value=-1, out=block[: n - 1]).sum(0)
                )
            acc_dz.add_(hcs[-1])
            if h_after is not None:
                acc_dz.addcmul_(h_after, beta, value=-1)
            elif g_mem is not None:  # dL/dz_{T-1} = H_{T-1} - G_{T-1}
                acc_dz.sub_(g_mem)
        if need_sg:  # s_t H_{t+1}; s_{T-1} G_{T-1} is added at the end
            if n > 1:
                acc_sh.add_(torch.mul(out[start : stop - 1], hc[1:], out=block[: n - 1]).sum(0))
            if h_after is not None:
                acc_sh.addcmul_(out[stop - 1], h_after)
        if need_beta:  # H_t m_{t-1}, m_{-1} = mem_0 (EMA: H_t (m_{t-1} - I_t))
            if start == 0:
                acc_beta.addcmul_(hcs[0], mem0)
                if n > 1:
                    acc_beta.add_(torch.mul(hc[1:], prev_seq[: n - 1], out=block[: n - 1]).sum(0))
            else:
                acc_beta.add_(torch.mul(hc, prev_seq[start - 1 : stop - 1], out=block[:n]).sum(0))
            if ema:
                acc_beta.sub_(torch.mul(hc, ins[start:stop], out=block[:n]).sum(0))
        if into_mem:  # m_start .. m_{stop-1} have been read for the last time
            h[start:stop].copy_(hc)

    grads: list[Tensor | None] = [None] * 7
    if need_mem:
        grads[1] = h[0] * beta  # G_{-1} = dL/dmem_0
    if need_beta:
        grads[4] = acc_beta.sum_to_size(beta.shape)
    if need_dz:  # acc_dz = sum_t dL/dz_t
        if need_bias:
            grads[6] = acc_dz.sum_to_size(bias.shape)
        if need_th:
            # dL/dthreshold = -sum_t (s_t G_t + dL/dz_t), G_t = beta H_{t+1}, G_{T-1} given
            sg = acc_sh.mul_(beta)
            if g_mem is not None:
                sg.addcmul_(out[last], g_mem)
            grads[5] = sg.add_(acc_dz).neg_().sum_to_size(threshold.shape)
    if need_in:
        if ema:
            h.mul_(1 - beta)  # dL/dI_t, in place
        if synaptic:
            # K_t = dL/dI_t + alpha K_{t+1}, K_{T-1} = dL/dI_{T-1} + dL/dsyn_{T-1}, in place
            ks = h.unbind(0)
            if g_syn is not None:
                ks[last].add_(g_syn)
            for t in range(last - 1, -1, -1):
                ks[t].addcmul_(alpha, ks[t + 1])
            if need_syn:
                grads[2] = ks[0] * alpha
            if need_alpha:  # sum_t K_t (syn_{t-1} - x_t), syn_{-1} = syn_0
                acc_alpha = torch.mul(ks[0], syn0 - xs[0])
                if steps > 1:
                    diff = torch.sub(syn_seq[:-1], xs[1:])
                    acc_alpha += diff.mul_(h[1:]).sum(0)
                grads[3] = acc_alpha.sum_to_size(alpha.shape)
            if need_x:
                grads[0] = h.mul_(1 - alpha)  # dL/dx_t = (1 - alpha) K_t
        elif need_x:
            grads[0] = h
    return (*grads, None)


def _loop(
    xs: Tensor,
    states: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    config: LeakyConfig,
    spike_fn: TensorFn,
    quant_fn: TensorFn | None,
    reset: Reset = "subtract",
) -> tuple[Tensor, dict[str, Tensor]]:
    """The reference: :func:`~tracetorch.functional.leaky_step` once per timestep."""
    outs = []
    state: Mapping[str, Tensor] = states
    for x in xs.unbind(0):
        out, state = leaky_step(x, state, params, config, spike_fn, quant_fn, reset)
        outs.append(out)
    return torch.stack(outs), dict(state)


def _fits(xs: Tensor, tensors: tuple[Tensor | None, ...], step: torch.Size, states: int) -> bool:
    """Whether the fast path takes these tensors (the first ``states`` of them are states).

    It needs floating inputs, one dtype and device for all, states of one step's shape and
    parameters that broadcast to that shape without enlarging it.
    """
    if not xs.is_floating_point():
        return False
    for i, v in enumerate(tensors):
        if v is None:
            continue
        if not isinstance(v, Tensor) or v.dtype != xs.dtype or v.device != xs.device:
            return False
        if i < states and v.shape != step:
            return False
        if i >= states and (
            v.dim() > len(step)
            or any(
                n != 1 and n != m for n, m in zip(reversed(v.shape), reversed(step), strict=False)
            )
        ):
            return False
    return True


def leaky_scan(
    xs: Tensor,
    states: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    config: LeakyConfig,
    spike_fn: TensorFn = sigmoid4x,
    quant_fn: TensorFn | None = None,
    reset: Reset = "subtract",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Runs a leaky-integrator neuron over a whole sequence (time first).

    The same outputs, final states and gradients as calling
    :func:`tracetorch.functional.leaky_step` for ``xs[0]``, ``xs[1]``, ... in turn. For the
    configurations of :func:`scan_supported` it runs :class:`LeakyScan`: a forward loop that
    records no graph and a hand-written backward through time; without gradients
    (``torch.no_grad``, ``torch.inference_mode``, or no input requiring one) just the loop.
    Other configurations, mixed dtypes or devices, and states or parameters that do not fit
    one step's shape run the loop of :func:`~tracetorch.functional.leaky_step`.

    Args:
        xs: Input currents, time first.
        states: The states before the first step, by name, as for
            :func:`~tracetorch.functional.leaky_step` (``mem``, plus ``syn`` when synaptic).
        params: The parameter values by name, each broadcastable against one step (a
            scalar, ``[N]`` with the features last, ``[N, 1, 1]`` for the channels of
            ``[B, N, H, W]``, ...).
        config: The neuron's switches.
        spike_fn: The spike function (see :func:`~tracetorch.functional.fire`).
        quant_fn: The quantizer of the spikes, or ``None``.
        reset: The reset after a spike (see :func:`~tracetorch.functional.leaky_step`); the
            fast path implements ``"subtract"``, a firing neuron with another reset runs the
            loop.

    Returns:
        ``(outputs, final_states)``: the outputs of every step, stacked along dim 0, and the
        states after the last step, by name.

    Raises:
        ValueError: If ``xs`` has no time dimension or no timesteps.

    Shape:
        - xs: ``[T, *step]`` with ``T >= 1``.
        - states: each ``[*step]``.
        - outputs: ``[T, *step]``.

    Example:
        >>> from tracetorch.autograd import spike_fn
        >>> from tracetorch.functional import LeakyConfig
        >>> xs = torch.full((4, 1), 0.6, requires_grad=True)
        >>> params = {"beta": torch.tensor(0.9), "threshold": torch.tensor(1.0)}
        >>> spikes, state = leaky_scan(
        ...     xs, {"mem": torch.zeros(1)}, params, LeakyConfig(firing="binary"), spike_fn()
        ... )
        >>> spikes.detach().flatten(), state["mem"].detach()
        (tensor([0., 1., 0., 1.]), tensor([0.2534]))
        >>> spikes.sum().backward()
        >>> xs.grad.shape
        torch.Size([4, 1])
    """
    if xs.dim() < 1 or xs.shape[0] == 0:
        raise ValueError(
            f"leaky_scan: expected inputs of shape [T, ...] with T >= 1, "
            f"got shape {tuple(xs.shape)}"
        )
    _, synaptic, _, ema, firing = config
    if (
        not scan_supported(config, spike_fn, quant_fn, reset)
        or torch.compiler.is_compiling()  # a traced plain loop fuses into one kernel per layer
        or _transformed()  # vmap/jacrev/dual tensors: plain ops batch, nest, carry tangents
    ):
        return _loop(xs, states, params, config, spike_fn, quant_fn, reset)
    binary = firing == "binary"
    try:
        mem = states["mem"]
        syn = states["syn"] if synaptic else None
        alpha = params["alpha"] if synaptic else None
        beta = params["beta"]
        threshold = params["threshold"] if binary else None
    except KeyError:  # let leaky_step name what is missing
        return _loop(xs, states, params, config, spike_fn, quant_fn, reset)
    bias = params.get("bias") if binary else None
    tensors = (mem, syn, alpha, beta, threshold, bias)
    if not _fits(xs, tensors, xs.shape[1:], states=2):
        return _loop(xs, states, params, config, spike_fn, quant_fn, reset)

    spike = spike_fn if binary and spike_fn is not sigmoid4x else None
    grad = torch.is_grad_enabled() and any(
        v is not None and v.requires_grad for v in (xs, *tensors)
    )
    if grad:
        need_alpha = synaptic and alpha.requires_grad
        need_beta = beta.requires_grad
        spec = _Spec(
            synaptic,
            ema,
            binary,
            spike,
            fused=False,
            # with the membranes kept, z_t = m_t + s_t * threshold (+ bias) - threshold is
            # recomputed in the backward instead of kept: one sequence less in memory
            keep_z=spike is not None and not need_beta,
            keep_mem=binary and need_beta,
            keep_syn=need_alpha or (synaptic and ema and need_beta),
            keep_xs=need_alpha or (not synaptic and ema and need_beta),
            fuse_first=not (
                mem.requires_grad
                or beta.requires_grad
                or xs.requires_grad
                or (synaptic and (syn.requires_grad or alpha.requires_grad))
            ),
        )
        out, mem, syn, *_ = apply(LeakyScan, xs, mem, syn, alpha, beta, threshold, bias, spec)
    else:
        spec = _Spec(synaptic, ema, binary, spike, True, False, False, False, False)
        out, mem, syn, *_ = _scan_forward(xs, mem, syn, alpha, beta, threshold, bias, spec)
    final = {"syn": syn, "mem": mem} if synaptic else {"mem": mem}
    return out, final
