"""leaky_scan against the loop of leaky_step it replaces: values, final states, gradients.

The loop of :func:`tracetorch.functional.leaky_step` under ordinary autograd is the
reference for every supported configuration (float64, several layouts, per-neuron and
scalar parameters); gradcheck covers the smooth ones, and the unsupported configurations
must give exactly the loop's results.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from tracetorch.autograd import leaky_scan, scan_supported, spike_fn
from tracetorch.functional import LeakyConfig, leaky_step, round_ste, sigmoid4x

F64 = torch.float64
scan_module = sys.modules["tracetorch.autograd.leaky_scan"]  # the name is the function's
T = 6


@dataclass
class Case:
    name: str
    config: LeakyConfig
    spike: Callable[[Tensor], Tensor]
    bias: bool = False

    def __repr__(self) -> str:
        return self.name

    @property
    def smooth(self) -> bool:
        return self.config.firing == "none" or self.spike is sigmoid4x

    def state_names(self) -> tuple[str, ...]:
        return ("syn", "mem") if self.config.synaptic else ("mem",)

    def param_names(self) -> tuple[str, ...]:
        names = ("alpha", "beta") if self.config.synaptic else ("beta",)
        if self.config.firing == "binary":
            names += ("threshold", "bias") if self.bias else ("threshold",)
        return names


BINARY = "binary"
CASES = [
    Case("LI", LeakyConfig(), sigmoid4x),
    Case("SLI", LeakyConfig(synaptic=True), sigmoid4x),
    Case("LIEMA", LeakyConfig(ema=True), sigmoid4x),
    Case("SLIEMA", LeakyConfig(synaptic=True, ema=True), sigmoid4x),
    Case("LIB-sigmoid4x", LeakyConfig(firing=BINARY), sigmoid4x, bias=True),
    Case("SLIB-sigmoid4x", LeakyConfig(synaptic=True, firing=BINARY), sigmoid4x, bias=True),
    Case("LIF-atan", LeakyConfig(firing=BINARY), spike_fn("atan")),
    Case("LIB-fast_sigmoid", LeakyConfig(firing=BINARY), spike_fn("fast_sigmoid", 5.0), True),
    Case("SLIB-triangle", LeakyConfig(synaptic=True, firing=BINARY), spike_fn("triangle", 0.8)),
    Case("LIB-straight_through", LeakyConfig(firing=BINARY), spike_fn("straight_through"), True),
    Case("LIEMA-binary", LeakyConfig(ema=True, firing=BINARY), sigmoid4x, bias=True),
]
SMOOTH = [c for c in CASES if c.smooth]
FIRING = [c for c in CASES if c.config.firing != "none"]

# (step shape, shape of a per-neuron parameter): features last, and channels of NCHW
LAYOUTS = {"BN": ((3, 4), (4,)), "BCHW": ((2, 3, 2, 2), (3, 1, 1))}


def _make(case: Case, step: tuple[int, ...], pshape: tuple[int, ...], dtype=F64, seed=0):
    """Inputs, initial states and parameters (leaf tensors requiring grad)."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(lo: float, hi: float, shape) -> Tensor:
        return (lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=F64)).to(dtype)

    ranges = {"alpha": (0.3, 0.8), "beta": (0.5, 0.95), "threshold": (0.5, 1.5)}
    ranges["bias"] = (-0.2, 0.2)
    xs = (torch.randn((T, *step), generator=gen, dtype=F64) * 0.8 + 0.4).to(dtype)
    values = {"syn": uniform(-0.5, 0.5, step), "mem": uniform(-0.5, 1.0, step)}
    states = {n: values[n] for n in case.state_names()}
    params = {n: uniform(*ranges[n], pshape) for n in case.param_names()}
    for v in (xs, *states.values(), *params.values()):
        v.requires_grad_()
    return xs, states, params


def _loop(xs, states, params, config, spike, quant=None):
    outs, state = [], states
    for x in xs.unbind(0):
        out, state = leaky_step(x, state, params, config, spike, quant)
        outs.append(out)
    return torch.stack(outs), state


