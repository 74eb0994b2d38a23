"""Local Sphinx extension: tables generated from the library itself, so they cannot go stale.

``.. snn-family-table::`` renders every name of the ``[D][S][R]LI<kind>`` family with its
switches, constructor parameters and hidden states, read from the classes in
:mod:`tracetorch.snn`.
"""

from __future__ import annotations

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

_FIRING = {"none": "membrane", "binary": "0/1", "ternary": "-1/0/+1", "scaled": "scaled ±"}


def _family_names() -> list[str]:
    from tracetorch.snn import family

    return list(family.NAMES)


class SNNFamilyTable(SphinxDirective):
    """A list-table of the whole leaky-integrator family."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        import tracetorch as tt
        from tracetorch.snn.leaky import state_names

        def mark(flag: bool) -> str:
            return "✓" if flag else ""

        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 11 4 4 4 6 10 38 23",
            "",
            "   * - name",
            "     - D",
            "     - S",
            "     - R",
            "     - EMA",
            "     - output",
            "     - parameters (constructor order)",
            "     - states",
        ]
        for name in _family_names():
            cls = getattr(tt.snn, name)
            config = cls.config
            params = ", ".join(f"``{spec.name}``" for spec in cls.specs)
            states = ", ".join(f"``{state}``" for state in state_names(config))
            lines += [
                f"   * - :class:`~tracetorch.snn.{name}`",
                f"     - {mark(config.dual)}",
                f"     - {mark(config.synaptic)}",
                f"     - {mark(config.recurrent)}",
                f"     - {mark(config.ema)}",
                f"     - {_FIRING[config.firing]}",
                f"     - {params}",
                f"     - {states}",
            ]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="snn-family-table"), 0, container)
        return container.children


def _attribute_doc(fullname: str) -> list[str] | None:
    """The ``#:`` comment or string literal documenting a module constant where it is defined.

    ``fullname`` is the public path (``tracetorch.autograd.SURROGATES``); the constant is
    usually defined in a submodule of that package, whose source is searched.
    """
    import importlib
    import pkgutil

    from sphinx.pycode import ModuleAnalyzer

    package_name, _, name = fullname.rpartition(".")
    package = importlib.import_module(package_name)
    candidates = [package_name]
    if hasattr(package, "__path__"):
        candidates += [f"{package_name}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    for module_name in candidates:
        try:
            docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        except Exception:  # a module without source: nothing to find there
            continue
        if ("", name) in docs:
            return list(docs[("", name)])
    return None


def _data_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """Module constants: never show the docstring of their type (``dict``, ``tuple``)."""
    if what != "data":
        return
    type_doc = type(obj).__doc__ or ""
    if lines and "\n".join(lines).strip().startswith(type_doc.strip().splitlines()[0]):
        lines[:] = _attribute_doc(name) or []


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("snn-family-table", SNNFamilyTable)
    app.connect("autodoc-process-docstring", _data_docstring)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
