"""Issue 25 item 2: an internal error is never a traceback: one stderr line that says so, names the
verb, the model and the check or code that failed, asks for `onnxprune version --json`; exit 70
(not 1, which CI reads as over budget); nothing left written. (The fuzz set plants such bugs too:
tests/cli/test_fuzz.py.)"""

from __future__ import annotations

from pathlib import Path

import onnx

from benchmarks.fuzz_models import ir3_net
from onnxprune.cli import main
from onnxprune.errors import INTERNAL_ERROR_EXIT

README = Path(__file__).resolve().parents[2] / "README.md"


def _ir3(tmp_path) -> Path:
    path = tmp_path / "zoo classic.onnx"
    onnx.save(ir3_net(), path)
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_surgery_rejected_by_the_checker_is_exit_70_naming_model_and_check(tmp_path, capsys, monkeypatch):
    """The zoo classics' crash, re-planted: the new shape initializer left out of IR 3's inputs."""
    import onnxprune.prune.surgery as surgery

    monkeypatch.setattr(surgery, "sync_initializer_inputs", lambda model, mirrored: None)
    path, out = _ir3(tmp_path), tmp_path / "out.onnx"
    rc = main(["shrink", str(path), "--mode", "FA", "--init", "keep", "-o", str(out), "--report", str(tmp_path / "r")])
    line = _one_line(capsys)
    assert rc == INTERNAL_ERROR_EXIT == 70
    assert line.startswith(f"onnxprune: internal error: shrink {path}: surgery produced a graph that the ONNX checker")
    assert "OC2_DUMMY_1__pruned_1 in initializer but not in graph input" in line
    assert "nothing was written" in line and "onnxprune version --json" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_failure_after_writing_removes_what_was_written(tmp_path, capsys, monkeypatch):
    import onnxprune.measure.compare_outputs as compare_outputs

    def broken(*args, **kwargs):
        raise KeyError("planted")

    monkeypatch.setattr(compare_outputs, "verify_shrink", broken)
    path = _ir3(tmp_path)
    args = ["shrink", str(path), "--mode", "FA", "--verify", "-o", str(tmp_path / "o.onnx")]
    assert main([*args, "--report", str(tmp_path / "r.json")]) == 70
    line = _one_line(capsys)
    assert "KeyError: 'planted' in verify_shrink" not in line  # the innermost frame of our own code is named
    assert "KeyError: 'planted' in shrink_command (onnxprune/cli/commands/shrink.py:" in line
    assert "removed what it had written" in line and str(tmp_path / "o.onnx") in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_unexpected_exception_in_a_read_only_verb_names_where(tmp_path, capsys, monkeypatch):
    from onnxprune.analysis.layer import Layer

    def broken(self, cin=None, cout=None):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(Layer, "cost", broken)
    path = _ir3(tmp_path)
    assert main(["profile", str(path)]) == 70
    line = _one_line(capsys)
    assert line.startswith(f"onnxprune: internal error: profile {path}: ZeroDivisionError: planted in ")
    assert "(onnxprune/analysis/complexity.py:" in line  # the innermost frame of our own code


def test_readme_documents_the_exit_code():
    text = " ".join(README.read_text().split())
    assert "70 an internal error" in text
