"""benchmarks/onnxprune_cli.py: the benchmarks' one way to call the CLI, and what a failure carries."""

from __future__ import annotations

import pytest

from benchmarks.onnxprune_cli import CliFailed, run_json
from tests.tiny_models import conv_model


def test_json_of_a_good_run(tmp_path):
    model = conv_model(tmp_path / "conv.onnx", cout=8)
    assert run_json("profile", str(model))["totals"]["params"] == 8 * 27 + 8


def test_a_bad_input_raises_with_its_one_line_reason(tmp_path):
    missing = tmp_path / "absent.onnx"
    with pytest.raises(CliFailed) as failed:
        run_json("profile", str(missing))
    assert failed.value.returncode == 2
    assert str(missing) in failed.value.reason and "\n" not in failed.value.reason
    assert str(failed.value).startswith(f"onnxprune profile {missing} failed: ")
