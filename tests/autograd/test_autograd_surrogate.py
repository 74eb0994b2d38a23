"""Spikes with surrogate gradients: exact 0/1 forward, the documented derivatives backward."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import jacfwd, jacrev, vmap

from tracetorch.autograd import SURROGATES, Heaviside, SpikeFn, heaviside, spike_fn

F64 = torch.float64

# Written out again here, independently of the library: name -> (d(x, slope), default slope).
DERIVATIVES = {
    "fast_sigmoid": (lambda x, k: 1 / (k * x.abs() + 1) ** 2, 25.0),
    "atan": (lambda x, k: (k / 2) / (1 + (math.pi / 2 * k * x) ** 2), 2.0),
    "triangle": (lambda x, k: k * (1 - k * x.abs()).clamp(min=0), 1.0),
    "straight_through": (lambda x, k: torch.ones_like(x), 1.0),
}


def _triangle_primitive(x, k):
    u = x.clamp(-1 / k, 1 / k)
    return k * u - k**2 * u * u.abs() / 2


# Smooth functions whose derivative is the surrogate: P' = d (checked by finite differences).
PRIMITIVES = {
    "fast_sigmoid": lambda x, k: x / (1 + k * x.abs()),
    "atan": lambda x, k: torch.atan(math.pi / 2 * k * x) / math.pi,
    "triangle": _triangle_primitive,
    "straight_through": lambda x, k: x,
}

NAMES = list(DERIVATIVES)


def _points(slope: float) -> torch.Tensor:
    """Points on both sides of 0 that keep clear of every kink (0 and +-1/slope)."""
    x = torch.linspace(-2.0, 2.0, 17, dtype=F64) / slope + 0.0123 / slope
    return x.requires_grad_()


def test_names_and_default_slopes() -> None:
    assert set(SURROGATES) == set(DERIVATIVES)
    for name, (derivative, default) in SURROGATES.items():
        assert callable(derivative)
        assert default == DERIVATIVES[name][1]


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", NAMES)
def test_forward_is_exactly_zero_or_one(name, dtype) -> None:
    x = torch.tensor([-3.0, -1e-8, 0.0, 1e-8, 0.5, 7.0], dtype=dtype)
    y = heaviside(x, name)
    assert y.dtype == dtype
    # x == 0 does not spike: strictly greater than zero
    assert y.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("slope", [None, 0.5, 4.0])
@pytest.mark.parametrize("name", NAMES)
def test_backward_is_the_surrogate_derivative(name, slope) -> None:
    derivative, default = DERIVATIVES[name]
    k = default if slope is None else slope
    x = _points(k)
    g = torch.linspace(0.5, 2.0, x.numel(), dtype=F64)
    (grad,) = torch.autograd.grad(heaviside(x, name, slope), x, g)
    torch.testing.assert_close(grad, g * derivative(x.detach(), k), atol=1e-14, rtol=1e-14)
    assert (grad > 0).any()


@pytest.mark.parametrize("slope", [None, 0.5, 4.0])
@pytest.mark.parametrize("name", NAMES)
def test_backward_is_the_derivative_of_the_primitive(name, slope) -> None:
    k = DERIVATIVES[name][1] if slope is None else slope
    x = _points(k)
    (ours,) = torch.autograd.grad(heaviside(x, name, slope).sum(), x)
    (primitive,) = torch.autograd.grad(PRIMITIVES[name](x, k).sum(), x)
    torch.testing.assert_close(ours, primitive, atol=1e-12, rtol=1e-12)

    # Value of the primitive, gradient of the spike: gradcheck's finite differences of P must
    # match the spike's backward.
    def spike_with_primitive_value(t):
        spikes = heaviside(t, name, slope)
        return PRIMITIVES[name](t, k).detach() + spikes - spikes.detach()

    assert torch.autograd.gradcheck(spike_with_primitive_value, (x,))


@pytest.mark.parametrize("slope", [None, 0.5])
@pytest.mark.parametrize("name", NAMES)
def test_forward_mode_is_the_surrogate_derivative(name, slope) -> None:
    # Dual tensors and torch.func.jacfwd use the same surrogate as the backward pass.
    derivative, default = DERIVATIVES[name]
    k = default if slope is None else slope
    x = _points(k).detach()
    tangent = torch.linspace(0.5, 2.0, x.numel(), dtype=F64)
    with fwAD.dual_level():
        out = heaviside(fwAD.make_dual(x, tangent), name, slope)
        got = fwAD.unpack_dual(out).tangent
    torch.testing.assert_close(got, tangent * derivative(x, k), atol=1e-14, rtol=1e-14)
    assert (got > 0).any()
    forward = jacfwd(lambda t: heaviside(t, name, slope))(x)
    torch.testing.assert_close(forward, jacrev(lambda t: heaviside(t, name, slope))(x))
    # without autograd too: spikes that carry tangents never take the bare comparison
    fn = spike_fn(name, slope)
    with torch.no_grad(), fwAD.dual_level():
        for out in (fn(fwAD.make_dual(x, tangent)), fn.above(fwAD.make_dual(x + 1, tangent), 1.0)):
            torch.testing.assert_close(fwAD.unpack_dual(out).tangent, got, atol=1e-14, rtol=0)


def test_forward_mode_under_torch_compile_runs_eagerly_or_is_refused_clearly() -> None:
    # the compiled spike has no forward-mode rule, so its derivative would silently be zero:
    # dynamo runs that part eagerly instead, or names the reason where it must not break
    x = _points(1.0).detach()
    expected = jacfwd(heaviside)(x)
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(jacfwd(heaviside), backend="aot_eager")(x), expected)
    torch._dynamo.reset()
    compiled = torch.compile(jacfwd(heaviside), backend="aot_eager", fullgraph=True)
    with pytest.raises(Exception, match=r"forward-mode differentiation .* under torch\.compile"):
        compiled(x)


@pytest.mark.parametrize("name", NAMES)
def test_gradgradcheck(name) -> None:
    x = _points(DERIVATIVES[name][1])
    assert torch.autograd.gradgradcheck(lambda t: heaviside(t, name), (x,))


def test_default_slope_is_used_for_none() -> None:
    x = _points(2.0)
    (default,) = torch.autograd.grad(heaviside(x, "atan").sum(), x)
    (explicit,) = torch.autograd.grad(heaviside(x, "atan", 2.0).sum(), x)
    (other,) = torch.autograd.grad(heaviside(x, "atan", 3.0).sum(), x)
    torch.testing.assert_close(default, explicit, atol=0, rtol=0)
    assert not torch.allclose(default, other)


def test_default_surrogate_is_atan() -> None:
    x = _points(2.0)
    (grad,) = torch.autograd.grad(heaviside(x).sum(), x)
    torch.testing.assert_close(grad, DERIVATIVES["atan"][0](x.detach(), 2.0))


def test_straight_through_ignores_slope() -> None:
    x = _points(1.0)
    (grad,) = torch.autograd.grad(heaviside(x, "straight_through", 7.0).sum(), x)
    torch.testing.assert_close(grad, torch.ones_like(x))


@pytest.mark.parametrize(
    "call",
    [
        lambda: heaviside(torch.ones(2), "sigmoidish"),
        lambda: Heaviside.apply(torch.ones(2), "sigmoidish", None),
        lambda: spike_fn("sigmoidish"),
        # a bad name is reported before x is ever looked at
        lambda: heaviside("not a tensor", "sigmoidish"),
    ],
)
def test_unknown_surrogate_lists_the_valid_names(call) -> None:
    with pytest.raises(ValueError, match="sigmoidish") as info:
        call()
    for name in NAMES:
        assert name in str(info.value)


def test_vmap_and_jacrev() -> None:
    x = _points(1.0).detach()
    batch = torch.stack([x, -x, 2 * x])
    torch.testing.assert_close(
        vmap(lambda t: heaviside(t, "triangle"))(batch), (batch > 0).to(F64), atol=0, rtol=0
    )
    jacobian = jacrev(lambda t: heaviside(t, "triangle", 1.0))(x)
    torch.testing.assert_close(jacobian, torch.diag(DERIVATIVES["triangle"][0](x, 1.0)))


def test_spike_fn() -> None:
    fn = spike_fn("fast_sigmoid")
    assert isinstance(fn, SpikeFn)
    assert repr(fn) == "SpikeFn(surrogate='fast_sigmoid', slope=25.0)"
    assert fn == spike_fn("fast_sigmoid", 25.0)
    assert fn != spike_fn("fast_sigmoid", 5.0)
    assert pickle.loads(pickle.dumps(fn)) == fn

    x = _points(25.0)
    (ours,) = torch.autograd.grad(fn(x).sum(), x)
    (direct,) = torch.autograd.grad(heaviside(x, "fast_sigmoid").sum(), x)
    torch.testing.assert_close(fn(x), heaviside(x, "fast_sigmoid"), atol=0, rtol=0)
    torch.testing.assert_close(ours, direct, atol=0, rtol=0)
    assert repr(spike_fn()) == "SpikeFn(surrogate='atan', slope=2.0)"


def test_no_grad_fast_path_gives_the_same_spikes_and_func_grad_still_works():
    x = torch.randn(50, dtype=torch.float64, requires_grad=True)
    with_graph = heaviside(x, "fast_sigmoid")
    with torch.no_grad():
        fast = heaviside(x, "fast_sigmoid")
        # torch.func.grad re-enables grad inside its transform: the surrogate is still used
        g = torch.func.grad(lambda v: heaviside(v, "fast_sigmoid").sum())(x.detach())
    assert fast.grad_fn is None and torch.equal(fast, with_graph)
    torch.testing.assert_close(g, 1 / (25.0 * x.detach().abs() + 1) ** 2)
    with torch.no_grad(), pytest.raises(ValueError, match="unknown surrogate"):
        heaviside(x, "nope")


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", NAMES)
def test_in_place_derivative_is_bit_for_bit_the_same(name, dtype) -> None:
    from tracetorch.autograd.surrogate import _IN_PLACE

    derivative = SURROGATES[name].derivative
    x = torch.randn(4000, generator=torch.Generator().manual_seed(0), dtype=F64) * 3
    edges = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, 0.5, -0.5], dtype=F64)
    x = torch.cat([x, edges]).to(dtype)
    for slope in (SURROGATES[name].default_slope, 0.37, 7.0):
        y = x.clone()
        got = _IN_PLACE[derivative](y, slope)
        assert torch.equal(got, derivative(x, slope))
        assert got.data_ptr() == y.data_ptr()  # in place: no new tensor


def _edge_pairs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Membranes and thresholds that meet at ties, subnormal gaps, infinities and NaN."""
    g = torch.Generator().manual_seed(1)
    v = torch.randn(3000, generator=g, dtype=F64)
    th = torch.rand(3000, generator=g, dtype=F64) + 0.1
    tiny = torch.finfo(dtype).tiny
    inf, nan = math.inf, math.nan
    v_edge = [1.0, 1.0, 0.0, -0.0, tiny, tiny / 4, -tiny, inf, inf, -inf, nan, 1.0, 3.0]
    th_edge = [1.0, math.nextafter(1.0, 2.0), 0.0, 0.0, 0.0, 0.0, -tiny, inf, 1.0, -inf, 1.0, nan]
    th_edge.append(3.0 - 1e-7)
    return (
        torch.cat([v, torch.tensor(v_edge, dtype=F64)]).to(dtype),
        torch.cat([th, torch.tensor(th_edge, dtype=F64)]).to(dtype),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, F64])
