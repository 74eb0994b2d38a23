"""Every script in ``examples/`` runs with ``--quick``, writes a figure and reports its result.

Each example is run as a user would run it (``python examples/NAME.py --quick``), in a
subprocess whose working directory is a fresh temporary folder, so that the PNG files it
saves there can be found and nothing lands in the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
ACCURACY_LINE = re.compile(r"^test accuracy: (0\.\d{3}|1\.000)$", re.MULTILINE)


def test_the_examples_folder_is_not_empty():
    names = {path.name for path in EXAMPLES}
    assert {"digits_snn.py", "custom_autograd.py", "quickstart.py"} <= names, sorted(names)


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_follows_the_conventions(script: Path):
    source = script.read_text()
    assert re.search(r"^def main\(argv: .*= None\)", source, re.MULTILINE), (
        f"{script.name}: expected a `def main(argv: list[str] | None = None)` entry point"
    )
    assert 'if __name__ == "__main__":' in source, f"{script.name}: no __main__ guard"
    assert "--quick" in source, f"{script.name}: no --quick option"
    assert "tqdm" in source, f"{script.name}: no tqdm progress bar"


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs_quickly_and_saves_a_figure(script: Path, tmp_path: Path):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(script), "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    report = f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{script.name} exited with {result.returncode}\n{report}"
    figures = sorted(tmp_path.glob("*.png"))
    assert figures, f"{script.name} saved no PNG in the working directory\n{report}"
    assert all(path.stat().st_size > 1000 for path in figures), figures
    if script.stem.startswith("digits"):
        assert ACCURACY_LINE.search(result.stdout), (
            f"{script.name} printed no line 'test accuracy: 0.xxx'\n{report}"
        )
