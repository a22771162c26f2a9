"""Issue 25 item 7: `onnxprune shrink model.onnx --mode PA`, as the one-line description gives it,
works: --target defaults to 0.5 (half the chosen measure), the summary and --help say so, and
--budget stays the alternative."""

from __future__ import annotations

import json

import onnx

from benchmarks.fuzz_models import conv_net
from onnxprune.cli import main


def _model(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(conv_net(channels=(16, 32)), path)
    return path


def test_shrink_without_target_halves_the_measure_and_says_it_is_the_default(tmp_path, capsys):
    path = _model(tmp_path)
    assert main(["shrink", str(path), "--mode", "PA", "--report", str(tmp_path / "r.json")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "target 0.5, the default" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["target"] == 0.5 and report["target_from"] == "default"
    assert report["after"]["params"] <= 0.5 * report["before"]["params"]
    assert (tmp_path / "tiny.PA-0.5.onnx").exists()  # the default output name carries the target


def test_given_target_and_budget_are_named_as_given(tmp_path, capsys):
    path = _model(tmp_path)
    assert main(["shrink", str(path), "--mode", "FA", "--target", "0.7", "-o", str(tmp_path / "a.onnx")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "target 0.7," in out and "the default" not in out
    assert main(["shrink", str(path), "--mode", "PA", "--budget", "2k", "-o", str(tmp_path / "b.onnx")]) == 0
    assert "budget 2k" in " ".join(capsys.readouterr().out.split())
    assert main(["shrink", str(path), "--mode", "PA", "--target", "0.5", "--budget", "2k"]) == 2


def test_help_gives_the_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    main(["shrink", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default 0.5 (half the chosen measure) unless --budget is given" in text
