"""Gradient checking that says which input is wrong and by how much."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd import forward_ad
from torch.autograd.gradcheck import GradcheckError

__all__ = ["GradientCheckError", "check_function"]


class GradientCheckError(AssertionError):
    """A function's derivative (its backward, or its jvp) disagrees with finite differences.

    Attributes:
        order: 1 for the gradient (or, with ``check_forward``, the forward-mode derivative),
            2 for the gradient of the gradient.
        input_index: Position of the offending input among the checked function's inputs, or
            None when the culprit is not one of them (a ``grad_output`` at order 2, or a
            failure reported by torch's own extra checks).
        input_name: The offending input's name if names were given, else None.
        max_abs_diff: Largest ``|analytical - numerical|`` over that input's Jacobian, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        order: int,
        input_index: int | None = None,
        input_name: str | None = None,
        max_abs_diff: float | None = None,
    ) -> None:
        super().__init__(message)
        self.order = order
        self.input_index = input_index
        self.input_name = input_name
        self.max_abs_diff = max_abs_diff


def _outputs(result: Any) -> list[Tensor]:
    """The floating-point tensors among a function's outputs, in order."""
    items = result if isinstance(result, (tuple, list)) else (result,)
    return [t for t in items if isinstance(t, Tensor) and t.is_floating_point()]


def _analytical_jacobians(fn: Callable[..., Any], args: list[Any], wrt: list[int]) -> list[Tensor]:
    """``d(flat outputs) / d(flat args[i])`` for each ``i`` in ``wrt``, one backward per row."""
    outputs = _outputs(fn(*args))
    n_rows = sum(o.numel() for o in outputs)
    jacobians = [args[i].new_zeros(n_rows, args[i].numel()) for i in wrt]
    row = 0
    for out in outputs:
        for e in range(out.numel()):
            if out.requires_grad:
                seed = torch.zeros(out.numel(), dtype=out.dtype, device=out.device)
                seed[e] = 1
                grads = torch.autograd.grad(
                    out,
                    [args[i] for i in wrt],
                    seed.view(out.shape),
                    retain_graph=True,
                    allow_unused=True,
                )
                for jacobian, grad in zip(jacobians, grads, strict=True):
                    if grad is not None:
                        jacobian[row] = grad.reshape(-1)
            row += 1
    return jacobians


def _forward_jacobians(fn: Callable[..., Any], args: list[Any], wrt: list[int]) -> list[Tensor]:
    """``d(flat outputs) / d(flat args[i])`` for each ``i`` in ``wrt``, one jvp per column.

    Each column is the tangent of the outputs when ``args[i]`` carries a one-hot tangent
    (dual tensors of ``torch.autograd.forward_ad``); an output without one counts as zero.
    """
    plain = [a.detach() if isinstance(a, Tensor) else a for a in args]
    jacobians = []
    for i in wrt:
        columns = []
        for e in range(plain[i].numel()):
            tangent = torch.zeros_like(plain[i], memory_format=torch.contiguous_format)
            tangent.view(-1)[e] = 1
            with forward_ad.dual_level():
                dual = list(plain)
                dual[i] = forward_ad.make_dual(plain[i], tangent)
                try:
                    outputs = _outputs(fn(*dual))
                except NotImplementedError as err:  # a Function without a jvp
                    raise GradientCheckError(
                        f"forward-mode derivative (jvp) w.r.t. input {i} could not be "
                        f"computed: {err}",
                        order=1,
                        input_index=i,
                    ) from err
                tangents = [forward_ad.unpack_dual(o).tangent for o in outputs]
                column = [
                    (torch.zeros_like(o) if t is None else t).reshape(-1)
                    for o, t in zip(outputs, tangents, strict=True)
                ]
            columns.append(torch.cat(column).detach())
        jacobians.append(torch.stack(columns, dim=1))
    return jacobians


