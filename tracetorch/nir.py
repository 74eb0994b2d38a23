"""Export to and import from NIR, the Neuromorphic Intermediate Representation.

:func:`export` turns a tracetorch model into a ``nir.NIRGraph`` (which ``nir.write`` saves
to a file other simulators and neuromorphic chips read); :func:`load` builds a
:class:`tracetorch.Model` from a graph (or a file ``nir.write`` made). Needs the ``nir``
package, an optional dependency (``pip install 'tracetorch[nir]'``); ``import tracetorch``
does not import it, and ``tt.nir`` is loaded on first use.

What maps (a chain of modules, each node with one input and one output):

=================================================  ===================================
tracetorch / PyTorch                               NIR node
=================================================  ===================================
``nn.Linear``                                      ``Affine`` (``Linear`` without bias)
``nn.Conv1d``, ``nn.Conv2d``                       ``Conv1d``, ``Conv2d``
``nn.AvgPool2d``                                   ``AvgPool2d``
``nn.AvgPool2d(divisor_override=1)``               ``SumPool2d``
``nn.Flatten``                                     ``Flatten`` (dims counted without batch)
``tt.nn.TimeDistributed(m)``                       the node of ``m``
``nn.Identity``, ``nn.Dropout``                    nothing (identities at inference)
``LI``, ``Decay``; ``LIEMA``                       ``LI``
``LIF``, ``LIB`` with ``reset="zero"``             ``LIF``
``SLIB`` with ``reset="zero"``                     ``CubaLIF``
=================================================  ===================================

Discretization. NIR describes neurons in continuous time, e.g. ``LI``:
``tau dv/dt = (v_leak - v) + r I``. tracetorch steps them with forward Euler over a step
``dt``, the convention of snnTorch's NIR import and export, so that a graph made by either
library means the same in the other:

- ``beta = 1 - dt / tau`` (and ``alpha = 1 - dt / tau_syn``); the export writes
  ``tau = dt / (1 - beta)``;
- the membrane receives ``r * dt / tau`` times its input. tracetorch's ``LI``, ``LIF`` and
  ``SLIB`` add their input unscaled, so the export writes ``r = tau / dt``; ``LIEMA`` adds
  ``(1 - beta)`` times its input, which is ``r = 1``. A firing neuron imported with another
  gain gets its threshold divided by that gain instead (the same spikes, with a zero reset);
- ``CubaLIF``: ``I = alpha*I + (1 - alpha) * w_in * S`` and the membrane receives the
  current of the same step, which is :class:`~tracetorch.snn.SLIB` for ``w_in = 1`` (the
  export writes ``w_in = 1``; an imported ``w_in`` is divided into the threshold);
- ``v_leak`` and ``v_reset`` must be 0 (tracetorch's neurons rest and reset at 0).

``dt`` itself only sets the time unit of the ``tau`` values (``beta`` does not depend on
it): :func:`export` and :func:`load` take it as an argument, 1e-4 by default as in
snnTorch, and a graph read with the ``dt`` it was written with reads back unchanged.

Reset. NIR's ``LIF`` and ``CubaLIF`` reset the membrane to ``v_reset`` after a spike: a
zero reset, tracetorch's ``reset="zero"``. tracetorch's firing layers subtract the
threshold by default, which NIR cannot express; exporting such a layer is an error unless
``approximate_reset=True``, which writes it as a zero-reset neuron (the same up to the
first spike; afterwards the membrane starts from 0 instead of from what was left above the
threshold). An imported ``LIF`` or ``CubaLIF`` always has ``reset="zero"``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .autograd.surrogate import SpikeFn
from .core.layer import Layer
from .core.model import Model, layers, zero_states
from .functional.leaky import LeakyConfig
from .nn.time_distributed import TimeDistributed
from .snn import LI, LIB, LIEMA, LIF, SLIB, LeakyIntegrator

try:  # nir depends on numpy; without either, tt.nir raises the ImportError of _nir()
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

if TYPE_CHECKING:
    import nir as nir_package

__all__ = ["DT", "NIRModel", "export", "load"]

DT = 1e-4
"""The default timestep, in seconds: the one snnTorch's NIR import and export assume."""