def _loss_weights(out: Tensor, final: dict[str, Tensor], seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    w_final = {n: torch.randn(v.shape, generator=gen, dtype=v.dtype) for n, v in final.items()}
    return w_out, w_final


def _loss(out, final, weights, use_out=True, use_final=True) -> Tensor:
    """A weighted sum of the outputs and final states; a part left out gets no gradient
    at all (the backward then receives ``None`` for it, not zeros)."""
    w_out, w_final = weights
    terms = [(out * w_out).sum()] if use_out else []
    if use_final:
        terms += [(v * w_final[n]).sum() for n, v in final.items()]
    return sum(terms[1:], terms[0])


def _compare(case, xs, states, params, use_out=True, use_final=True, rtol=1e-10, atol=1e-12):
    leaves = (xs, *states.values(), *params.values())
    out, final = leaky_scan(xs, states, params, case.config, case.spike)
    assert type(out.grad_fn).__name__ == "LeakyScanBackward"  # the fast path ran
    ref_out, ref_final = _loop(xs, states, params, case.config, case.spike)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)  # same float ops, same order
    assert list(final) == list(ref_final)
    for n in final:
        torch.testing.assert_close(final[n], ref_final[n], rtol=0, atol=0)
    weights = _loss_weights(out, final)
    wanted = [v for v in leaves if v.requires_grad]
    grads = torch.autograd.grad(_loss(out, final, weights, use_out, use_final), wanted)
    ref = torch.autograd.grad(_loss(ref_out, ref_final, weights, use_out, use_final), wanted)
    for g, r in zip(grads, ref, strict=True):
        assert g.shape == r.shape
        torch.testing.assert_close(g, r, rtol=rtol, atol=atol)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", CASES)
def test_matches_loop_per_neuron(case: Case, layout: str) -> None:
    step, pshape = LAYOUTS[layout]
    _compare(case, *_make(case, step, pshape))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", CASES)
def test_matches_loop_scalar_params(case: Case, layout: str) -> None:
    step, _ = LAYOUTS[layout]
    _compare(case, *_make(case, step, (), seed=2))


