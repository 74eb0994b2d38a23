"""The losses and regularizers: their values, their gradients (gradcheck) and their errors."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import tracetorch as tt
from tracetorch.loss import (
    _first_spike_times,
    count_mse,
    first_spike_time,
    membrane_cross_entropy,
    rate_cross_entropy,
    rate_l2,
    sparsity,
)

CLASSIFICATION = [rate_cross_entropy, count_mse, membrane_cross_entropy, first_spike_time]


def _smooth_spikes(shape=(5, 3, 4), seed=0) -> torch.Tensor:
    """Soft "spikes" in (0.1, 0.9), float64, for gradcheck."""
    generator = torch.Generator().manual_seed(seed)
    spikes = 0.1 + 0.8 * torch.rand(shape, generator=generator, dtype=torch.float64)
    return spikes.requires_grad_()


TARGET = torch.tensor([0, 3, 1])

# -- values -----------------------------------------------------------------------------------


def test_rate_cross_entropy_is_the_cross_entropy_of_the_counts():
    spikes = _smooth_spikes().detach()
    expected = F.cross_entropy(spikes.sum(dim=0), TARGET)
    torch.testing.assert_close(rate_cross_entropy(spikes, TARGET), expected)


def test_count_mse_compares_with_the_wanted_counts():
    spikes = _smooth_spikes().detach()
    steps = spikes.shape[0]
    wanted = torch.full((3, 4), 0.1 * steps, dtype=torch.float64)
    wanted[torch.arange(3), TARGET] = 0.7 * steps
    expected = ((spikes.sum(dim=0) - wanted) ** 2).mean()
    torch.testing.assert_close(count_mse(spikes, TARGET, 0.7, 0.1), expected)
    perfect = torch.zeros(10, 1, 3)
    perfect[:8, 0, 2], perfect[:2, 0, :2] = 1.0, 1.0
    assert count_mse(perfect, torch.tensor([2])) == 0  # defaults 0.8 / 0.2


def test_membrane_cross_entropy_reads_the_last_step_or_every_step():
    mem = _smooth_spikes().detach() * 4
    torch.testing.assert_close(
        membrane_cross_entropy(mem, TARGET), F.cross_entropy(mem[-1], TARGET)
    )
    every = torch.stack([F.cross_entropy(m, TARGET) for m in mem]).mean()
    torch.testing.assert_close(membrane_cross_entropy(mem, TARGET, every_step=True), every)


def test_first_spike_times_are_exact_for_binary_trains():
    torch.manual_seed(0)
    spikes = (torch.rand(12, 5, 7) < 0.15).float()
    first = torch.where(
        spikes.any(dim=0), spikes.argmax(dim=0).float(), torch.tensor(12.0)
    )  # argmax returns the first maximum; silent outputs get T
    assert spikes.any(dim=0).logical_not().any()  # some outputs never fire
    assert torch.equal(_first_spike_times(spikes), first)


def test_first_spike_time_loss_uses_negative_times_as_logits():
    spikes = torch.zeros(6, 2, 3)
    spikes[2, 0, 0] = spikes[4, 0, 1] = 1.0  # sequence 0: class 0 at 2, class 1 at 4, 2 never
    spikes[1, 1, 2] = 1.0  # sequence 1: only class 2, at 1
    target = torch.tensor([0, 2])
    logits = -0.5 * torch.tensor([[2.0, 4.0, 6.0], [6.0, 6.0, 1.0]])
    torch.testing.assert_close(
        first_spike_time(spikes, target, scale=0.5), F.cross_entropy(logits, target)
    )


def test_first_spike_time_gradient_asks_the_target_to_fire_earlier():
    spikes = torch.zeros(6, 1, 2)
    spikes[3, 0, 0] = spikes[1, 0, 1] = 1.0  # the wrong class fires first
    spikes.requires_grad_()
    first_spike_time(spikes, torch.tensor([0])).backward()
    grad = spikes.grad[:, 0]
    assert (grad[:3, 0] < 0).all()  # a spike of the target before step 3 lowers the loss
    assert (grad[4:, 0] == 0).all()  # after its first spike nothing changes
    assert (grad[:1, 1] > 0).all()  # the other class firing even earlier raises it


def test_the_regularizers():
    spikes = torch.zeros(10, 2, 3, 4, 4)  # any [T, B, *], for example a conv layer
    spikes[::2] = 1.0
    assert sparsity(spikes) == 0.5
    assert rate_l2(spikes, 0.5) == 0
    torch.testing.assert_close(rate_l2(spikes, 0.1), torch.tensor(0.16))
    per_channel = torch.tensor([0.5, 0.1, 0.5]).view(3, 1, 1)
    torch.testing.assert_close(rate_l2(spikes, per_channel), torch.tensor(0.16 / 3))


# -- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss",
    [
        rate_cross_entropy,
        count_mse,
        membrane_cross_entropy,
        lambda s, t: membrane_cross_entropy(s, t, every_step=True),
        first_spike_time,
        lambda s, t: first_spike_time(s, t, scale=0.3),
    ],
    ids=[
        "rate_cross_entropy",
        "count_mse",
        "membrane_cross_entropy",
        "membrane_cross_entropy_every_step",
        "first_spike_time",
        "first_spike_time_scaled",
    ],
)
def test_classification_losses_pass_gradcheck(loss):
    spikes = _smooth_spikes()
    assert torch.autograd.gradcheck(lambda s: loss(s, TARGET), (spikes,))
    assert torch.autograd.gradgradcheck(lambda s: loss(s, TARGET), (spikes,))


def test_regularizers_pass_gradcheck():
    spikes = _smooth_spikes((4, 2, 3, 2))
    target = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64).view(3, 1).requires_grad_()
    assert torch.autograd.gradcheck(rate_l2, (spikes, target))
    assert torch.autograd.gradcheck(lambda s: rate_l2(s, 0.3), (spikes,))
    assert torch.autograd.gradcheck(sparsity, (spikes,))


def test_the_gradient_reaches_a_spiking_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), tt.snn.LIF(8, beta=0.9, threshold=0.5))
    xs = torch.rand(10, 3, 4) * 2
    spikes = torch.stack([net(x) for x in xs])
    target = torch.tensor([0, 5, 7])
    for loss in (
        rate_cross_entropy(spikes, target),
        count_mse(spikes, target),
        first_spike_time(spikes, target),
        rate_l2(spikes, 0.2),
        sparsity(spikes),
    ):
        grad = torch.autograd.grad(loss, net[0].weight, retain_graph=True)[0]
        assert grad.abs().sum() > 0


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", CLASSIFICATION, ids=lambda f: f.__name__)
def test_classification_losses_reject_bad_shapes_and_targets(loss):
    name = loss.__name__
    good = torch.rand(5, 3, 4)
    with pytest.raises(ValueError, match=rf"{name}: expected \w+ of shape \[T, B, C\].*got shape"):
        loss(torch.rand(3, 4), TARGET)
    with pytest.raises(ValueError, match=rf"{name}: expected at least one timestep"):
        loss(torch.rand(0, 3, 4), TARGET)
    with pytest.raises(TypeError, match=rf"{name}: expected \w+ to be a floating-point tensor"):
        loss(torch.ones(5, 3, 4, dtype=torch.long), TARGET)
    with pytest.raises(ValueError, match=rf"{name}: expected target of shape \[B\] = \[3\]"):
        loss(good, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=rf"{name}: expected target to be an integer tensor"):
        loss(good, TARGET.float())
    with pytest.raises(ValueError, match=rf"{name}: expected class indices in \[0, 3\].*\[0, 4\]"):
        loss(good, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=rf"{name}: expected class indices in \[0, 3\]"):
        loss(good, torch.tensor([-1, 2, 1]))


def test_regularizers_and_options_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"sparsity: expected spikes of shape \[T, B, \*\]"):
        sparsity(torch.rand(5))
    with pytest.raises(ValueError, match=r"rate_l2: expected target_rate broadcastable"):
        rate_l2(torch.rand(5, 2, 3), torch.rand(4))
    with pytest.raises(TypeError, match=r"rate_l2: expected target_rate to be a float"):
        rate_l2(torch.rand(5, 2, 3), "0.1")
    with pytest.raises(ValueError, match=r"count_mse: expected correct_rate to be finite"):
        count_mse(torch.rand(5, 3, 4), TARGET, correct_rate=float("nan"))
    with pytest.raises(TypeError, match=r"first_spike_time: expected scale to be a float"):
        first_spike_time(torch.rand(5, 3, 4), TARGET, scale=None)
    with pytest.raises(TypeError, match=r"rate_cross_entropy: expected spikes to be a tensor"):
        rate_cross_entropy([[0.0]], TARGET)