_MISSING = "tt.nir needs the nir package: pip install 'tracetorch[nir]'"
_MAPS = (
    "nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.Flatten, nn.Identity, nn.Dropout, "
    "tt.nn.TimeDistributed, and the layers LI, Decay, LIEMA, LIF/LIB (reset='zero') and "
    "SLIB (reset='zero')"
)
_NODES = "Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, LI, LIF, CubaLIF"


def _nir() -> Any:
    """The ``nir`` package, or an ImportError naming the extra that installs it."""
    try:
        import nir
    except ImportError as error:
        raise ImportError(_MISSING) from error
    if np is None:  # pragma: no cover (nir itself needs numpy)
        raise ImportError(_MISSING)
    return nir


def _check_dt(who: str, dt: object) -> float:
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not 0 < dt < math.inf:
        raise ValueError(f"{who}: expected dt to be a positive number of seconds, got {dt!r}")
    return float(dt)


# ------------------------------------------------------------------------------- export


def _atomic(module: nn.Module) -> bool:
    """A module exported as one node (a tracetorch layer, or a module without children)."""
    return isinstance(module, Layer) or next(module.children(), None) is None


def _trace(model: nn.Module, sample: Tensor) -> list[tuple[str, nn.Module, Tensor, Tensor]]:
    """Run one step and return ``(path, module, input, output)`` of every node, in order.

    Checks that the model is a chain: each node receives the previous node's output (the
    first one the sample), and the model returns the last node's output. The step starts
    from zero states, and the layers get their own states back afterwards.
    """
    calls: list[tuple[str, nn.Module, Tensor, Tensor, int, int]] = []
    paths = {}
    stack = [("", model)]
    while stack:  # the atomic modules, without descending into them
        path, module = stack.pop()
        if _atomic(module):
            paths[id(module)] = (path, module)
        elif isinstance(module, TimeDistributed):  # exported as its module, under its path
            stack.append((path, module.module))
        else:
            stack.extend((f"{path}.{n}" if path else n, c) for n, c in module.named_children())

    hooked = [
        (path or type(model).__name__, type(m).__name__)
        for path, m in model.named_modules()
        if m._forward_hooks or m._forward_pre_hooks
    ]
    if hooked or nn.modules.module._global_forward_hooks:
        where = f"{hooked[0][0]!r} ({hooked[0][1]})" if hooked else "every module (global)"
        raise ValueError(
            f"tt.nir.export: {where} has forward hooks, which may change what the modules "
            f"compute and which NIR cannot describe; remove them before exporting"
        )

    entered: dict[int, int] = {}  # the version of each node's input when it took it

    def pre_hook(module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], Tensor):
            entered[id(module)] = args[0]._version

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        path, _ = paths[id(module)]
        if not args or not isinstance(args[0], Tensor) or not isinstance(output, Tensor):
            raise TypeError(
                f"tt.nir.export: {path!r} ({type(module).__name__}) does not map one tensor "
                f"to one tensor"
            )
        calls.append((path, module, args[0], output, entered[id(module)], output._version))

    # run from fresh states (live ones may have another batch size), then put back the very
    # tensors the layers held, and the buffers (a BatchNorm in training would update its
    # statistics)
    kept = [
        (layer, {n: getattr(layer, n) for n in layer.state_names}) for _, layer in layers(model)
    ]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    handles = [module.register_forward_pre_hook(pre_hook) for _, module in paths.values()]
    handles += [module.register_forward_hook(hook) for _, module in paths.values()]
    sample_version = sample._version
    try:
        zero_states(model)
        with torch.no_grad():
            result = model(sample)
    finally:
        for handle in handles:
            handle.remove()
        for layer, states in kept:
            layer._write_states(states)
        with torch.no_grad():
            for buffer, value in buffers:
                if not torch.equal(buffer, value):
                    buffer.copy_(value)
    if not calls:
        raise ValueError(f"tt.nir.export: {type(model).__name__} called no module to export")
    seen: set[int] = set()
    previous, version, where = sample, sample_version, "the sample input"
    for path, module, x, y, x_version, y_version in calls:
        if id(module) in seen:
            raise ValueError(
                f"tt.nir.export: {path!r} ({type(module).__name__}) is called more than once "
                f"per step; only a chain of distinct modules can be exported"
            )
        seen.add(id(module))
        if x is not previous:
            raise ValueError(
                f"tt.nir.export: {path!r} ({type(module).__name__}) does not receive the "
                f"output of {where}; the forward computes something between them that is not "
                f"a module (or branches); only a chain of modules can be exported, so write "
                f"that step as a module or use nn.Sequential"
            )
        if x_version != version:
            raise ValueError(
                f"tt.nir.export: {path!r} ({type(module).__name__}) receives the output of "
                f"{where} changed in place (an in-place operation between them, such as "
                f"x.mul_(2) or F.relu(x, inplace=True)), which NIR cannot describe; write that "
                f"step as a module, out of place"
            )
        previous, version, where = y, y_version, f"{path!r}"
    if result is not previous or result._version != version:
        raise ValueError(
            f"tt.nir.export: {type(model).__name__} does not return the output of its last "
            f"module {where} (or changes it in place); only a chain of modules can be exported"
        )
    return [call[:4] for call in calls]