@pytest.mark.parametrize("parts", ["both", "outputs", "final states"])
@pytest.mark.parametrize("block", [1, 2, 4])
@pytest.mark.parametrize("case", CASES)
def test_matches_loop_in_blocks_of_steps(
    case: Case, block: int, parts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backward works on blocks of steps (one block at T = 6 elsewhere): 6 blocks of 1
    step, 3 of 2, and 4 + 2, each with the outputs, the final states or both in the loss."""
    step, pshape = LAYOUTS["BN"]
    monkeypatch.setattr(scan_module, "_CHUNK_ELEMENTS", block * 3 * 4)
    use_out, use_final = parts != "final states", parts != "outputs"
    _compare(case, *_make(case, step, pshape, seed=3), use_out=use_out, use_final=use_final)


@pytest.mark.parametrize("case", FIRING)
def test_a_retained_graph_gives_the_same_gradients_again(case: Case) -> None:
    # the last backward through the graph writes dL/dx into a buffer the graph keeps
    xs, states, params = _make(case, *LAYOUTS["BN"])
    leaves = (xs, *states.values(), *params.values())
    out, final = leaky_scan(xs, states, params, case.config, case.spike)
    loss = _loss(out, final, _loss_weights(out, final))
    first = torch.autograd.grad(loss, leaves, retain_graph=True)
    second = torch.autograd.grad(loss, leaves, retain_graph=True)
    last = torch.autograd.grad(loss, leaves)
    ref_out, ref_final = _loop(xs, states, params, case.config, case.spike)
    ref = torch.autograd.grad(_loss(ref_out, ref_final, _loss_weights(out, final)), leaves)
    for a, b, c, r in zip(first, second, last, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(c, b, rtol=0, atol=0)
        torch.testing.assert_close(c, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", FIRING)
def test_spikes_happen(case: Case) -> None:
    """The inputs of these tests do cross the threshold (else the reset is untested)."""
    xs, states, params = _make(case, (3, 4), (4,))
    with torch.no_grad():
        out, _ = leaky_scan(xs, states, params, case.config, case.spike)
    assert (out > 0.5).any() and (out < 0.5).any()


@pytest.mark.parametrize("case", CASES)
def test_gradient_of_final_state_only_and_outputs_only(case: Case) -> None:
    xs, states, params = _make(case, (3, 4), (4,), seed=3)
    _compare(case, xs, states, params, use_out=False)
    _compare(case, xs, states, params, use_final=False)


@pytest.mark.parametrize("case", [c for c in CASES if c.config.synaptic])
def test_a_loss_of_the_final_syn_alone_gives_the_rest_no_gradient(case: Case) -> None:
    # as the step loop's graph: beta, threshold, bias and mem_0 have no path to syn, so an
    # optimizer skips them (None), where a zero would still move them (weight decay)
    xs, states, params = _make(case, (3, 4), (4,), seed=9)
    leaves = [xs, *states.values(), *params.values()]
    _, final = leaky_scan(xs, states, params, case.config, case.spike)
    assert type(final["syn"].grad_fn).__name__ == "LeakyScanBackward"
    _, ref_final = _loop(xs, states, params, case.config, case.spike)
    got = torch.autograd.grad(final["syn"].sum(), leaves, allow_unused=True)
    want = torch.autograd.grad(ref_final["syn"].sum(), leaves, allow_unused=True)
    assert [g is None for g in got] == [w is None for w in want]
    assert sum(w is None for w in want) >= 2  # mem_0 and beta at least
    for g, w in zip(got, want, strict=True):
        if w is not None:
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_some_inputs_without_grad(case: Case) -> None:
    xs, states, params = _make(case, (3, 4), (4,), seed=4)
    xs.requires_grad_(False)
    states["mem"].requires_grad_(False)
    _compare(case, xs, states, params)
    for v in params.values():
        v.requires_grad_(False)
    xs.requires_grad_(True)
    _compare(case, xs, states, params)


@pytest.mark.parametrize("case", CASES)
def test_one_step(case: Case) -> None:
    xs, states, params = _make(case, (3, 4), (4,), seed=5)
    _compare(case, xs[:1].detach().requires_grad_(), states, params)


@pytest.mark.parametrize("case", CASES)
def test_non_contiguous_inputs(case: Case) -> None:
    xs, states, params = _make(case, (3, 4), (4,), seed=6)
    batch_first = xs.detach().transpose(0, 1).contiguous().requires_grad_()
    _compare(case, batch_first.transpose(0, 1), states, params)


@pytest.mark.parametrize("case", CASES)
def test_float32_bit_for_bit(case: Case) -> None:
    """float32: the same spikes and membranes as step mode, with and without autograd."""
    xs, states, params = _make(case, (3, 4), (4,), dtype=torch.float32, seed=7)
    out, final = leaky_scan(xs, states, params, case.config, case.spike)
    ref_out, ref_final = _loop(xs, states, params, case.config, case.spike)
    assert torch.equal(out, ref_out)
    assert all(torch.equal(final[n], ref_final[n]) for n in ref_final)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    leaves = (xs, *states.values(), *params.values())
    grads = torch.autograd.grad((out * w).sum(), leaves)
    ref = torch.autograd.grad((ref_out * w).sum(), leaves)
    for g, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            out, final = leaky_scan(xs, states, params, case.config, case.spike)
            ref_out, ref_final = _loop(xs, states, params, case.config, case.spike)
        assert out.grad_fn is None
        assert torch.equal(out, ref_out)
        assert all(torch.equal(final[n], ref_final[n]) for n in ref_final)


@pytest.mark.parametrize("case", SMOOTH)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_gradcheck(case: Case, layout: str) -> None:
    step, pshape = LAYOUTS[layout]
    if layout == "BCHW":
        step = (1, 3, 1, 2)
    xs, states, params = _make(case, step, pshape, seed=8)
    snames, pnames = list(states), list(params)

    def run(xs: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        st = dict(zip(snames, rest[: len(snames)], strict=True))
        pa = dict(zip(pnames, rest[len(snames) :], strict=True))
        out, final = leaky_scan(xs, st, pa, case.config, case.spike)
        return (out, *final.values())

    inputs = (xs, *states.values(), *params.values())
    assert type(run(*inputs)[0].grad_fn).__name__ == "LeakyScanBackward"
    assert torch.autograd.gradcheck(run, inputs)


@pytest.mark.parametrize("square", [False, True])
def test_double_backward_raises(square: bool) -> None:
    """Differentiating the gradient raises (it would otherwise miss the scan's own terms),
    whether or not the incoming gradient carries a graph."""
    case = CASES[4]  # LIB with sigmoid4x: smooth, so a second derivative would exist
    xs, states, params = _make(case, (3, 4), (4,))
    out, _ = leaky_scan(xs, states, params, case.config, case.spike)
    loss = out.square().sum() if square else out.sum()
    g_xs, g_beta = torch.autograd.grad(loss, (xs, params["beta"]), create_graph=True)
    ref_out, _ = _loop(xs, states, params, case.config, case.spike)
    ref_loss = ref_out.square().sum() if square else ref_out.sum()
    ref = torch.autograd.grad(ref_loss, (xs, params["beta"]))
    torch.testing.assert_close(g_xs.detach(), ref[0])  # the first derivative is still right
    torch.testing.assert_close(g_beta.detach(), ref[1])
    with pytest.raises(RuntimeError, match="gradient is not differentiable"):
        torch.autograd.grad(g_xs.sum(), xs)
    with pytest.raises(RuntimeError, match="gradient is not differentiable"):
        torch.autograd.grad(g_beta.sum(), params["threshold"])
    with pytest.raises(RuntimeError, match="gradient is not differentiable"):
        (g_beta.sum() + g_xs.square().sum()).backward()


def test_torch_func_grad() -> None:
    """Under torch.func the scan runs the plain loop: gradients of any order, as the loop's."""
    case = CASES[6]  # LIF with atan
    xs, states, params = _make(case, (3, 4), (4,))
    xs = xs.detach()

    def loss(xs: Tensor, beta: Tensor) -> Tensor:
        out, _ = leaky_scan(xs, states, {**params, "beta": beta}, case.config, case.spike)
        return out.square().sum()

    grads = torch.func.grad(loss, argnums=(0, 1))(xs, params["beta"].detach())
    xs.requires_grad_()
    ref_out, _ = _loop(xs, states, params, case.config, case.spike)
    ref = torch.autograd.grad(ref_out.square().sum(), (xs, params["beta"]))
    for g, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(g, r)

    def loop_loss(xs: Tensor, beta: Tensor) -> Tensor:
        out, _ = _loop(xs, states, {**params, "beta": beta}, case.config, case.spike)
        return out.square().sum()

    beta = params["beta"].detach()
    second = torch.func.grad(lambda v: torch.func.grad(loss, argnums=1)(xs, v).sum())(beta)
    expected = torch.func.grad(lambda v: torch.func.grad(loop_loss, argnums=1)(xs, v).sum())(beta)
    torch.testing.assert_close(second, expected)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_mode_ad_runs_the_plain_loop(case: Case) -> None:
    """Dual tensors (torch.autograd.forward_ad) carry their tangents as through the loop."""
    xs, states, params = _make(case, (3, 4), (4,))
    xs, tangent = xs.detach(), torch.randn_like(xs)
    with fwAD.dual_level():
        out, final = leaky_scan(
            fwAD.make_dual(xs, tangent), states, params, case.config, case.spike
        )
        got = fwAD.unpack_dual(out).tangent, fwAD.unpack_dual(final["mem"]).tangent
        ref_out, ref_final = _loop(
            fwAD.make_dual(xs, tangent), states, params, case.config, case.spike
        )
        expected = fwAD.unpack_dual(ref_out).tangent, fwAD.unpack_dual(ref_final["mem"]).tangent
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_batched_gradients_are_refused_clearly() -> None:
    case = CASES[6]  # LIF with atan
    xs, states, params = _make(case, (3, 4), (4,))
    out, _ = leaky_scan(xs, states, params, case.config, case.spike)
    basis = torch.eye(out.numel(), dtype=out.dtype).reshape(-1, *out.shape)
    with pytest.raises(RuntimeError, match=r"cannot run batched .*mode='step'"):
        torch.autograd.grad(out, xs, basis, is_grads_batched=True)


FALLBACK = [
    Case("DLI", LeakyConfig(dual=True), sigmoid4x),
    Case("DSLIB", LeakyConfig(dual=True, synaptic=True, firing=BINARY), sigmoid4x, True),
    Case("RLIB", LeakyConfig(recurrent=True, firing=BINARY), sigmoid4x, True),
    Case("LIT", LeakyConfig(firing="ternary"), spike_fn("atan"), True),
    Case("LITS", LeakyConfig(firing="scaled"), sigmoid4x, True),
    Case("LIB-lambda", LeakyConfig(firing=BINARY), lambda v: torch.sigmoid(2 * v)),
]


def _fallback_inputs(case: Case, gen: torch.Generator):
    step = (3, 4)
    xs = torch.randn((T, *step), generator=gen, dtype=F64).requires_grad_()
    dual, synaptic, recurrent, _, firing = case.config
    names = ["mem"] if not dual else ["pos_mem", "neg_mem"]
    pnames = ["beta"] if not dual else ["pos_beta", "neg_beta"]
    if synaptic:
        names += ["syn"] if not dual else ["pos_syn", "neg_syn"]
        pnames += ["alpha"] if not dual else ["pos_alpha", "neg_alpha"]
    if recurrent:
        names += ["rec", "prev_output"]
        pnames += ["gamma", "rec_weight"]
    if firing == BINARY:
        pnames += ["threshold", "bias"]
    elif firing != "none":
        pnames += ["pos_threshold", "neg_threshold", "bias"]
        if firing == "scaled":
            pnames += ["pos_scale", "neg_scale"]
    states = {n: torch.rand(step, generator=gen, dtype=F64) for n in names}
    params = {n: torch.rand(4, generator=gen, dtype=F64).requires_grad_() for n in pnames}
    return xs, states, params


@pytest.mark.parametrize("case", FALLBACK)
def test_fallback_matches_loop(case: Case) -> None:
    assert not scan_supported(case.config, case.spike, None)
    xs, states, params = _fallback_inputs(case, torch.Generator().manual_seed(9))
    out, final = leaky_scan(xs, states, params, case.config, case.spike)
    ref_out, ref_final = _loop(xs, states, params, case.config, case.spike)
    assert torch.equal(out, ref_out)
    assert final.keys() == ref_final.keys()
    assert all(torch.equal(final[n], ref_final[n]) for n in final)
    leaves = (xs, *params.values())
    grads = torch.autograd.grad(out.square().sum(), leaves)
    ref = torch.autograd.grad(ref_out.square().sum(), leaves)
    for g, r in zip(grads, ref, strict=True):
        assert torch.equal(g, r)


def test_quant_fn_falls_back() -> None:
    case = Case("LIB", LeakyConfig(firing=BINARY), sigmoid4x, bias=True)
    quant = round_ste()
    assert not scan_supported(case.config, sigmoid4x, quant)
    xs, states, params = _make(case, (3, 4), (4,))
    out, final = leaky_scan(xs, states, params, case.config, sigmoid4x, quant)
    ref_out, ref_final = _loop(xs, states, params, case.config, sigmoid4x, quant)
    assert type(out.grad_fn).__name__ != "LeakyScanBackward"
    assert torch.equal(out, ref_out) and torch.equal(final["mem"], ref_final["mem"])


def test_mixed_dtypes_fall_back() -> None:
    """float32 parameters with float64 inputs promote as in leaky_step (via the loop)."""
    case = CASES[6]
    xs, states, params = _make(case, (3, 4), (4,))
    params = {n: v.detach().float().requires_grad_() for n, v in params.items()}
    out, final = leaky_scan(xs, states, params, case.config, case.spike)
    ref_out, ref_final = _loop(xs, states, params, case.config, case.spike)
    assert out.dtype == F64 and torch.equal(out, ref_out)
    assert torch.equal(final["mem"], ref_final["mem"])


def test_scan_supported_table() -> None:
    for case in CASES:
        assert scan_supported(case.config, case.spike, None), case
    binary = LeakyConfig(firing=BINARY)
    assert not scan_supported(binary, lambda v: v, None)
    assert scan_supported(LeakyConfig(), lambda v: v, None)  # not called without firing
    for reset in ("zero", "none"):  # the scan's backward is the one of the subtracting reset
        assert not scan_supported(binary, spike_fn("atan"), None, reset)
        assert scan_supported(LeakyConfig(), sigmoid4x, None, reset)  # no firing: no reset


def test_rejects_empty_sequence() -> None:
    with pytest.raises(ValueError, match=r"T >= 1, got shape \(0, 3\)"):
        leaky_scan(
            torch.zeros(0, 3), {"mem": torch.zeros(3)}, {"beta": torch.tensor(0.9)}, LeakyConfig()
        )


def test_states_and_outputs_do_not_alias() -> None:
    xs, states, params = _make(CASES[0], (3, 4), (4,))
    with torch.no_grad():
        out, final = leaky_scan(xs, states, params, LeakyConfig())
        before = out[-1].clone()
        final["mem"].add_(1)
    assert torch.equal(out[-1], before)


@pytest.mark.parametrize("case", CASES)
def test_inputs_left_unchanged(case: Case) -> None:
    xs, states, params = _make(case, (3, 4), (4,))
    copies = [v.detach().clone() for v in (xs, *states.values(), *params.values())]
    out, final = leaky_scan(xs, states, params, case.config, case.spike)
    (out.sum() + sum(v.sum() for v in final.values())).backward()
    for v, c in zip((xs, *states.values(), *params.values()), copies, strict=True):
        assert torch.equal(v, c)
