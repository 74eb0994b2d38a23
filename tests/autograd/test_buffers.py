"""The cache of sequence buffers: reused once free, never while any tensor still uses them.

The scans behind sequence mode take their ``[T, ...]`` buffers from it, so a buffer handed
out while an earlier output, a saved tensor or a gradient still lives on its memory would
silently corrupt results. These tests hold such tensors across later calls and check that
nothing they hold changes, with buffers large enough (at least 128 KiB) to be cached.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

import tracetorch as tt
from tracetorch.autograd import (
    buffers,
    cache_limit,
    empty_cache,
    leaky_scan,
    sequence_buffer,
    set_cache_limit,
    spike_fn,
)
from tracetorch.functional import LeakyConfig

BIG = (8, 64, 128)  # 256 KiB of float32: cached
LIB = LeakyConfig(firing="binary")  # with a bias parameter: LIB


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    empty_cache()
    previous = set_cache_limit(1 << 30)
    yield
    set_cache_limit(previous)
    empty_cache()


def scan(xs: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    mem = torch.zeros(xs.shape[1:], dtype=xs.dtype)
    return leaky_scan(xs, {"mem": mem}, params, LIB, spike_fn("atan"))


def lib_params(requires_grad: bool = True) -> dict[str, Tensor]:
    n = BIG[-1]
    return {
        "beta": torch.rand(n).mul(0.5).add(0.4).requires_grad_(requires_grad),
        "threshold": torch.rand(n).add(0.5).requires_grad_(requires_grad),
        "bias": torch.rand(n).sub(0.5).requires_grad_(requires_grad),
    }


def uncached(fn, *args):
    previous = set_cache_limit(0)
    try:
        return fn(*args)
    finally:
        set_cache_limit(previous)


def test_a_free_buffer_is_handed_out_again() -> None:
    like = torch.empty(BIG)
    first = sequence_buffer(like)
    address = first.data_ptr()
    del first
    again = sequence_buffer(like)
    assert again.data_ptr() == address
    assert again.shape == like.shape and again.stride() == like.stride()


def test_a_buffer_in_use_is_never_handed_out_twice() -> None:
    like = torch.empty(BIG)
    held = [sequence_buffer(like) for _ in range(3)]
    view = held[0][2]  # a view alone keeps the memory in use
    del held[0]
    addresses = {t.data_ptr() for t in held} | {view.data_ptr() - 2 * view.numel() * 4}
    assert len(addresses) == 3
    assert sequence_buffer(like).data_ptr() not in addresses


def test_small_sparse_and_subclassed_tensors_and_a_zero_limit_bypass_the_cache() -> None:
    sequence_buffer(torch.empty(4, 8))
    sparse = sequence_buffer(torch.zeros(BIG).to_sparse())
    assert sparse.layout == torch.sparse_coo and sparse.shape == BIG
    sequence_buffer(torch.nn.Parameter(torch.empty(BIG)))
    assert buffers._held == 0
    set_cache_limit(0)
    sequence_buffer(torch.empty(BIG))
    assert buffers._held == 0


def test_the_limit_drops_the_least_recently_used_shapes() -> None:
    one = 8 * 64 * 128 * 4
    set_cache_limit(2 * one)
    a, b = sequence_buffer(torch.empty(BIG)), sequence_buffer(torch.empty(64, 8, 128))
    del a, b
    sequence_buffer(torch.empty(BIG))  # BIG is now the most recently used
    sequence_buffer(torch.empty(128, 8, 64))  # no room: the [64, 8, 128] buffer goes
    assert buffers._held == 2 * one
    assert set(buffers._buffers) == {
        (torch.Size(BIG), (8192, 128, 1), torch.float32, False),
        (torch.Size((128, 8, 64)), (512, 64, 1), torch.float32, False),
    }
    assert set_cache_limit(one) == 2 * one  # shrinking drops buffers at once
    assert buffers._held <= one
    assert cache_limit() == one


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1"])
def test_set_cache_limit_rejects_what_is_not_a_byte_count(bad: object) -> None:
    with pytest.raises(ValueError, match="set_cache_limit: expected a number of bytes"):
        set_cache_limit(bad)  # type: ignore[arg-type]
    assert cache_limit() == 1 << 30


def test_outputs_kept_by_the_caller_are_not_overwritten() -> None:
    params = lib_params(requires_grad=False)
    first, _ = scan(torch.rand(BIG), params)
    kept = first.clone()
    for _ in range(3):
        scan(torch.rand(BIG), params)
    assert torch.equal(first, kept)


def test_a_retained_graph_survives_later_scans() -> None:
    """Tensors saved for a backward pin their buffers until the graph is freed."""
    params = lib_params()
    xs1 = torch.rand(BIG).mul(2).requires_grad_()
    out1, state1 = scan(xs1, params)
    loss1 = out1.sum() + state1["mem"].square().sum()
    # the same backward with buffers allocated anew: the reference
    xs_ref = xs1.detach().clone().requires_grad_()
    out_ref, state_ref = uncached(scan, xs_ref, params)
    expected = torch.autograd.grad(
        out_ref.sum() + state_ref["mem"].square().sum(), (xs_ref, *params.values())
    )
    for _ in range(2):  # other scans of the same shape, forward and backward, in between
        out2, state2 = scan(torch.rand(BIG).mul(2).requires_grad_(), params)
        (out2.sum() + state2["mem"].sum()).backward()
    got = torch.autograd.grad(loss1, (xs1, *params.values()))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_a_gradient_kept_by_the_caller_is_not_overwritten() -> None:
    """dL/dxs goes into a cached buffer: a leaf's ``.grad`` keeps it in use."""
    params = lib_params()
    xs = torch.rand(BIG).mul(2).requires_grad_()
    out, _ = scan(xs, params)
    out.sum().backward()
    kept = xs.grad.clone()
    for _ in range(3):
        other = torch.rand(BIG).mul(2).requires_grad_()
        out, _ = scan(other, params)
        out.sum().backward()
    assert torch.equal(xs.grad, kept)


def test_inference_buffers_are_not_saved_for_a_backward() -> None:
    """An inference tensor cannot be saved for a backward: the cache keeps the two apart."""
    params = lib_params()
    with torch.inference_mode():
        scan(torch.rand(BIG), params)
    xs = torch.rand(BIG).requires_grad_()
    out, _ = scan(xs, params)
    out.sum().backward()
    assert xs.grad is not None and not xs.grad.is_inference()


def test_sequence_mode_training_is_unchanged_by_the_cache() -> None:
    """A model trained three steps in sequence mode, with and without the cache."""

    def train() -> list[Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(32, 128), tt.snn.LIB(128), torch.nn.Linear(128, 128), tt.snn.LIF(128)
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        xs = torch.rand(8, 64, 32)
        for _ in range(3):
            tt.zero_states(model)
            optimizer.zero_grad()
            tt.run(model, xs, mode="sequence").mean().backward()
            optimizer.step()
        return [p.detach().clone() for p in model.parameters()]

    for got, expected in zip(train(), uncached(train), strict=True):
        assert torch.equal(got, expected)
