"""Property tests (hypothesis) over every layer of the table, on random layouts.

Each test runs for every row of ``layer_table.all_cases()`` on drawn layouts: batch
dimensions (none to two), extra spatial dimensions (none to two), the feature dimension
anywhere, named by a positive or a negative ``dim``, float32 or float64, a few timesteps and
a seed for the values. The properties:

(a) a layer built with ``dim=d`` gives, on the input with the features moved to ``d``, the
    outputs and states of the layer built with ``dim=-1``, moved the same way;
(b) ``save_states`` in the middle of a sequence and ``load_states`` later (into the same
    layer or a fresh copy) continue exactly as the original did;
(c) ``TTcompile()`` then ``TTdecompile()`` gives back every raw parameter bit for bit, also
    raw values whose transform saturates (``raw_beta = 17.0``: ``sigmoid`` rounds to 1);
(d) a bad input (wrong feature size, wrong rank, integer, bool or complex dtype, another
    float dtype than the live states, a meta tensor) raises a clear error (``TypeError`` or
    ``ValueError`` naming the layer) and leaves no trace: the states are what they were
    (``None`` on the first call), and the next valid step gives what it would have given
    without the bad calls. Every kind is tried on every example, on the first call and again
    with live states, and all the problems found are reported together.

``TT_HYPOTHESIS_EXAMPLES`` sets the number of examples per test and layer (4 by default: about
800 examples over the 52 layers and 4 properties); no example database is written.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from layer_table import LayerCase, all_cases

import tracetorch as tt

CASES = all_cases()
EXAMPLES = int(os.environ.get("TT_HYPOTHESIS_EXAMPLES", "4"))
# No example database (it would be written into the working tree) and no "explain" phase (it
# traces every line of a failing test again, tens of seconds, to say little more here).
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[phase for phase in Phase if phase is not Phase.explain],
)


@dataclass(frozen=True)
class Layout:
    """One drawn way of feeding a layer.

    Attributes:
        batch: Sizes of the batch dimensions (first).
        spatial: Sizes of the extra dimensions (after the batch, before the features).
        position: Where the features go in the moved input (0 .. ndim - 1).
        negative: Name that position by a negative ``dim``.
        dtype: Of the layer and its inputs.
        steps: Timesteps of a run.
        seed: Of the input values and of the global RNG during runs.
    """

    batch: tuple[int, ...]
    spatial: tuple[int, ...]
    position: int
    negative: bool
    dtype: torch.dtype
    steps: int
    seed: int

    @property
    def ndim(self) -> int:
        return len(self.batch) + len(self.spatial) + 1

    @property
    def dim(self) -> int:
        """The ``dim`` a layer is built with to read the moved input."""
        return self.position - self.ndim if self.negative else self.position

    def inputs(self, features: int) -> list[torch.Tensor]:
        """``steps`` inputs with the features last (move them with :meth:`move`)."""
        g = torch.Generator().manual_seed(self.seed)
        shape = (*self.batch, *self.spatial, features)
        return [2 * torch.randn(shape, generator=g, dtype=self.dtype) for _ in range(self.steps)]

    def move(self, t: torch.Tensor) -> torch.Tensor:
        """Features from last to ``position``."""
        return t.movedim(-1, self.position)


@st.composite
def layouts(draw: st.DrawFn, min_steps: int = 1) -> Layout:
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    spatial = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    ndim = len(batch) + len(spatial) + 1
    return Layout(
        batch=batch,
        spatial=spatial,
        position=draw(st.integers(0, ndim - 1)),
        negative=draw(st.booleans()),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        steps=draw(st.integers(min_steps, 4)),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def build(case: LayerCase, layout: Layout, dim: int | None = None) -> tt.Layer:
    """The case's layer built with ``dim`` (the layout's by default), in its dtype."""
    torch.manual_seed(0)  # every build of a case starts from the same weights
    return case.make(dim=layout.dim if dim is None else dim).to(layout.dtype)


def features(case: LayerCase) -> int:
    return case.input_shape[-1]


def run(layer: tt.Layer, xs: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """The outputs over ``xs``, the global RNG seeded at every step (for random layers)."""
    outputs = []
    for t, x in enumerate(xs):
        torch.manual_seed(seed + t)
        outputs.append(layer(x))
    return outputs


def states(layer: tt.Layer) -> dict[str, torch.Tensor | None]:
    return {name: getattr(layer, name) for name in layer.state_names}


def assert_same(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert got.shape == expected.shape and got.dtype == expected.dtype, what
    assert torch.equal(got, expected), f"{what}: max |diff| {(got - expected).abs().max()}"


# ------------------------------------------------------------------------- (a) dim invariance


@pytest.mark.parametrize("case", CASES, ids=repr)
@SETTINGS
@given(layout=layouts())
def test_dim_is_the_moved_input_with_dim_last(case: LayerCase, layout: Layout) -> None:
    last = build(case, layout, dim=-1)
    moved = build(case, layout)
    moved.load_state_dict(last.state_dict())
    xs = layout.inputs(features(case))
    expected = run(last, xs, layout.seed)
    got = run(moved, [layout.move(x) for x in xs], layout.seed)
    for t, (y, y_last) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(y, layout.move(y_last), msg=f"output at step {t}")
    for name, state in states(last).items():
        torch.testing.assert_close(getattr(moved, name), layout.move(state), msg=f"state {name}")


# ------------------------------------------------------------------------- (b) save and load


@pytest.mark.parametrize("case", CASES, ids=repr)
@SETTINGS
@given(layout=layouts(min_steps=2), data=st.data())
def test_save_load_mid_sequence_continues_exactly(
    case: LayerCase, layout: Layout, data: st.DataObject
) -> None:
    split = data.draw(st.integers(1, layout.steps - 1), label="split")
    xs = [layout.move(x) for x in layout.inputs(features(case))]
    layer = build(case, layout)
    run(layer, xs[:split], layout.seed)
    saved = tt.save_states(layer)
    # The snapshot is detached; so is the reference continuation, so that both take the same
    # kernels (without autograd on the state, leaky steps fuse into one addcmul, which rounds
    # differently) and agree bit for bit.
    layer.detach_states()
    expected = run(layer, xs[split:], layout.seed + split)
    final = tt.save_states(layer)

    tt.load_states(layer, saved)  # rewind the same layer
    fresh = build(case, layout)  # and a copy that never ran
    fresh.load_state_dict(layer.state_dict())
    tt.load_states(fresh, saved)
    for who, continued in (("the same layer", layer), ("a fresh copy", fresh)):
        got = run(continued, xs[split:], layout.seed + split)
        for t, (y, y_expected) in enumerate(zip(got, expected, strict=True)):
            assert_same(y, y_expected, f"{who}: output at step {split + t}")
        now = tt.save_states(continued)
        assert now.keys() == final.keys()
        for key in final:
            assert_same(now[key], final[key], f"{who}: state {key}")


# --------------------------------------------------------------- (c) TTcompile / TTdecompile


def raw_tensors(layer: tt.Layer) -> dict[str, torch.Tensor]:
    """The stored raw tensor of every constrained parameter (parameter or buffer)."""
    found = dict(layer.named_parameters()) | dict(layer.named_buffers())
    return {f"raw_{name}": found[f"raw_{name}"] for name in layer.parameter_names}


def assert_round_trip(layer: tt.Layer) -> None:
    """TTcompile() then TTdecompile() restore every parameter and buffer, bit for bit."""
    before = {key: value.clone() for key, value in layer.state_dict().items()}
    objects = dict(layer.named_parameters())
    layer.TTcompile()
    layer.TTdecompile()
    after = layer.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert_same(after[key], value, f"{key} after TTcompile() + TTdecompile()")
    for name, param in layer.named_parameters():  # the optimizer's objects come back
        assert param is objects[name], f"{name} is a new object after TTdecompile()"


@pytest.mark.parametrize("case", CASES, ids=repr)
@SETTINGS
@given(
    layout=layouts(),
    fill=st.one_of(
        st.none(),  # random normal values, times `scale`
        st.sampled_from([17.0, -17.0, 40.0, -40.0]),  # saturating transforms
        st.floats(-20.0, 20.0, allow_nan=False, width=32),
    ),
    scale=st.sampled_from([0.1, 1.0, 5.0, 20.0]),
)
def test_compile_decompile_gives_back_the_raw_parameters(
    case: LayerCase, layout: Layout, fill: float | None, scale: float
) -> None:
    layer = build(case, layout)
    g = torch.Generator().manual_seed(layout.seed)
    with torch.no_grad():
        for raw in raw_tensors(layer).values():
            if fill is None:
                raw.copy_(scale * torch.randn(raw.shape, generator=g, dtype=raw.dtype))
            else:
                raw.fill_(fill)
    if layout.steps > 1:  # also with live states
        run(layer, [layout.move(x) for x in layout.inputs(features(case))], layout.seed)
    assert_round_trip(layer)


CONSTRAINED = [case for case in CASES if case.make().parameter_names]


@pytest.mark.parametrize("case", CONSTRAINED, ids=repr)
@pytest.mark.parametrize("raw", [17.0, -17.0])
def test_compile_decompile_keeps_a_saturated_raw_value(case: LayerCase, raw: float) -> None:
    layer = case.make()
    with torch.no_grad():
        next(iter(raw_tensors(layer).values())).fill_(raw)  # raw_beta where there is one
    assert_round_trip(layer)


# ---------------------------------------------------------------------- (d) bad input, no trace

BAD_ALWAYS = ("feature size", "too few dims", "int", "bool", "complex", "meta")
BAD_WITH_LIVE_STATES = ("extra leading dim", "other float dtype")


def bad_input(kind: str, x: torch.Tensor, layout: Layout, feature_count: int) -> torch.Tensor:
    """A version of the valid input ``x`` (features at ``layout.position``) that is wrong."""
    if kind == "feature size":
        shape = list(x.shape)
        shape[layout.position] = feature_count + 1
        return torch.randn(shape, dtype=x.dtype)
    if kind == "too few dims":  # so few that `dim` is out of range
        needed = layout.dim + 1 if layout.dim >= 0 else -layout.dim
        return torch.randn((feature_count,) * (needed - 1), dtype=x.dtype)
    if kind == "int":
        return x.round().to(torch.int64)
    if kind == "bool":
        return x > 0
    if kind == "complex":
        return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    if kind == "meta":
        return x.to("meta")
    if kind == "extra leading dim":
        return x.unsqueeze(0)
    if kind == "other float dtype":
        return x.to(torch.float32 if x.dtype == torch.float64 else torch.float64)
    raise AssertionError(f"unknown kind {kind!r}")


def feed_bad(layer: tt.Layer, bad: torch.Tensor, seed: int) -> list[str]:
    """Feed ``bad`` to ``layer``; what went wrong (nothing: ``[]``), the layer put back."""
    name = type(layer).__name__
    saved = tt.save_states(layer)
    torch.manual_seed(seed)
    try:
        layer(bad)
    except Exception as err:  # which one is checked below
        error = err
    else:
        error = None
    problems = []
    if error is None:
        problems.append("accepted")
    elif not isinstance(error, (TypeError, ValueError)) or name not in str(error):
        problems.append(f"raised an unclear {type(error).__name__}: {error}")
    now = tt.save_states(layer)
    changed = sorted(
        key
        for key in saved.keys() | now.keys()
        if key not in now
        or key not in saved
        or now[key].dtype != saved[key].dtype
        or now[key].shape != saved[key].shape
        or now[key].device != saved[key].device
        or not torch.equal(now[key], saved[key])
    )
    if changed:
        problems.append(f"changed the states {changed}")
        layer.zero_states()
        if saved:
            tt.load_states(layer, saved)
    return problems


@pytest.mark.parametrize("case", CASES, ids=repr)
@SETTINGS
@given(layout=layouts(min_steps=2))
def test_bad_input_raises_and_leaves_no_trace(case: LayerCase, layout: Layout) -> None:
    """Every kind of bad input, on the first call and with live states, on one layer."""
    *before, last = [layout.move(x) for x in layout.inputs(features(case))]
    layer = build(case, layout)
    problems = []
    for kind in BAD_ALWAYS:  # the first call: the states are None and must stay None
        bad = bad_input(kind, last, layout, features(case))
        problems += [f"first call, {kind}: {p}" for p in feed_bad(layer, bad, layout.seed)]

    run(layer, before, layout.seed)
    layer.detach_states()  # as the twin's are: both take the same kernels (see test (b))
    twin = copy.deepcopy(layer)
    later = BAD_ALWAYS + (BAD_WITH_LIVE_STATES if layer.state_names else ())
    for kind in later:  # with live states (a stateless layer: after a few valid steps)
        bad = bad_input(kind, last, layout, features(case))
        problems += [
            f"after {len(before)} steps, {kind}: {p}" for p in feed_bad(layer, bad, layout.seed)
        ]
    # Nothing else was touched either: the next valid step is the one the twin takes.
    step = len(before)
    torch.manual_seed(layout.seed + step)
    expected = twin(last)
    torch.manual_seed(layout.seed + step)
    got = layer(last)
    if got.shape != expected.shape or got.dtype != expected.dtype or not torch.equal(got, expected):
        problems.append("the valid step after the bad inputs differs from a twin's")
    name = type(layer).__name__
    assert not problems, f"{name} (dim={layout.dim}):\n" + "\n".join(problems)
