"""The spike encoders: shapes, dtypes, the codes' timing, reproducibility and clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tracetorch as tt
from tracetorch.encode import delta, latency, rate

# -- rate -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rate_is_time_first_binary_and_keeps_the_dtype(dtype):
    x = torch.rand(3, 4, dtype=dtype)
    spikes = rate(x, 7)
    assert spikes.shape == (7, 3, 4) and spikes.dtype == dtype
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}


def test_rate_fires_with_the_value_as_probability():
    generator = torch.Generator().manual_seed(0)
    x = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    frequency = rate(x, 20_000, generator=generator).mean(dim=0)
    assert frequency[0] == 0 and frequency[-1] == 1
    torch.testing.assert_close(frequency, x, atol=0.015, rtol=0)


def test_rate_gain_scales_the_probability():
    generator = torch.Generator().manual_seed(1)
    frequency = rate(torch.tensor([0.2, 0.4]), 20_000, gain=2.0, generator=generator).mean(0)
    torch.testing.assert_close(frequency, torch.tensor([0.4, 0.8]), atol=0.015, rtol=0)
    assert rate(torch.ones(3), 5, gain=0.0).sum() == 0


def test_rate_is_reproducible_with_a_generator():
    x = torch.rand(8, 16)
    first = rate(x, 10, generator=torch.Generator().manual_seed(3))
    again = rate(x, 10, generator=torch.Generator().manual_seed(3))
    other = rate(x, 10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_rate_draws_like_bernoulli_of_the_expanded_probabilities():
    """Same draws as ``torch.bernoulli(x.expand(T, ...))``, so existing seeded runs repeat."""
    x = torch.rand(5, 64)
    ours = rate(x, 20, generator=torch.Generator().manual_seed(0))
    plain = torch.bernoulli(x.expand(20, 5, 64), generator=torch.Generator().manual_seed(0))
    assert torch.equal(ours, plain)


def test_rate_takes_integer_and_bool_input_and_passes_no_gradient():
    assert rate(torch.tensor([0, 1]), 3).dtype == torch.get_default_dtype()
    assert torch.equal(rate(torch.tensor([True, False]), 2), torch.tensor([[1.0, 0.0]] * 2))
    x = torch.rand(4, requires_grad=True)
    assert not rate(x, 3).requires_grad


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (torch.tensor([0.5, 1.5]), {}, r"rate: expected x in \[0, 1\], got values in \[0.5, 1.5\]"),
        (torch.tensor([-0.1, 0.5]), {}, r"rate: expected x in \[0, 1\], got values in \[-0.1"),
        (torch.tensor([0.5, math.nan]), {}, r"rate: expected x in \[0, 1\], got .*nan"),
        (torch.tensor([0.2, 0.6]), {"gain": 2.0}, r"rate: expected gain \* x \(gain=2.0\)"),
        (torch.tensor([0.5]), {"gain": -1.0}, r"rate: expected gain >= 0"),
        (torch.tensor([0.5]), {"steps": 0}, r"rate: expected steps >= 1, got 0"),
    ],
)
def test_rate_rejects_bad_values_naming_itself(x, kwargs, match):
    kwargs = {"steps": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        rate(x, **kwargs)


def test_rate_rejects_wrong_types():
    with pytest.raises(TypeError, match="rate: expected a tensor, got list"):
        rate([0.5], 3)
    with pytest.raises(TypeError, match="rate: expected steps to be an int"):
        rate(torch.rand(2), 3.0)


# -- latency ----------------------------------------------------------------------------------


def _steps_of(spikes: torch.Tensor) -> list[int | None]:
    """The step of the single spike of every input of a 1-d input (None if silent)."""
    out = []
    for column in spikes.T:
        fired = torch.nonzero(column).flatten().tolist()
        assert len(fired) <= 1, f"more than one spike: {fired}"
        out.append(fired[0] if fired else None)
    return out


def test_latency_rc_times_follow_the_formula():
    x = torch.tensor([0.011, 0.02, 0.05, 0.2, 1.0], dtype=torch.float64)
    steps, tau, threshold = 10, 5.0, 0.01
    expected = [min(round(tau * math.log(v / (v - threshold))), steps - 1) for v in x.tolist()]
    assert _steps_of(latency(x, steps, tau=tau, threshold=threshold)) == expected
    assert expected[0] == steps - 1  # just above the threshold: clamped onto the last step


def test_latency_linear_times_and_normalization():
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    assert _steps_of(latency(x, 10, linear=True, tau=4.0)) == [None, 3, 2, 1, 0]
    stretched = latency(x, 9, linear=True, normalize=True, threshold=0.0)
    assert _steps_of(stretched) == [None, 6, 4, 2, 0]
    nearly_threshold = torch.tensor([0.2001, 1.0])
    assert _steps_of(latency(nearly_threshold, 9, linear=True, normalize=True, threshold=0.2)) == [
        8,
        0,
    ]


def test_latency_rc_normalization_puts_the_latest_spike_on_the_last_step():
    x = torch.tensor([0.03, 0.1, 0.5, 1.0])
    spikes = latency(x, 12, normalize=True, tau=123.0)  # tau is not used
    times = _steps_of(spikes)
    assert times[0] == 11 and times[-1] == 0
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize("kwargs", [{}, {"linear": True}, {"normalize": True}])
def test_latency_fires_once_above_the_threshold_and_earlier_for_larger_values(kwargs):
    torch.manual_seed(0)
    x = torch.rand(3, 50)
    x[0, :5] = torch.tensor([0.0, 0.005, 0.01, 0.0, 0.01])  # at or below the threshold
    spikes = latency(x, 25, threshold=0.01, **kwargs)
    assert spikes.shape == (25, 3, 50) and spikes.dtype == x.dtype
    counts = spikes.sum(dim=0)
    assert torch.equal(counts, (x > 0.01).float())  # silent at or below the threshold
    first = spikes.argmax(dim=0).float()
    order = x.flatten().argsort()
    fired = (x > 0.01).flatten()[order]
    times = first.flatten()[order][fired]
    assert (times[1:] <= times[:-1]).all()  # larger values never fire later


def test_latency_keeps_the_dtype_and_ignores_gradients():
    x = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    spikes = latency(x, 5)
    assert spikes.dtype == torch.float64 and not spikes.requires_grad
    assert latency(torch.tensor([1, 0]), 3).dtype == torch.get_default_dtype()


def test_latency_handles_all_silent_input_and_one_step():
    assert latency(torch.zeros(4), 6, normalize=True).sum() == 0
    assert torch.equal(latency(torch.tensor([0.5, 1.0]), 1), torch.ones(1, 2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x": torch.tensor([1.2])}, ValueError, r"latency: expected x in \[0, 1\]"),
        ({"threshold": 0.0}, ValueError, r"latency: expected threshold in \(0, 1\), got 0.0"),
        ({"threshold": 1.0, "linear": True}, ValueError, r"expected threshold in \[0, 1\)"),
        ({"tau": 0.0}, ValueError, r"latency: expected tau > 0"),
        ({"tau": math.inf}, ValueError, r"latency: expected tau > 0 and finite"),
        ({"steps": -2}, ValueError, r"latency: expected steps >= 1, got -2"),
        ({"tau": "5"}, TypeError, r"latency: expected tau to be a float"),
    ],
)
def test_latency_rejects_bad_arguments_naming_itself(kwargs, error, match):
    kwargs = {"x": torch.rand(3), "steps": 5, **kwargs}
    with pytest.raises(error, match=match):
        latency(**kwargs)


# -- delta ------------------------------------------------------------------------------------


def test_delta_fires_on_rises_larger_than_the_threshold():
    xs = torch.tensor([0.0, 0.5, 0.55, 1.0, 0.2, 0.2, 0.4])
    assert delta(xs, 0.1).tolist() == [0, 1, 0, 1, 0, 0, 1]
    assert delta(xs, 0.1, off_spikes=True).tolist() == [0, 1, 0, 1, -1, 0, 1]
    assert delta(xs, 0.2).tolist() == [0, 1, 0, 1, 0, 0, 0]  # a rise of exactly 0.2: none


def test_delta_works_along_time_for_any_shape():
    torch.manual_seed(0)
    xs = torch.randn(6, 2, 3, 4, dtype=torch.float64)
    spikes = delta(xs, 0.3, off_spikes=True)
    change = xs[1:] - xs[:-1]
    assert spikes.shape == xs.shape and spikes.dtype == torch.float64
    assert (spikes[0] == 0).all()  # nothing to compare the first step with
    expected = (change > 0.3).double() - (change < -0.3).double()
    assert torch.equal(spikes[1:], expected)


def test_delta_onset_recipe_from_its_docstring():
    xs = torch.tensor([1.0, 1.0, 0.0])
    onset = delta(torch.cat([torch.zeros_like(xs[:1]), xs]))[1:]
    assert onset.tolist() == [1.0, 0.0, 0.0]


def test_delta_takes_integer_sequences_and_rejects_bad_input():
    assert delta(torch.tensor([0, 2, 2]), 1).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match=r"delta: expected a time-first sequence \[T, \*\]"):
        delta(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"delta: expected threshold >= 0"):
        delta(torch.rand(3), -0.1)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="delta: expected finite values, got NaN"):
            delta(torch.tensor([0.0, bad, 1.0]))


def test_numpy_scalars_are_numbers_to_the_encoders():
    x = torch.tensor([0.1, 0.5, 0.9])
    assert torch.equal(latency(x, 8, tau=np.float32(3.0)), latency(x, 8, tau=3.0))
    assert torch.equal(delta(x, np.float32(0.2)), delta(x, 0.2))
    assert torch.equal(
        rate(x, 4, gain=np.int64(1), generator=torch.Generator().manual_seed(0)),
        rate(x, 4, gain=1.0, generator=torch.Generator().manual_seed(0)),
    )
    with pytest.raises(TypeError, match="latency: expected tau to be a float, got True"):
        latency(x, 8, tau=True)


def test_the_encoders_are_reachable_from_the_package():
    assert tt.encode.rate is rate and tt.encode.latency is latency and tt.encode.delta is delta
    assert {"encode", "loss", "plot"} <= set(tt.__all__)


@pytest.mark.parametrize(
    ("values", "threshold", "dtype"),
    [
        ([1.0, 1.0], 1e-9, torch.float32),
        ([1.0, 0.9], 1e-8, torch.float32),
        ([1.0, 0.6], 1e-4, torch.float16),
    ],
)
def test_latency_normalized_with_every_time_rounding_to_zero_fires_at_once(
    values, threshold, dtype
):
    x = torch.tensor(values, dtype=dtype)
    spikes = tt.encode.latency(x, 5, threshold=threshold, normalize=True)
    assert torch.equal(spikes[0], torch.ones_like(x)) and not spikes[1:].any()
