"""The check a model must pass before it runs in sequence mode: the same as step by step."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..core.model import layers, zero_states
from ..core.sequence import Mode, _restore, _states, _survey, run

__all__ = ["SequenceCheckError", "check_sequence"]

# (rtol, atol) by dtype when none is given: two code paths of one computation differ by a few
# roundings per step, far below these even over hundreds of steps
_TOLERANCES = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
}

_CAUSES = (
    "usual causes: a forward that reshapes or indexes its input by position "
    "(x.view(x.shape[0], -1), x.flatten(1), x[:, 0]) takes the time dimension for the batch "
    "in sequence mode: count dimensions from the end (x.flatten(-2)); a module that needs "
    "[B, ...] input (nn.Conv2d, pooling, nn.BatchNorm2d, nn.Flatten) must be wrapped in "
    "tt.nn.TimeDistributed; a layer whose forward_sequence differs from its forward "
    "(tt.testing.check_layer names it); random modules (dropout) draw differently in the two "
    "modes, and batch normalization in training mode normalizes by the statistics of every "
    "step in sequence mode, of one step in step mode: call model.eval() first; an in-place "
    "operation on the output of a layer whose "
    "output is its state (nn.ReLU(inplace=True) after tt.snn.LI or tt.rnn.GRU) changes that "
    "state in step mode only: use the out-of-place form"
)


class SequenceCheckError(AssertionError):
    """A model computes something else in sequence mode than step by step.

    Attributes:
        model: The class name of the model.
        what: What differed: ``"error"`` (sequence mode raised), ``"outputs"``,
            ``"states"`` or ``"gradients"``.
    """

    def __init__(self, message: str, *, model: str, what: str) -> None:
        super().__init__(message)
        self.model = model
        self.what = what


@dataclass
class _Run:
    """One run of the model over ``xs``: its outputs, the states it left, the gradients."""

    outputs: Tensor
    states: dict[str, Tensor]  # the live states, with their autograd graph
    grads: dict[str, Tensor | None] = field(default_factory=dict)


def _live_states(model: nn.Module) -> dict[str, Tensor]:
    """Every live state under ``model``, keyed as :func:`tracetorch.save_states` keys them."""
    found = {}
    for path, layer in layers(model):
        for name in layer.state_names:
            state = getattr(layer, name)
            if state is not None:
                found[f"{path}.{name}" if path else name] = state
    return found


def _restore_buffers(model: nn.Module, saved: dict[str, Tensor]) -> None:
    """Copy saved values back into the buffers that changed.

    Only those: a copy bumps the version counter of a buffer that a graph may have saved.
    """
    with torch.no_grad():
        for key, buffer in model.named_buffers():
            value = saved.get(key)
            if value is not None and not torch.equal(buffer, value):
                buffer.copy_(value)


# the runs of a check: mode, autograd on, xs data (not requiring grad); the first is the
# reference the others are compared with
_RUNS: tuple[tuple[Mode, bool, bool], ...] = (
    ("step", True, False),
    ("sequence", True, False),
    ("sequence", True, True),
    ("sequence", False, False),
)


def _in(mode: Mode, grad: bool | None = None, data: bool = False) -> str:
    """Where a run happened, for the messages (``grad``: autograd on; ``None``: as now)."""
    grad = torch.is_grad_enabled() if grad is None else grad
    if mode == "step":
        return "step by step"
    if not grad:
        return "in sequence mode under torch.no_grad()"
    return "in sequence mode on xs that does not require grad" if data else "in sequence mode"


def _kind(t: Tensor) -> str:
    return f"{t.dtype} of shape {tuple(t.shape)}"


class _SequenceCheck:
    """Runs a model in both modes from the same start and compares what the runs give."""

    def __init__(self, model: nn.Module, xs: Tensor, rtol: float, atol: float) -> None:
        self.model = model
        self.xs = xs
        self.tolerance = {"rtol": rtol, "atol": atol}
        self.name = type(model).__name__
        self.parameters = [(key, p) for key, p in model.named_parameters() if p.requires_grad]
        self.weights: list[Tensor] = []  # of the loss, drawn from the step run's shapes
        self.output = torch.empty(0)  # of the step run
        self.states: dict[str, Tensor] = {}  # of the step run
        self.devices = []  # the CUDA generators fork_rng saves and restores, besides the CPU
        if xs.device.type == "cuda":
            index = xs.device.index
            self.devices = [torch.cuda.current_device() if index is None else index]

    def fail(self, what: str, how: str) -> SequenceCheckError:
        message = f"check_sequence: {self.name} {how}; {_CAUSES}"
        return SequenceCheckError(message, model=self.name, what=what)

    def close(self, got: Tensor, expected: Tensor) -> bool:
        return torch.allclose(got, expected, **self.tolerance)

    def first_step(self, got: Tensor, expected: Tensor) -> int:
        """The first index of dim 0 where ``got`` and ``expected`` differ."""
        return next(t for t in range(len(got)) if not self.close(got[t], expected[t]))

    def run_all(self) -> tuple[_Run, _Run, _Run, _Run]:
        """Step mode, then sequence mode with autograd (on ``xs`` that requires grad, and on
        ``xs`` that does not, as data in training does) and without it (``torch.no_grad()``).

        Each from zero states and the same buffers and RNG; the model is restored after.
        """
        saved_states = _states(_survey(self.model)[1])  # the tensors, graphs and all
        saved_buffers = {key: b.detach().clone() for key, b in self.model.named_buffers()}
        try:
            runs = []
            for mode, grad, data in _RUNS:
                _restore_buffers(self.model, saved_buffers)
                zero_states(self.model)
                with torch.set_grad_enabled(grad):
                    runs.append(self.run_once(mode, data))
        finally:
            _restore_buffers(self.model, saved_buffers)
            _restore(saved_states)
        return runs[0], runs[1], runs[2], runs[3]

    def run_once(self, mode: Mode, data: bool = False) -> _Run:
        """One run and its gradients (taken at once: a later buffer restore may break them).

        ``data``: ``xs`` does not require grad (only the parameters' gradients are taken).
        """
        xs = self.xs.detach().clone().requires_grad_(torch.is_grad_enabled() and not data)
        with torch.random.fork_rng(devices=self.devices):  # the runs draw the same numbers
            try:
                outputs = run(self.model, xs, mode=mode)
            except Exception as err:
                if mode == "step":
                    raise
                how = f"raised {type(err).__name__} {_in(mode, data=data)}: {err}"
                raise self.fail("error", how) from err
        result = _Run(outputs, _live_states(self.model))
        terms = [result.outputs, *result.states.values()]
        if mode == "step":  # the reference: the other runs are checked against it
            generator = torch.Generator().manual_seed(0)
            self.output, self.states = outputs, result.states
            self.weights = [
                torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t) for t in terms
            ]
        else:
            self.same_shapes(outputs, result.states, _in(mode, data=data))
        if not torch.is_grad_enabled():
            return result
        loss = sum((t * w).sum() for t, w in zip(terms, self.weights, strict=True))
        keys = [f"parameter {key!r}" for key, _ in self.parameters]
        inputs = [p for _, p in self.parameters]
        if not data:
            keys, inputs = ["xs", *keys], [xs, *inputs]
        if isinstance(loss, Tensor) and loss.requires_grad and inputs:
            grads = torch.autograd.grad(loss, inputs, allow_unused=True)
            result.grads = dict(zip(keys, grads, strict=True))
        else:
            result.grads = dict.fromkeys(keys)
        return result

    def same_shapes(self, output: Tensor, states: dict[str, Tensor], where: str) -> None:
        """Raise unless a run's outputs and states have the step run's shapes and dtypes."""
        if output.shape != self.output.shape or output.dtype != self.output.dtype:
            raise self.fail(
                "outputs",
                f"returned {_kind(output)} {where}, {_kind(self.output)} step by step (the "
                f"outputs of every step, stacked)",
            )
        got = {key: _kind(s) for key, s in states.items()}
        expected = {key: _kind(s) for key, s in self.states.items()}
        if got != expected:
            raise self.fail(
                "states",
                f"leaves states of other names, shapes or dtypes {where} ({got}) than step by "
                f"step ({expected})",
            )

    def compare(self, step: _Run, sequence: _Run, where: str) -> None:
        """Raise at the first difference: outputs, then states, then gradients."""
        if not self.close(sequence.outputs, step.outputs):
            t = self.first_step(sequence.outputs, step.outputs)
            diff = (sequence.outputs[t] - step.outputs[t]).abs().max().item()
            raise self.fail(
                "outputs",
                f"gives other outputs {where} than step by step, first at step {t} of "
                f"{len(self.xs)} (max |diff| {diff:.3g})",
            )
        for key, expected in step.states.items():
            got = sequence.states[key]
            if not self.close(got, expected):
                diff = (got - expected).abs().max().item()
                raise self.fail(
                    "states",
                    f"leaves another state {key!r} {where} than step by step (max |diff| "
                    f"{diff:.3g})",
                )
        for key, got in sequence.grads.items():  # none for a run without autograd
            expected = step.grads[key]
            if got is None and expected is None:
                continue
            got = torch.zeros_like(expected) if got is None else got
            expected = torch.zeros_like(got) if expected is None else expected
            if not self.close(got, expected):
                if key == "xs":
                    key = f"xs at step {self.first_step(got, expected)}"
                diff = (got - expected).abs().max().item()
                raise self.fail(
                    "gradients",
                    f"gives another gradient w.r.t. {key} {where} than step by step "
                    f"(max |diff| {diff:.3g}; the loss weighs every output and final state)",
                )


def check_sequence(
    model: nn.Module,
    xs: Tensor,
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Checks that ``model`` computes the same in sequence mode as step by step.

    Runs ``model`` over ``xs`` from zero states with :func:`tracetorch.run` in
    ``mode="step"`` and in ``mode="sequence"``, and compares, in that order: the outputs, the
    states the runs leave (as :func:`tracetorch.save_states` lists them), and the gradients
    of one loss (the outputs and the final states weighed by fixed random weights) with
    respect to ``xs`` and every parameter that requires grad. Two more runs in sequence mode
    are compared too, since layers may take another path there (tracetorch's own fast paths
    do): one on ``xs`` that does not require grad (the outputs, states and parameters'
    gradients), as data in training does not, and one under ``torch.no_grad()`` (the outputs
    and states). All runs start from the same
    parameters, buffers and global RNG state.

    Everything runs in the dtype and on the device of ``model`` and ``xs``: pass float64 for
    a tight check (in lower precision, a rounding difference right at a threshold can flip a
    hard spike in one mode only). The model is left as it was: its states are put back (the
    same tensors, with their autograd graphs), and its buffers too (BatchNorm running
    statistics); the ``.grad`` of its parameters is not touched, and the caller's RNG state
    is restored.

    Args:
        model: Any ``nn.Module`` (a :class:`tracetorch.Model`, an ``nn.Sequential``, a
            single layer).
        xs: The inputs, ``[T, *step_shape]``, a floating-point tensor.
        atol: Absolute tolerance; ``None``: by dtype (``1e-9`` for float64, ``1e-5`` for
            float32).
        rtol: Relative tolerance; ``None``: by dtype (``1e-7`` for float64, ``1e-4`` for
            float32).

    Returns:
        None, when the two modes agree.

    Raises:
        SequenceCheckError: The modes differ, or sequence mode raised: the message says what
            differs and where (the step, the state's key, the parameter's name), and lists
            the usual causes; ``err.what`` says which kind of difference.
        ValueError: ``xs`` is not a floating-point tensor with a time dimension first.

    Example:
        >>> import torch, tracetorch as tt
        >>> from tracetorch.testing import check_sequence
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), tt.snn.LIB(8), torch.nn.Linear(8, 2))
        >>> xs = torch.rand(10, 3, 4)
        >>> check_sequence(net.double(), xs.double())  # None: the modes agree
        >>> class Flat(torch.nn.Module):  # [B, C, N] -> [B, C * N], counting from the front
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.li = tt.snn.LI(6, dim=-2)
        ...     def forward(self, x):
        ...         return self.li(x).flatten(1)
        >>> check_sequence(Flat(), torch.rand(10, 3, 6, 2))
        Traceback (most recent call last):
        ...
        tracetorch.testing.check_sequence.SequenceCheckError: check_sequence: Flat returned torch.float32 of shape (10, 36) in sequence mode, torch.float32 of shape (10, 3, 12) step by step (the outputs of every step, stacked); usual causes: a forward that reshapes or indexes its input by position ...
    """  # noqa: E501
    if not isinstance(xs, Tensor) or not xs.is_floating_point() or xs.dim() < 1 or not len(xs):
        got = (
            f"{xs.dtype} of shape {tuple(xs.shape)}"
            if isinstance(xs, Tensor)
            else type(xs).__name__
        )
        raise ValueError(
            f"check_sequence: expected xs to be a floating-point tensor [T, *step_shape] with "
            f"T >= 1, got {got}"
        )
    default_rtol, default_atol = _TOLERANCES.get(xs.dtype, _TOLERANCES[torch.float32])
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    check = _SequenceCheck(model, xs, rtol, atol)
    step, *others = check.run_all()
    for run_, (mode, grad, data) in zip(others, _RUNS[1:], strict=True):
        check.compare(step, run_, _in(mode, grad=grad, data=data))
