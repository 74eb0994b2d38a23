"""What a new user meets first: a light import and help() texts that describe our layers."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

import tracetorch as tt

GENERIC = ("Define the computation performed", "Initialize internal Module state")


def test_import_does_not_load_dynamo_or_matplotlib():
    # torch._dynamo costs seconds to import; tracetorch must not pay it (nor matplotlib's)
    code = (
        "import sys, tracetorch; print('torch._dynamo' in sys.modules, 'matplotlib' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def _public_modules():
    for namespace in (tt.snn, tt.rnn, tt.nn):
        for name in namespace.__all__:
            cls = getattr(namespace, name)
            if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
                yield cls


@pytest.mark.parametrize("cls", list(_public_modules()), ids=lambda c: c.__name__)
def test_help_shows_our_text_not_torchs_generic_one(cls):
    for method in ("__init__", "forward", "forward_sequence"):
        if hasattr(cls, method):
            doc = inspect.getdoc(getattr(cls, method)) or ""
            assert doc and not any(text in doc for text in GENERIC), f"{cls.__name__}.{method}"
