"""The one walk through a module tree, for zero_states, sequence mode and the like."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["find_modules"]


def find_modules(
    module: nn.Module, match: Callable[[nn.Module], bool], enter_matches: bool = True
) -> list[nn.Module]:
    """The modules under ``module`` (itself included) for which ``match`` is true.

    In the order of ``module.named_modules()``, each module once however often it is
    registered, but without the path strings ``named_modules`` builds: this runs once per
    sequence (:func:`~tracetorch.zero_states`, :func:`~tracetorch.run`), where its time counts.

    Args:
        module: The root of the tree.
        match: Which modules to return.
        enter_matches: Also look inside the modules that match (``False``: only the
            outermost matches are returned).
    """
    found: list[nn.Module] = []
    seen: set[int] = set()
    pending: list[nn.Module | None] = [module]
    while pending:
        sub = pending.pop()
        if sub is None or id(sub) in seen:
            continue
        seen.add(id(sub))
        if match(sub):
            found.append(sub)
            if not enter_matches:
                continue
        if sub._modules:
            pending.extend(reversed(sub._modules.values()))
    return found