def _numerical_jacobians(
    fn: Callable[..., Any], args: list[Any], wrt: list[int], eps: float
) -> list[Tensor]:
    """``d(flat outputs) / d(flat args[i])`` for each ``i`` in ``wrt``, by central differences."""

    def flat_outputs(i: int, value: Tensor) -> Tensor:
        shifted = list(args)
        shifted[i] = value.requires_grad_(args[i].requires_grad)
        return torch.cat([o.detach().reshape(-1) for o in _outputs(fn(*shifted))])

    jacobians = []
    for i in wrt:
        base = args[i].detach().clone(memory_format=torch.contiguous_format)
        columns = []
        for e in range(base.numel()):
            plus, minus = base.clone(), base.clone()
            plus.view(-1)[e] += eps
            minus.view(-1)[e] -= eps
            columns.append((flat_outputs(i, plus) - flat_outputs(i, minus)) / (2 * eps))
        jacobians.append(torch.stack(columns, dim=1))
    return jacobians


def _compare_jacobians(
    fn: Callable[..., Any],
    args: list[Any],
    wrt: list[int],
    labels: list[str],
    *,
    order: int,
    n_inputs: int,
    names: Sequence[str] | None,
    atol: float,
    rtol: float,
    eps: float,
    forward: bool = False,
) -> None:
    """Raises :class:`GradientCheckError` for the first of ``wrt`` whose Jacobians disagree.

    ``args[:n_inputs]`` are the user's inputs; any further args are ``grad_output`` seeds.
    ``forward``: the analytical Jacobians come from forward mode (jvp), not the backward.
    """
    analytical = (_forward_jacobians if forward else _analytical_jacobians)(fn, args, wrt)
    numerical = _numerical_jacobians(fn, args, wrt, eps)
    for i, a, n in zip(wrt, analytical, numerical, strict=True):
        diff = (a - n).abs()
        wrong = ~(diff <= atol + rtol * n.abs())  # a NaN on either side counts as wrong
        if not wrong.any():
            continue
        worst = torch.where(wrong, diff.nan_to_num(nan=torch.inf), 0).argmax()
        row, col = divmod(int(worst), diff.shape[1])
        max_diff = diff[row, col].item()
        what = "gradient" if order == 1 else "second-order gradient (gradgradcheck)"
        if forward:
            what = "forward-mode derivative (jvp)"
        raise GradientCheckError(
            f"{what} w.r.t. {labels[i]} is wrong: max |analytical - numerical| = {max_diff:.3g} "
            f"at output element {row}, input element {col} (analytical {a[row, col].item():.6g}, "
            f"numerical {n[row, col].item():.6g}; atol={atol}, rtol={rtol})",
            order=order,
            input_index=i if i < n_inputs else None,
            input_name=names[i] if names is not None and i < n_inputs else None,
            max_abs_diff=max_diff,
        )


def _compare_subsets(
    fn: Callable[..., Any],
    args: list[Any],
    wrt: list[int],
    labels: list[str],
    *,
    names: Sequence[str] | None,
    atol: float,
    rtol: float,
    more: Collection[frozenset[int]] = (),
) -> None:
    """The gradients when only some inputs require grad equal those when all of them do.

    A backward that branches on ``ctx.needs_input_grad`` has a path for each combination;
    the Jacobians above test only the one where every input requires grad. Here each input
    in turn is left out (the others require grad), and each is the only one that requires
    grad (as a weight is, where the input is data): one backward per combination, with the
    same random ``grad_output``, compared with the gradients of the full set; ``more``
    names further subsets to try.
    """
    if len(wrt) < 2:
        return
    seeds = [torch.randn_like(o) for o in _outputs(fn(*args))]

    def gradients(subset: frozenset[int]) -> dict[int, Tensor]:
        sub = [
            a.detach().requires_grad_(i in subset) if i in wrt else a for i, a in enumerate(args)
        ]
        pairs = [(o, s) for o, s in zip(_outputs(fn(*sub)), seeds, strict=True) if o.requires_grad]
        ordered = sorted(subset)
        grads = [None] * len(ordered)
        if pairs:
            outs, grad_outs = zip(*pairs, strict=True)
            inputs = [sub[i] for i in ordered]
            grads = torch.autograd.grad(outs, inputs, grad_outs, allow_unused=True)
        return {
            i: torch.zeros_like(sub[i]) if g is None else g
            for i, g in zip(ordered, grads, strict=True)
        }

    every = gradients(frozenset(wrt))
    subsets = {frozenset(wrt) - {i} for i in wrt} | {frozenset({i}) for i in wrt} | set(more)
    subsets -= {frozenset(), frozenset(wrt)}
    for subset in sorted(subsets, key=sorted):
        for j, grad in gradients(subset).items():
            diff = (grad - every[j]).abs()
            if (diff <= atol + rtol * every[j].abs()).all():
                continue
            max_diff = diff.nan_to_num(nan=torch.inf).max().item()
            which = ", ".join(labels[k] for k in sorted(subset))
            verb = "requires" if len(subset) == 1 else "require"
            raise GradientCheckError(
                f"gradient w.r.t. {labels[j]} is wrong when only {which} {verb} grad: max "
                f"|diff| = {max_diff:.3g} against the gradient when every input requires grad "
                f"(does it branch on requires_grad, or its backward on ctx.needs_input_grad?)",
                order=1,
                input_index=j,
                input_name=names[j] if names is not None else None,
                max_abs_diff=max_diff,
            )