def test_above_is_the_spike_of_the_difference_bit_for_bit(dtype) -> None:
    v, th = _edge_pairs(dtype)
    fn = spike_fn("triangle")
    with torch.no_grad():
        fast = fn.above(v, th)
        reference = (v - th > 0).to(dtype)
        assert fast.dtype == dtype and torch.equal(fast, reference)
        assert torch.equal(fn.above(v, th[5]), (v - th[5] > 0).to(dtype))  # 0-d threshold
        assert torch.equal(fn(v), (v > 0).to(dtype))
    # with autograd recording, the same spikes and the surrogate gradient through v - th
    v.requires_grad_(dtype == F64)
    if dtype == F64:
        spikes = fn.above(v, th)
        assert torch.equal(spikes.detach(), reference)
        spikes.sum().backward()
        expected = DERIVATIVES["triangle"][0](v.detach() - th, 1.0)
        torch.testing.assert_close(v.grad, expected, equal_nan=True)


def test_above_with_a_threshold_of_another_dtype_is_the_plain_form() -> None:
    v = torch.tensor([0.5, 1.5], dtype=torch.float32)
    th = torch.tensor([1.0, 1.0], dtype=F64)  # promotes: the result is float64, as v - th
    with torch.no_grad():
        out = spike_fn().above(v, th)
    assert out.dtype == F64 and out.tolist() == [0.0, 1.0]
    with torch.no_grad():
        assert spike_fn().above(v, 1.0).tolist() == [0.0, 1.0]  # a number as the threshold


def test_above_under_vmap_takes_the_plain_form() -> None:
    # (under torch.compile too: tests/core/test_run_compile.py compiles a firing LIB layer
    # without autograd, whose steps spike through above, and compares with eager)
    v, th = torch.randn(4, 6), torch.randn(6)
    fn = spike_fn()
    with torch.no_grad():
        batched = vmap(fn.above, in_dims=(0, None))(v, th)
    assert torch.equal(batched, (v - th > 0).float())
