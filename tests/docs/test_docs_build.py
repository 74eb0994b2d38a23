"""The documentation site builds without warnings, its code runs, and the API pages are complete.

Builds ``docs/`` with ``sphinx-build -W --keep-going`` twice, sharing one doctree cache: the
``html`` builder (figures of the plot directive included) and the ``doctest`` builder, which
runs every ``testcode`` / ``doctest`` block of the site.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PUBLIC_MODULES = [
    "tracetorch",
    "tracetorch.core",
    "tracetorch.snn",
    "tracetorch.rnn",
    "tracetorch.nn",
    "tracetorch.functional",
    "tracetorch.autograd",
    "tracetorch.testing",
]

pytest.importorskip("sphinx", reason="the docs extra (sphinx, furo) is not installed")
pytest.importorskip("furo", reason="the docs extra (sphinx, furo) is not installed")


def _sphinx(builder: str, outdir: Path, doctrees: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", builder, "-d"]
    command += [str(doctrees), str(DOCS), str(outdir)]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Build html then doctest into a temporary folder (once for this module)."""
    base = tmp_path_factory.mktemp("docs")
    doctrees = base / "doctrees"
    html = _sphinx("html", base / "html", doctrees)
    doctest = _sphinx("doctest", base / "doctest", doctrees)
    return {"base": base, "html": html, "doctest": doctest}


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit status {result.returncode}\n--- stdout ---\n{result.stdout[-6000:]}\n"
        f"--- stderr ---\n{result.stderr[-6000:]}"
    )


@pytest.mark.slow
def test_html_builds_without_warnings(build):
    result = build["html"]
    assert result.returncode == 0, _report(result)
    assert "WARNING" not in result.stderr, _report(result)
    html = build["base"] / "html"
    for page in ("index", "quickstart", "concepts", "snn_layers", "rnn_layers", "api/snn"):
        assert (html / f"{page}.html").is_file(), f"{page}.html was not written"


@pytest.mark.slow
def test_plot_directive_renders_figures_from_the_library(build):
    images = sorted((build["base"] / "html" / "_images").glob("snn_layers-*.png"))
    # LIF trace, one per firing kind (LI, LIB, LIT, LITS), the digits raster
    assert len(images) >= 6, [p.name for p in images]
    sizes = {p.name: p.stat().st_size for p in images}
    assert all(size > 5000 for size in sizes.values()), sizes


@pytest.mark.slow
def test_every_code_example_of_the_site_runs(build):
    result = build["doctest"]
    assert result.returncode == 0, _report(result)
    summary = (build["base"] / "doctest" / "output.txt").read_text()
    tests = re.search(r"^\s*(\d+) tests$", summary, re.MULTILINE)
    assert tests is not None, summary[-3000:]
    # the tutorials hold dozens of blocks; a handful would mean pages stopped being tested
    assert int(tests[1]) >= 50, summary[-3000:]
    assert re.search(r"^\s*0 failures in tests$", summary, re.MULTILINE), summary[-6000:]


def test_every_page_with_python_code_is_tested():
    """A page may not show Python in a plain ``code-block`` that the doctest builder skips."""
    offenders = []
    for page in DOCS.rglob("*.rst"):
        if "_build" in page.parts:
            continue
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if re.match(r"\s*\.\. code-block::\s*python", line) or re.match(r"\s*>>> ", line):
                offenders.append(f"{page.relative_to(DOCS)}:{number}: {line.strip()}")
    assert not offenders, "use testcode/testoutput or doctest blocks:\n" + "\n".join(offenders)


def _inventory(build) -> set[str]:
    from sphinx.util.inventory import InventoryFile

    path = build["base"] / "html" / "objects.inv"
    assert path.is_file(), "the html build wrote no objects.inv"
    with path.open("rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    data = getattr(inventory, "data", inventory)  # Sphinx >= 8.2 returns an _Inventory object
    return {name for role, entries in data.items() if role.startswith("py:") for name in entries}


@pytest.mark.slow
def test_api_reference_documents_every_public_name(build):
    """Each name of each public module's ``__all__`` has an entry in the API reference.

    A name re-exported from another public module (``tt.Layer`` is ``tt.core.Layer``) counts
    as documented where that module documents it.
    """
    assert build["html"].returncode == 0, _report(build["html"])
    documented = _inventory(build)
    modules = {name: importlib.import_module(name) for name in PUBLIC_MODULES}
    missing = []
    for module_name, module in modules.items():
        assert module_name in documented, f"module {module_name} has no API page"
        for name in module.__all__:
            obj = getattr(module, name)
            homes = [module_name] + [
                other
                for other, mod in modules.items()
                if name in getattr(mod, "__all__", ()) and getattr(mod, name, None) is obj
            ]
            if not any(f"{home}.{name}" in documented for home in homes):
                missing.append(f"{module_name}.{name}")
    assert not missing, "public names missing from the API reference: " + ", ".join(missing)