def _neuron_values(layer: Layer, values: Mapping[str, Tensor], shape: tuple[int, ...]) -> Any:
    """Each parameter value as a float64 array of one sample's ``shape`` (neurons at ``dim``)."""
    ndim = len(shape) + 1  # with the batch
    axis = layer.dim % ndim - 1
    if axis < 0:
        raise ValueError(
            f"tt.nir.export: {type(layer).__name__} has its neurons at dim={layer.dim}, the "
            f"batch dimension of its input {('B', *shape)}; NIR neurons are per sample"
        )
    view = [1] * len(shape)
    view[axis] = -1
    arrays = {}
    for name, value in values.items():
        value = value.detach().to("cpu", torch.float64)
        if value.dim() == 1:
            value = value.reshape(view)
        arrays[name] = value.expand(shape).numpy().copy()
    return arrays


def _leaky_node(
    nir: Any, path: str, layer: LeakyIntegrator, shape: tuple[int, ...], dt: float, approx: bool
) -> Any:
    """The NIR node of a leaky-integrator layer, or a clear error."""
    name = f"{path!r} ({type(layer).__name__})"
    config = layer.config
    kinds = {
        LeakyConfig(): "LI",
        LeakyConfig(ema=True): "LIEMA",
        LeakyConfig(firing="binary"): "LIF",
        LeakyConfig(synaptic=True, firing="binary"): "SLIB",
    }
    kind = kinds.get(config)
    if kind is None:
        raise ValueError(f"tt.nir.export: {name} has no NIR node; what maps: {_MAPS}")
    if kind in ("LIF", "SLIB"):
        if type(layer.spike_fn) is not SpikeFn or layer.quant_fn is not None:
            spike = getattr(layer.spike_fn, "__name__", repr(layer.spike_fn))
            raise ValueError(
                f"tt.nir.export: {name} fires through spike_fn={spike} and quant_fn="
                f"{layer.quant_fn!r}; NIR neurons emit hard spikes: build the layer with a "
                f"Heaviside spike (tt.autograd.spike_fn(...), the default) and no quant_fn"
            )
        if layer.reset == "none" or (layer.reset == "subtract" and not approx):
            raise ValueError(
                f"tt.nir.export: {name} has reset={layer.reset!r}, but NIR's neurons reset to "
                f"0 after a spike; build it with reset='zero', or pass approximate_reset=True "
                f"to export a reset by subtraction as a zero reset (not the same dynamics "
                f"after the first spike)"
            )
    with torch.no_grad():
        values = dict(layer._parameter_values())
    if "bias" in values:  # mem + bias > threshold  <=>  mem > threshold - bias
        values["threshold"] = values["threshold"] - values.pop("bias")
    arrays = _neuron_values(layer, values, shape)
    tau = dt / (1 - arrays["beta"])
    zeros = np.zeros(shape)
    if kind == "LI":
        return nir.LI(tau=tau, r=tau / dt, v_leak=zeros)
    if kind == "LIEMA":
        return nir.LI(tau=tau, r=np.ones(shape), v_leak=zeros)
    if kind == "LIF":
        return nir.LIF(tau=tau, r=tau / dt, v_leak=zeros, v_threshold=arrays["threshold"])
    tau_syn = dt / (1 - arrays["alpha"])
    return nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau,
        r=tau / dt,
        v_leak=zeros,
        v_threshold=arrays["threshold"],
        w_in=np.ones(shape),
    )


def _pair(value: object) -> Any:
    return np.array(value if isinstance(value, (tuple, list)) else (value, value), dtype=np.int64)