def _torch_check(
    check: Callable[..., bool], fn: Callable[..., Any], args: list[Any], order: int, **options: Any
) -> None:
    """Runs torch's gradcheck or gradgradcheck (their extra checks) and re-raises as ours."""
    try:
        check(fn, tuple(args), raise_exception=True, **options)
    except GradcheckError as err:
        raise GradientCheckError(
            f"torch.autograd.{check.__name__} failed: {err}", order=order
        ) from err


def check_function(
    fn: Callable[..., Any],
    *inputs: Any,
    names: Sequence[str] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    eps: float = 1e-6,
    check_gradgrad: bool = True,
    check_forward: bool = False,
) -> bool:
    """Checks the gradients of ``fn`` against finite differences, input by input.

    Floating-point tensors in ``inputs`` are copied to float64 with ``requires_grad=True``;
    anything else (ints, floats, strings, integer tensors) is passed to ``fn`` unchanged. For
    each such tensor the analytical Jacobian (from ``fn``'s backward) is compared with a
    central-difference Jacobian, then :func:`torch.autograd.gradcheck` runs its extra checks
    (undefined gradients, reentrancy), and the gradients are computed again with only some
    inputs requiring grad (each one left out, and each one alone), which must not change
    them (a backward that branches on ``ctx.needs_input_grad``). With ``check_gradgrad``
    the same happens one order higher, on the map ``(inputs, grad_outputs) -> gradients``, followed by
    :func:`torch.autograd.gradgradcheck`. With ``check_forward`` the forward-mode derivative
    (a Function's ``jvp``, what dual tensors and ``torch.func.jacfwd`` use) is checked the same
    way, followed by ``gradcheck(check_forward_ad=True)``. Keep inputs small: the cost grows
    with the product of input and output sizes.

    Args:
        fn: Function of ``inputs`` returning a tensor or a tuple of tensors.
        *inputs: Arguments of ``fn``.
        names: Optional names of the inputs (one per input), used in error messages.
        atol: Absolute tolerance on each Jacobian entry.
        rtol: Tolerance relative to the numerical Jacobian entry.
        eps: Finite-difference step.
        check_gradgrad: Also check second-order gradients.
        check_forward: Also check the forward-mode derivative (for a Function with a
            ``jvp``; off by default, since a Function without one fails it with a
            :class:`GradientCheckError`).

    Returns:
        True if every check passes.

    Raises:
        GradientCheckError: If a gradient is wrong; the message names the input (index and
            name) and the largest absolute difference between the two Jacobians.
        ValueError: If there is nothing to check, or ``names`` does not match ``inputs``.

    Example:
        >>> from tracetorch.autograd import clipped_relu
        >>> check_function(clipped_relu, torch.tensor([-1.0, 0.5, 1.5]), 2.0)
        True
        >>> # the value is x, but the detach trick makes the gradient 2
        >>> check_function(lambda x: 2 * x - x.detach(), torch.ones(2), names=["x"])
        Traceback (most recent call last):
        ...
        tracetorch.testing.check_function.GradientCheckError: gradient w.r.t. input 0 ('x') is wrong: max |analytical - numerical| = 1 at output element 0, input element 0 (analytical 2, numerical 1; atol=1e-05, rtol=0.001)
    """  # noqa: E501
    if names is not None and len(names) != len(inputs):
        raise ValueError(
            f"check_function: got {len(inputs)} inputs but {len(names)} names; "
            "give one name per input"
        )
    args = [
        x.detach().to(torch.float64).requires_grad_()
        if isinstance(x, Tensor) and x.is_floating_point()
        else x
        for x in inputs
    ]
    wrt = [i for i, x in enumerate(args) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError(
            "check_function: no floating-point tensor among the inputs, nothing to check"
        )
    outputs = _outputs(fn(*args))
    if not outputs:
        raise ValueError("check_function: fn returned no floating-point tensor, nothing to check")
    with torch.random.fork_rng():  # the random grad_outputs below leave the caller's RNG alone
        torch.manual_seed(0)
        _run_checks(
            fn,
            args,
            wrt,
            outputs,
            names,
            atol=atol,
            rtol=rtol,
            eps=eps,
            check_gradgrad=check_gradgrad,
            check_forward=check_forward,
        )
    return True


def _run_checks(
    fn: Callable[..., Any],
    args: list[Any],
    wrt: list[int],
    outputs: list[Tensor],
    names: Sequence[str] | None,
    *,
    atol: float,
    rtol: float,
    eps: float,
    check_gradgrad: bool,
    check_forward: bool,
) -> None:
    """The checks of :func:`check_function` on prepared (float64, requires_grad) args."""
    labels = [
        f"input {i}" + ("" if names is None else f" ({names[i]!r})") for i in range(len(args))
    ]
    options = dict(names=names, atol=atol, rtol=rtol, eps=eps, n_inputs=len(args))

    _compare_jacobians(fn, args, wrt, labels, order=1, **options)
    _torch_check(torch.autograd.gradcheck, fn, args, order=1, atol=atol, rtol=rtol, eps=eps)
    _compare_subsets(fn, args, wrt, labels, names=names, atol=atol, rtol=rtol)
    if check_forward:
        _compare_jacobians(fn, args, wrt, labels, order=1, forward=True, **options)
        _torch_check(
            torch.autograd.gradcheck,
            fn,
            args,
            order=1,
            atol=atol,
            rtol=rtol,
            eps=eps,
            check_forward_ad=True,
            check_backward_ad=False,
        )
    if not check_gradgrad:
        return

    seeds = [torch.randn_like(o).requires_grad_() for o in outputs]

    def backward(*fn_args_and_seeds: Any) -> tuple[Tensor, ...]:
        fn_args, seeds_ = fn_args_and_seeds[: len(args)], fn_args_and_seeds[len(args) :]
        pairs = [
            (o, s) for o, s in zip(_outputs(fn(*fn_args)), seeds_, strict=True) if o.requires_grad
        ]
        grads = [None] * len(wrt)
        if pairs:
            outs, grad_outs = zip(*pairs, strict=True)
            wrt_args = [fn_args[i] for i in wrt]
            grads = torch.autograd.grad(
                outs, wrt_args, grad_outs, create_graph=True, allow_unused=True
            )
        return tuple(
            torch.zeros_like(fn_args[i]) if g is None else g
            for i, g in zip(wrt, grads, strict=True)
        )

    all_wrt = wrt + [len(args) + k for k in range(len(seeds))]
    all_labels = labels + [f"grad_output {k}" for k in range(len(seeds))]
    _compare_jacobians(backward, args + seeds, all_wrt, all_labels, order=2, **options)
    _torch_check(torch.autograd.gradgradcheck, fn, args, order=2, atol=atol, rtol=rtol, eps=eps)
