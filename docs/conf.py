"""Sphinx configuration of the tracetorch documentation.

Build locally (from the repository root)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

The second command runs every ``testcode`` / ``doctest`` block of the site; a page whose code
no longer runs fails it. Nothing is fetched from the network.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are rendered off-screen, during the build

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package itself, also when it is not installed
sys.path.insert(0, str(ROOT / "docs" / "_ext"))  # local extensions

import tracetorch  # noqa: E402

# -- Project ---------------------------------------------------------------------------------

project = "tracetorch"
author = "The tracetorch developers"
copyright = "The tracetorch developers"
release = tracetorch.__version__
version = ".".join(release.split(".")[:2])

# -- General ---------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "matplotlib.sphinxext.plot_directive",
    "ttdocs",
]
# No intersphinx: the build must not reach the network.

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
default_role = "code"
# Light and dark code styles that read well on furo's backgrounds.
pygments_style = "friendly"
pygments_dark_style = "monokai"

# -- autodoc / napoleon ----------------------------------------------------------------------

autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_typehints_format = "short"
autodoc_class_signature = "mixed"
# nn.Module / autograd.Function methods would otherwise inherit PyTorch's docstrings.
autodoc_inherit_docstrings = False

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as a field list, not as duplicate object entries
napoleon_use_rtype = False
napoleon_custom_sections = ["Shape"]

# -- doctest ---------------------------------------------------------------------------------

# The site's code lives in ``testcode`` / ``doctest`` directives, all of which run. Plain
# ``>>>`` blocks come from docstrings (through autodoc); pytest ``--doctest-modules`` runs
# those in their own module's namespace, so they are not run a second time here.
doctest_test_doctest_blocks = ""
doctest_global_setup = """
import os
os.environ.setdefault("MPLBACKEND", "Agg")
import torch
torch.manual_seed(0)
"""

# -- plot directive ---------------------------------------------------------------------------

plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
# 200 dpi: a 6-inch figure is 1200 pixels wide, which the theme scales down to the text
# width, so it stays sharp on high-density screens and when zoomed in.
plot_formats = [("png", 200)]
plot_rcparams = {"figure.figsize": (6.0, 3.2), "figure.dpi": 200, "font.size": 9}
plot_pre_code = "import numpy as np\nimport torch\nimport matplotlib.pyplot as plt\n"
plot_working_directory = str(ROOT)

# -- HTML ------------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"tracetorch {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

os.environ.setdefault("MPLBACKEND", "Agg")