def _array(t: Tensor) -> Any:
    return t.detach().cpu().numpy().copy()


# the PyTorch modules with a NIR node, each exported as what its own forward computes
_TORCH_NODES = (nn.Identity, nn.Dropout, nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.Flatten)


def _node(
    nir: Any, path: str, module: nn.Module, shape: tuple[int, ...], dt: float, approx: bool
) -> Any:
    """The NIR node of one module whose per-sample input shape is ``shape`` (None: skip)."""
    name = f"{path!r} ({type(module).__name__})"
    if isinstance(module, LeakyIntegrator):
        if not module._follows_step(LeakyIntegrator):
            raise ValueError(
                f"tt.nir.export: {name} redefines the step of the layer it extends, so the "
                f"NIR node of that layer would not describe it; it has no NIR node; what "
                f"maps: {_MAPS}"
            )
        return _leaky_node(nir, path, module, shape, dt, approx)
    base = next((c for c in _TORCH_NODES if isinstance(module, c)), None)
    if base is not None and type(module).forward is not base.forward:
        raise ValueError(
            f"tt.nir.export: {name} redefines the forward of {base.__name__}, so the NIR node "
            f"of {base.__name__} would not describe it; it has no NIR node; what maps: {_MAPS}"
        )
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return None
    if isinstance(module, nn.Linear):
        if len(shape) != 1:
            raise ValueError(
                f"tt.nir.export: {name} takes samples of shape {tuple(shape)}; NIR's affine "
                f"nodes take one vector per sample: flatten before it (nn.Flatten)"
            )
        if module.bias is None:
            return nir.Linear(weight=_array(module.weight))
        return nir.Affine(weight=_array(module.weight), bias=_array(module.bias))
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.padding_mode != "zeros":
            raise ValueError(
                f"tt.nir.export: {name} pads with padding_mode={module.padding_mode!r}; NIR "
                f"convolutions pad with zeros"
            )
        bias = (
            module.bias if module.bias is not None else module.weight.new_zeros(len(module.weight))
        )
        two = isinstance(module, nn.Conv2d)
        padding = module.padding
        if not isinstance(padding, str):
            padding = tuple(padding) if two else padding[0]
        return (nir.Conv2d if two else nir.Conv1d)(
            input_shape=tuple(shape[1:]) if two else shape[1],
            weight=_array(module.weight),
            stride=tuple(module.stride) if two else module.stride[0],
            padding=padding,
            dilation=tuple(module.dilation) if two else module.dilation[0],
            groups=module.groups,
            bias=_array(bias),
        )
    if isinstance(module, nn.AvgPool2d):
        padding = _pair(module.padding)
        if module.ceil_mode or (padding.any() and not module.count_include_pad):
            raise ValueError(
                f"tt.nir.export: {name} uses ceil_mode=True or count_include_pad=False; NIR "
                f"pooling has neither"
            )
        if module.divisor_override not in (None, 1):
            raise ValueError(
                f"tt.nir.export: {name} has divisor_override={module.divisor_override}; NIR "
                f"has average pooling (None) and sum pooling (1) only"
            )
        node = nir.SumPool2d if module.divisor_override == 1 else nir.AvgPool2d
        stride = module.stride if module.stride is not None else module.kernel_size
        return node(kernel_size=_pair(module.kernel_size), stride=_pair(stride), padding=padding)
    if isinstance(module, nn.Flatten):
        ends = []
        for which, d in (("start_dim", module.start_dim), ("end_dim", module.end_dim)):
            if d % (len(shape) + 1) == 0:
                raise ValueError(
                    f"tt.nir.export: {name} flattens the batch dimension ({which}={d}); NIR "
                    f"nodes see one sample"
                )
            ends.append(d - 1 if d > 0 else d)
        return nir.Flatten(
            input_type={"input": np.array(shape)}, start_dim=ends[0], end_dim=ends[1]
        )
    raise ValueError(f"tt.nir.export: {name} has no NIR node; what maps: {_MAPS}")


