"""Generic checks for every custom Function, driven by one table.

Each case pairs a custom function with the same math written in plain torch; every check
(forward, backward, gradcheck, gradgradcheck, vmap, grad, jacrev) runs on every case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad, jacrev, vmap

import tracetorch.autograd as ta
from tracetorch.testing import check_function

F64 = torch.float64


def _randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=F64)


def _avoid(x: Tensor, *kinks: float, margin: float = 0.05) -> Tensor:
    """Moves entries closer than ``margin`` to a kink away from it (finite differences)."""
    for k in kinks:
        x = torch.where((x - k).abs() < margin, x + 2 * margin, x)
    return x


@dataclass
class Case:
    name: str
    fn: Callable[..., Tensor]
    reference: Callable[..., Tensor]
    make_inputs: Callable[[torch.Generator], tuple[Tensor, ...]]

    def __repr__(self) -> str:
        return self.name


CLIP = 0.7

CASES = [
    Case("square", ta.square, torch.square, lambda g: (_randn(g, 2, 3),)),
    Case("cube", ta.cube, lambda x: x**3, lambda g: (_randn(g, 2, 3),)),
    Case("exp", ta.exp, torch.exp, lambda g: (_randn(g, 2, 3),)),
    Case("relu", ta.relu, torch.relu, lambda g: (_avoid(_randn(g, 2, 3), 0.0),)),
    Case("sigmoid", ta.sigmoid, torch.sigmoid, lambda g: (_randn(g, 2, 3),)),
    Case("tanh", ta.tanh, torch.tanh, lambda g: (_randn(g, 2, 3),)),
    Case(
        "linear",
        ta.linear,
        F.linear,
        lambda g: (_randn(g, 2, 3, 4), _randn(g, 3, 4), _randn(g, 3)),
    ),
    Case(
        "linear_row_bias",
        ta.linear,
        lambda x, w, b: x @ w.T + b,
        lambda g: (_randn(g, 2, 4), _randn(g, 3, 4), _randn(g, 1, 3)),
    ),
    Case(
        "linear_no_bias",
        lambda x, w: ta.linear(x, w),
        lambda x, w: F.linear(x, w),
        lambda g: (_randn(g, 4), _randn(g, 3, 4)),
    ),
    Case(
        "learned_silu",
        ta.learned_silu,
        lambda x, slope: slope * F.silu(x),
        lambda g: (_randn(g, 2, 3), _randn(g, 3)),
    ),
    Case(
        "learned_silu_scalar_slope",
        ta.learned_silu,
        lambda x, slope: slope * F.silu(x),
        lambda g: (_randn(g, 2, 3), _randn(g)),
    ),
    Case(
        "clipped_relu",
        lambda x: ta.clipped_relu(x, CLIP),
        lambda x: x.clamp(0, CLIP),
        lambda g: (_avoid(_randn(g, 2, 3), 0.0, CLIP),),
    ),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


def _inputs(case: Case, seed: int = 0) -> tuple[Tensor, ...]:
    return case.make_inputs(torch.Generator().manual_seed(seed))


def _assert_all_close(actual, expected) -> None:
    actual = actual if isinstance(actual, tuple) else (actual,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)


def test_forward_matches_torch(case: Case) -> None:
    inputs = _inputs(case)
    _assert_all_close(case.fn(*inputs), case.reference(*inputs))


def test_backward_matches_torch_autograd(case: Case) -> None:
    inputs = [x.requires_grad_() for x in _inputs(case)]
    weights = _randn(torch.Generator().manual_seed(1), *case.reference(*inputs).shape)
    ours = torch.autograd.grad((case.fn(*inputs) * weights).sum(), inputs)
    theirs = torch.autograd.grad((case.reference(*inputs) * weights).sum(), inputs)
    _assert_all_close(ours, theirs)


def test_gradcheck(case: Case) -> None:
    inputs = tuple(x.requires_grad_() for x in _inputs(case))
    assert torch.autograd.gradcheck(case.fn, inputs)


def test_gradgradcheck(case: Case) -> None:
    inputs = tuple(x.requires_grad_() for x in _inputs(case))
    assert torch.autograd.gradgradcheck(case.fn, inputs)


def test_vmap_over_every_input(case: Case) -> None:
    samples = [_inputs(case, seed) for seed in range(3)]
    batched = [torch.stack(column) for column in zip(*samples, strict=True)]
    expected = torch.stack([case.fn(*sample) for sample in samples])
    _assert_all_close(vmap(case.fn)(*batched), expected)


def test_vmap_over_first_input_only(case: Case) -> None:
    first, *rest = _inputs(case)
    batch = torch.stack([first, 2 * first, -first])
    in_dims = (0,) + (None,) * len(rest)
    expected = torch.stack([case.fn(x, *rest) for x in batch])
    _assert_all_close(vmap(case.fn, in_dims=in_dims)(batch, *rest), expected)


def test_func_grad(case: Case) -> None:
    inputs = _inputs(case)
    argnums = tuple(range(len(inputs)))
    ours = grad(lambda *a: case.fn(*a).sum(), argnums=argnums)(*inputs)
    theirs = grad(lambda *a: case.reference(*a).sum(), argnums=argnums)(*inputs)
    _assert_all_close(ours, theirs)


def test_jacrev(case: Case) -> None:
    inputs = _inputs(case)
    argnums = tuple(range(len(inputs)))
    _assert_all_close(
        jacrev(case.fn, argnums=argnums)(*inputs),
        jacrev(case.reference, argnums=argnums)(*inputs),
    )


def test_gradients_only_for_inputs_that_need_them(case: Case) -> None:
    first, *rest = _inputs(case)
    first.requires_grad_()
    (g,) = torch.autograd.grad(case.fn(first, *rest).sum(), first)
    assert g.shape == first.shape
    assert all(x.grad is None for x in rest)


def test_check_function_accepts(case: Case) -> None:
    assert check_function(case.fn, *_inputs(case))
