"""examples/digits_rnn.py runs end to end in its quick mode and writes its figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "digits_rnn.py"


def test_digits_rnn_quick(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("digits_rnn_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.chdir(tmp_path)
    accuracy = example.main(["--quick"])
    assert isinstance(accuracy, float) and 0.0 <= accuracy <= 1.0
    for name in ("digits_rnn_training.png", "digits_rnn_hidden.png"):
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert capsys.readouterr().out.splitlines()[-1] == f"test accuracy: {accuracy:.3f}"