def export(
    model: nn.Module,
    sample_input: Tensor,
    *,
    dt: float = DT,
    approximate_reset: bool = False,
) -> nir_package.NIRGraph:
    """Describe ``model`` as a NIR graph.

    The model runs one step on ``sample_input`` (its hidden states are restored afterwards)
    to find the order of its modules and the shape of every node; it must be a chain of the
    modules the module docstring lists, each receiving the previous one's output. The
    nodes are named by module path (``"net.0"``), between an ``"input"`` and an
    ``"output"`` node. The weights and the neuron parameters are written as they are now,
    per neuron (a shared value is repeated); see the module docstring for the
    discretization.

    Args:
        model: The model (an ``nn.Sequential``, a :class:`tracetorch.Model` whose forward
            calls its modules in a chain, or a single layer).
        sample_input: One step of input, ``[B, ...]`` (the batch is not part of the graph).
        dt: The timestep in seconds, which sets the time constants ``tau = dt / (1 - beta)``.
        approximate_reset: Export firing layers that reset by subtraction as NIR neurons,
            which reset to zero (an approximation; see the module docstring).

    Returns:
        A ``nir.NIRGraph``; ``nir.write(path, graph)`` saves it.

    Raises:
        ImportError: the ``nir`` package is not installed.
        ValueError: a module without a NIR node, a firing layer that does not reset to zero
            (without ``approximate_reset``), a model that is not a chain, or a bad ``dt``.

    Example:
        >>> import torch, tracetorch as tt
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Linear(3, 4), tt.snn.LIF(4, beta=0.9, reset="zero"), tt.snn.LI(4)
        ... )
        >>> graph = tt.nir.export(net, torch.zeros(1, 3))
        >>> graph.edges
        [('input', '0'), ('0', '1'), ('1', '2'), ('2', 'output')]
        >>> lif = graph.nodes["1"]
        >>> type(lif).__name__, round(float(lif.tau[0]), 8), round(float(lif.r[0]), 4)
        ('LIF', 0.001, 10.0)
    """
    nir = _nir()
    dt = _check_dt("tt.nir.export", dt)
    if not isinstance(model, nn.Module):
        raise TypeError(f"tt.nir.export: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(sample_input, Tensor) or sample_input.dim() < 2:
        got = tuple(sample_input.shape) if isinstance(sample_input, Tensor) else sample_input
        raise ValueError(
            f"tt.nir.export: expected sample_input to be one step [B, ...] with a batch "
            f"dimension, got {got!r}"
        )
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(sample_input.shape[1:]))}
    edges = []
    previous = "input"
    out_shape = tuple(sample_input.shape[1:])
    for path, module, x, y in _trace(model, sample_input):
        node = _node(nir, path, module, tuple(x.shape[1:]), dt, approximate_reset)
        out_shape = tuple(y.shape[1:])
        if node is None:
            continue
        if isinstance(node, nir.Conv1d | nir.Conv2d):  # the shapes traced, not nir's guess,
            # which ignores groups and all but the first kernel size (nir 1.0)
            node.input_type = {"input": np.array(x.shape[1:])}
            node.output_type = {"output": np.array(out_shape)}
        name = path or type(module).__name__
        while name in nodes or name == "output":
            name += "_"
        nodes[name] = node
        edges.append((previous, name))
        previous = name
    nodes["output"] = nir.Output(output_type=np.array(out_shape))
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


# ------------------------------------------------------------------------------- import


class NIRModel(Model):
    """A chain of modules imported from a NIR graph by :func:`load`.

    Its forward runs the modules of ``net`` in order; the hidden states are managed like
    those of any :class:`tracetorch.Model` (``zero_states``, ``save_states``, ``run``, and
    sequence mode: the convolutions, pooling and flattening are wrapped in
    :class:`~tracetorch.nn.TimeDistributed`).

    Args:
        modules: The modules by name, in order (the NIR node names, with ``.`` written
            ``_``).

    Attributes:
        net: The modules, an ``nn.Sequential``.
    """

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.net = nn.Sequential(OrderedDict(modules))

    def forward(self, x: Tensor) -> Tensor:
        """One step (or, in sequence mode, all steps) through the chain."""
        return self.net(x)


