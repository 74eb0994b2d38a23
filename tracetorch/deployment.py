"""Exporting one step of a stateful model: ``tt.export`` and ``tt.export_onnx``.

(The module is not called ``export``: importing it would then replace the function
``tt.export`` with the module.)

A deployed recurrent or spiking model cannot keep its hidden states inside the layers: the
runtime that runs it (``torch.export``'s program, ONNX Runtime, an accelerator compiler)
wants a function of its inputs. :func:`export` traces one step of the model as that function,
``(input, states) -> (output, new_states)``, through :func:`tracetorch.functional_call`; the
caller keeps the states and feeds each step's new states into the next step.
:func:`export_onnx` writes the same step as an ONNX model (the optional extra
``tracetorch[onnx]``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .core.functional import functional_call

__all__ = ["export", "export_onnx"]


class _Step(nn.Module):
    """One step of ``model`` as a pure module: ``forward(x, states) -> (output, new_states)``.

    ``new_states`` has the keys of ``states``, in the same order, so that a runtime can feed
    the outputs back as the next inputs.
    """

    def __init__(self, model: nn.Module, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(
        self, x: Tensor | tuple[Tensor, ...], states: dict[str, Tensor]
    ) -> tuple[object, dict[str, Tensor]]:
        output, new = functional_call(self.model, states, x)
        return output, {key: new[key] for key in self.keys}


def _starting_states(
    module: nn.Module, sample_input: Tensor | tuple, states: Mapping[str, Tensor] | None
) -> dict[str, Tensor]:
    """Every state one step on ``sample_input`` uses: the given ones, zeros for the others."""
    with torch.no_grad():
        _, created = functional_call(module, states or {}, sample_input)
    start = {}
    for key, value in created.items():
        given = (states or {}).get(key)
        start[key] = torch.zeros_like(value) if given is None else given
    return start


def export(
    module: nn.Module,
    sample_input: Tensor | tuple[Tensor, ...],
    path: str | os.PathLike | None = None,
    *,
    states: Mapping[str, Tensor] | None = None,
) -> torch.export.ExportedProgram:
    """Export one timestep of ``module`` as a :class:`torch.export.ExportedProgram`.

    The program is the pure step of :func:`tracetorch.functional_call`: called as
    ``program.module()(x, states)``, it returns ``(output, new_states)``, where ``states`` and
    ``new_states`` are dicts keyed like :func:`tracetorch.save_states` (``"net.2.mem"``)
    holding every state one step creates, in the same order. In the graph the inputs are
    named after them: ``x``, then ``states_net_2_mem``, ... (see
    ``program.graph_signature``). The module's own states are not touched.

    The step is traced under ``torch.no_grad()``, for inference: hard spikes are exported as
    their forward, a threshold comparison (their surrogate gradient exists only for
    training). The shapes are those of ``sample_input``; put the model in ``eval()`` mode
    first if it holds dropout or batch norm, and call :func:`tracetorch.TTcompile` to export
    the baked parameter values instead of their transforms.

    Args:
        module: The model (any ``nn.Module`` holding tracetorch layers).
        sample_input: The input of one step: a tensor, or a tuple of ``forward``'s positional
            arguments (then ``x`` is that tuple).
        path: Where to save the program with :func:`torch.export.save` (``None``: not saved).
        states: The states the example step starts from, keyed like
            :func:`tracetorch.save_states`; a state not given is zeros of the shape the
            sample input creates (the states of a fresh model).

    Returns:
        The exported program. Its example inputs (``program.example_inputs``) hold the
        starting states, so ``program.example_inputs[0][1]`` is a ready first ``states``.

    Raises:
        TypeError, ValueError: as :func:`tracetorch.functional_call` for bad ``states``.

    Example:
        >>> import torch, tracetorch as tt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), tt.snn.LIF(4), tt.snn.LI(4))
        >>> program = tt.export(net, torch.rand(2, 3))
        >>> step = program.module()
        >>> states = program.example_inputs[0][1]  # zeros, keyed like tt.save_states
        >>> sorted(states)
        ['1.mem', '2.mem']
        >>> xs = torch.rand(5, 2, 3)
        >>> for x in xs:
        ...     y, states = step(x, states)
        >>> tt.zero_states(net)
        >>> with torch.no_grad():
        ...     torch.allclose(y, tt.run(net, xs)[-1])
        True
    """
    start = _starting_states(module, sample_input, states)
    step = _Step(module, tuple(start))
    with torch.no_grad():
        program = torch.export.export(step, (sample_input, start), strict=False)
    if path is not None:
        torch.export.save(program, path)
    return program


def _require_onnx() -> None:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"tt.export_onnx: PyTorch's ONNX exporter needs the package(s) {', '.join(missing)}, "
            f"which are not installed; install them with pip install 'tracetorch[onnx]' "
            f"(onnxruntime, also in the extra, runs the exported model)"
        )


def export_onnx(
    module: nn.Module,
    sample_input: Tensor | tuple[Tensor, ...],
    path: str | os.PathLike,
    *,
    states: Mapping[str, Tensor] | None = None,
) -> torch.onnx.ONNXProgram:
    """Write one timestep of ``module`` as an ONNX model, the states as inputs and outputs.

    The step of :func:`export`, converted by PyTorch's ONNX exporter
    (``torch.onnx.export(..., dynamo=True)``). The ONNX graph has the inputs ``input`` (for a
    tuple ``sample_input``: ``input.0``, ``input.1``, ...) then one input per state, named
    by its key of :func:`tracetorch.save_states` (``net.2.mem``); and the outputs ``output``
    (for a forward that returns several tensors: ``output.0``, ``output.1``, ...) then one
    per new state, ``new.<key>`` (``new.net.2.mem``), in the same order. Running it
    step by step means feeding each step's ``new.<key>`` back as ``<key>``, starting from
    zeros of the shapes of the inputs (or from saved states). The shapes are those of
    ``sample_input``.

    Needs the optional packages ``onnx`` and ``onnxscript`` (``pip install
    'tracetorch[onnx]'``, which also installs ``onnxruntime`` to run the model).

    Args:
        module: The model (any ``nn.Module`` holding tracetorch layers).
        sample_input: The input of one step: a tensor, or a tuple of ``forward``'s
            positional arguments.
        path: The ``.onnx`` file to write.
        states: The states the example step starts from (see :func:`export`).

    Returns:
        PyTorch's :class:`torch.onnx.ONNXProgram`, already saved to ``path``.

    Raises:
        ImportError: ``onnx`` or ``onnxscript`` is not installed.
        ValueError: state keys that make two inputs or outputs of the ONNX model share a
            name (a submodule named ``input``, or ``new`` beside its parent).

    Example:
        >>> import os, tempfile, torch, tracetorch as tt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), tt.snn.LIF(4), tt.snn.LI(4))
        >>> path = os.path.join(tempfile.mkdtemp(), "step.onnx")
        >>> _ = tt.export_onnx(net, torch.rand(2, 3), path)
        >>> import onnxruntime
        >>> session = onnxruntime.InferenceSession(path)
        >>> [node.name for node in session.get_inputs()]
        ['input', '1.mem', '2.mem']
        >>> [node.name for node in session.get_outputs()]
        ['output', 'new.1.mem', 'new.2.mem']

        :doc:`/functional` runs a whole ONNX Runtime loop, feeding the new states back.
    """
    _require_onnx()
    program = export(module, sample_input, states=states)
    keys = list(program.example_inputs[0][1])
    count = len(sample_input) if isinstance(sample_input, tuple) else 0
    inputs = [f"input.{i}" for i in range(count)] if count else ["input"]
    returned = program.call_spec.out_spec.child(0)  # what the model's forward returns
    if returned.is_leaf():
        outputs = ["output"]
    else:
        outputs = [f"output.{i}" for i in range(returned.num_leaves)]
    outputs += [f"new.{key}" for key in keys]
    names = [*inputs, *keys, *outputs]
    clash = sorted({name for name in names if names.count(name) > 1})
    if clash:
        raise ValueError(
            f"tt.export_onnx: the state keys of {type(module).__name__} give the ONNX model the "
            f"name(s) {clash} twice (inputs {inputs}, one input per state key, outputs "
            f"'output*' and 'new.<key>'); rename the submodules that hold those states"
        )
    with torch.no_grad():
        onnx_program = torch.onnx.export(
            program,
            program.example_inputs[0],
            dynamo=True,
            verbose=False,
            input_names=[*inputs, *keys],
            output_names=outputs,
            external_data=False,
        )
    onnx_program.save(os.fspath(path))
    return onnx_program