def _chain(graph: Any) -> list[str]:
    """The node names from the one input to the one output, or a clear error."""
    nir = _nir()
    inputs = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"tt.nir.load: expected one Input node, got {len(inputs)}: {inputs}")
    after: dict[str, list[str]] = {}
    before: dict[str, list[str]] = {}
    for a, b in graph.edges:
        missing = [end for end in (a, b) if end not in graph.nodes]
        if missing:
            raise ValueError(
                f"tt.nir.load: the edge ({a!r}, {b!r}) names {missing[0]!r}, which is not a "
                f"node of the graph (nodes: {sorted(graph.nodes)})"
            )
        after.setdefault(a, []).append(b)
        before.setdefault(b, []).append(a)
    order = [inputs[0]]
    while not isinstance(graph.nodes[order[-1]], nir.Output):
        here = order[-1]
        nxt = after.get(here, [])
        problem = None
        if len(nxt) != 1:
            problem = f"node {here!r} has {len(nxt)} edges out ({nxt})"
        elif nxt[0] in order:
            problem = f"node {here!r} feeds back into {nxt[0]!r}, which comes before it"
        elif len(before.get(nxt[0], [])) != 1:
            problem = f"node {nxt[0]!r} has edges in from {before[nxt[0]]}"
        if problem is not None:
            raise ValueError(
                f"tt.nir.load: the graph is not a chain: {problem}; only graphs where each "
                f"node feeds the next one (no branches, merges or recurrent connections) can "
                f"be loaded"
            )
        order.append(nxt[0])
    if len(order) != len(graph.nodes):
        rest = sorted(set(graph.nodes) - set(order))
        raise ValueError(f"tt.nir.load: nodes {rest} are not on the path from input to output")
    return order[1:-1]


def _per_neuron(
    who: str, arrays: Mapping[str, Any], shape: tuple[int, ...]
) -> tuple[int, dict[str, Tensor]]:
    """``(dim, values)``: the axis the neuron parameters vary along, and one value per neuron.

    tracetorch parameters are per neuron along one dimension (``dim``): every array must be
    constant along the other dimensions of a sample's ``shape``.
    """
    try:
        full = {n: np.broadcast_to(np.asarray(a, np.float64), shape) for n, a in arrays.items()}
    except ValueError:
        shapes = {n: np.shape(a) for n, a in arrays.items()}
        raise ValueError(
            f"tt.nir.load: {who} has parameters of shapes {shapes}, which do not fit its input "
            f"{shape}"
        ) from None
    axes = range(len(shape))
    for axis in axes:
        first = tuple(slice(None) if i == axis else slice(0, 1) for i in axes)
        if all(np.array_equal(a, np.broadcast_to(a[first], shape)) for a in full.values()):
            index = tuple(slice(None) if i == axis else 0 for i in axes)
            dtype = torch.get_default_dtype()
            values = {n: torch.from_numpy(a[index].copy()).to(dtype) for n, a in full.items()}
            return axis - len(shape), values
    raise ValueError(
        f"tt.nir.load: {who} has parameters that vary along more than one dimension of its "
        f"input {shape}; tracetorch layers hold one value per neuron along one dimension"
    )


def _decay(who: str, field: str, tau: Tensor, dt: float) -> Tensor:
    """``1 - dt / tau``, which must lie in (0, 1)."""
    decay = 1 - dt / tau
    if not bool(((decay > 0) & (decay < 1)).all()):
        raise ValueError(
            f"tt.nir.load: {who} has {field} values {tau.min().item():.3g}..."
            f"{tau.max().item():.3g}, which give decays 1 - dt/{field} outside (0, 1) at "
            f"dt={dt:g}; every {field} must exceed dt: pass the dt the graph was made with"
        )
    return decay


def _at_rest(who: str, node: Any, fields: tuple[str, ...]) -> None:
    for field in fields:
        value = getattr(node, field, None)
        if value is not None and not np.allclose(np.asarray(value, np.float64), 0.0):
            raise ValueError(
                f"tt.nir.load: {who} has a nonzero {field}; tracetorch's neurons rest and "
                f"reset at 0"
            )


def _gain(who: str, gain: Tensor) -> Tensor:
    if not bool((gain > 0).all()):
        raise ValueError(f"tt.nir.load: {who} has a non-positive input gain r*dt/tau")
    return gain


def _neuron_layer(who: str, node: Any, shape: tuple[int, ...], dt: float) -> Layer:
    """The tracetorch layer of a NIR neuron node (see the module docstring)."""
    nir = _nir()
    if isinstance(node, nir.LI):
        _at_rest(who, node, ("v_leak",))
        dim, v = _per_neuron(who, {"tau": node.tau, "r": node.r}, shape)
        beta = _decay(who, "tau", v["tau"], dt)
        if torch.allclose(v["r"] * dt / v["tau"], torch.ones(()), rtol=1e-5, atol=0):
            return LI(len(beta), beta=beta, dim=dim)
        if torch.allclose(v["r"], torch.ones(()), rtol=1e-5, atol=0):
            return LIEMA(len(beta), beta=beta, dim=dim)
        raise ValueError(
            f"tt.nir.load: {who} (LI) scales its input by r*dt/tau, which is neither 1 "
            f"(tracetorch's LI) nor 1 - beta (LIEMA, r = 1) for every neuron; scale the "
            f"weights before it instead"
        )
    if isinstance(node, nir.LIF):
        _at_rest(who, node, ("v_leak", "v_reset"))
        fields = {"tau": node.tau, "r": node.r, "v_threshold": node.v_threshold}
        dim, v = _per_neuron(who, fields, shape)
        beta = _decay(who, "tau", v["tau"], dt)
        threshold = v["v_threshold"] / _gain(who, v["r"] * dt / v["tau"])
        if (threshold <= 0).any():  # fires from rest: a positive threshold less a bias
            return LIB(len(beta), beta=beta, dim=dim, reset="zero", **_biased(threshold))
        return LIF(len(beta), beta=beta, threshold=threshold, dim=dim, reset="zero")
    _at_rest(who, node, ("v_leak", "v_reset"))
    fields = {
        "tau_syn": node.tau_syn,
        "tau_mem": node.tau_mem,
        "r": node.r,
        "v_threshold": node.v_threshold,
        "w_in": node.w_in,
    }
    dim, v = _per_neuron(who, fields, shape)
    alpha = _decay(who, "tau_syn", v["tau_syn"], dt)
    beta = _decay(who, "tau_mem", v["tau_mem"], dt)
    gain = _gain(who, v["r"] * dt / v["tau_mem"] * v["w_in"])
    threshold = v["v_threshold"] / gain  # SLIB has a bias: 0 unless some threshold is <= 0
    return SLIB(len(beta), alpha=alpha, beta=beta, dim=dim, reset="zero", **_biased(threshold))


def _biased(threshold: Tensor) -> dict[str, Tensor]:
    """``threshold`` (some not positive) as a positive threshold and a bias, for LIB/SLIB.

    A neuron fires where ``mem + bias > threshold``: a threshold ``t <= 0`` becomes a
    threshold of 1 and a bias of ``1 - t``; the others keep their threshold and no bias.
    """
    positive = threshold > 0
    return {
        "threshold": torch.where(positive, threshold, torch.ones_like(threshold)),
        "bias": torch.where(positive, torch.zeros_like(threshold), 1 - threshold),
    }


def _read(nir: Any, path: str | os.PathLike) -> Any:
    """``nir.read(path)``, past nir's shape inference where it is known to be wrong.

    nir 1.0 infers a convolution's input channels without its ``groups`` and its output
    size from the first kernel size alone, so a graph with a grouped convolution or a
    non-square kernel fails nir's own type check. Such a graph is read without the check
    (the layers built from it check their input shapes when they run); any other failure is
    raised as it is.
    """
    try:
        return nir.read(path)
    except ValueError:
        graph = nir.read(path, type_check=False)
        for node in graph.nodes.values():
            if isinstance(node, nir.Conv1d | nir.Conv2d):
                kernel = np.asarray(node.weight).shape[2:]
                if int(node.groups) > 1 or len(set(kernel)) > 1:
                    return graph
        raise


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in np.atleast_1d(np.asarray(value)))


def _weight(value: Any) -> nn.Parameter:
    return nn.Parameter(torch.as_tensor(np.asarray(value), dtype=torch.get_default_dtype()))


def _module(who: str, node: Any, shape: tuple[int, ...], dt: float) -> nn.Module:
    """The module of one NIR node whose per-sample input shape is ``shape``."""
    nir = _nir()
    if isinstance(node, (nir.LI, nir.LIF, nir.CubaLIF)):
        return _neuron_layer(who, node, shape, dt)
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = np.asarray(node.weight)
        if weight.ndim != 2:
            raise ValueError(f"tt.nir.load: {who} has a weight of shape {weight.shape}, not 2-d")
        bias = isinstance(node, nir.Affine)
        module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
        module.weight = _weight(weight)
        if bias:
            module.bias = _weight(node.bias)
        return module
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        weight = np.asarray(node.weight)
        two = isinstance(node, nir.Conv2d)
        padding = node.padding if isinstance(node.padding, str) else _ints(node.padding)
        conv = (nn.Conv2d if two else nn.Conv1d)(
            weight.shape[1] * int(node.groups),
            weight.shape[0],
            kernel_size=weight.shape[2:],
            stride=_ints(node.stride),
            padding=padding,
            dilation=_ints(node.dilation),
            groups=int(node.groups),
        )
        conv.weight = _weight(weight)
        conv.bias = _weight(node.bias)
        return TimeDistributed(conv)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        divisor = 1 if isinstance(node, nir.SumPool2d) else None
        pool = nn.AvgPool2d(
            _ints(node.kernel_size),
            stride=_ints(node.stride),
            padding=_ints(node.padding),
            divisor_override=divisor,
        )
        return TimeDistributed(pool)
    if isinstance(node, nir.Flatten):
        start, end = int(node.start_dim), int(node.end_dim)
        return TimeDistributed(
            nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)
        )
    raise ValueError(
        f"tt.nir.load: {who} is a {type(node).__name__} node, which tracetorch does not load; "
        f"what loads: {_NODES}"
    )


def load(graph: nir_package.NIRGraph | str | os.PathLike, *, dt: float = DT) -> NIRModel:
    """Build a tracetorch model from a NIR graph.

    The graph must be a chain from its one ``Input`` node to its one ``Output`` node, of the
    nodes the module docstring lists. Neurons become the layers there, with their
    parameters per neuron along the one dimension they vary along (constant parameters: the
    first dimension of a sample, channels after a convolution), learnable, and a hard spike
    with the arctan surrogate gradient (so the model can be trained further). See the
    module docstring for the discretization.

    Args:
        graph: A ``nir.NIRGraph``, or the path of a file ``nir.write`` made.
        dt: The timestep in seconds: ``beta = 1 - dt / tau``. Use the ``dt`` the graph was
            exported with (1e-4 for graphs from tracetorch and snnTorch by default).

    Returns:
        A :class:`NIRModel` (a :class:`tracetorch.Model`); its modules are in ``.net``,
        named after the nodes.

    Raises:
        ImportError: the ``nir`` package is not installed.
        ValueError: a graph that is not a chain, a node without a tracetorch module, a
            ``tau`` not above ``dt``, or neuron parameters tracetorch cannot hold.

    Example:
        >>> import numpy as np, torch, nir, tracetorch as tt
        >>> graph = nir.NIRGraph.from_list(
        ...     nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
        ...     nir.LIF(tau=np.full(2, 2e-4), r=np.full(2, 2.0), v_leak=np.zeros(2),
        ...             v_threshold=np.ones(2)),
        ... )
        >>> model = tt.nir.load(graph)  # at dt = 1e-4: beta = 1 - dt/tau, gain r*dt/tau = 1
        >>> list(model.net.named_children())[1][0], model.net.lif.beta.tolist()
        ('lif', [0.5, 0.5])
        >>> spikes = tt.run(model, torch.full((4, 1, 2), 0.75))  # 0.75, 1.125 fires, 0, ...
        >>> spikes[:, 0, 0].tolist()
        [0.0, 1.0, 0.0, 1.0]
    """
    nir = _nir()
    dt = _check_dt("tt.nir.load", dt)
    if isinstance(graph, (str, os.PathLike)):
        graph = _read(nir, graph)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(
            f"tt.nir.load: expected a nir.NIRGraph or a file path, got {type(graph).__name__}"
        )
    order = _chain(graph)
    (first,) = (node for node in graph.nodes.values() if isinstance(node, nir.Input))
    shape = _ints(first.input_type["input"])
    modules: dict[str, nn.Module] = {}
    for name in order:
        who = f"node {name!r}"
        module = _module(who, graph.nodes[name], shape, dt)
        if not isinstance(module, Layer):  # neurons keep the shape
            try:
                with torch.no_grad():
                    shape = tuple(module(torch.zeros(1, *shape)).shape[1:])
            except RuntimeError as error:
                raise ValueError(
                    f"tt.nir.load: {who} ({type(graph.nodes[name]).__name__}) does not take "
                    f"the output of the node before it, of shape {shape}: {error}"
                ) from None
        key = name.replace(".", "_") or "node"
        while key in modules:
            key += "_"
        modules[key] = module
    return NIRModel(modules)
