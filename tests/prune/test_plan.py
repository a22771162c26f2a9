"""shrink --dry-run writes nothing; groups shows each group's share and draw probability (plan.py)."""

from __future__ import annotations

import json

import pytest

from onnxprune.cli import main

VGG = ("vgg16_cifar", "legacy", "kept")


def test_dry_run_prints_the_report_and_writes_nothing(zoo_model, tmp_path, capsys):
    source = tmp_path / "vgg.onnx"
    source.write_bytes(zoo_model(*VGG).read_bytes())
    args = ["shrink", str(source), "--mode", "PA", "--target", "0.3", "--report", str(tmp_path / "r.json")]
    assert main([*args, "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is True and report["output"] is None and report["layers"]
    assert report["after"]["params"] <= 0.3 * report["before"]["params"]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing written" in out and "params" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vgg.onnx"]
    assert main([*args, "--json"]) == 0  # the same run for real: the same plan
    real = json.loads(capsys.readouterr().out)
    assert real["layers"] == report["layers"] and real["after"] == report["after"]


def test_groups_json_has_shares_and_draw_probabilities(zoo_model, capsys):
    assert main(["groups", str(zoo_model("resnet50_cifar", "legacy", "kept")), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    for figure in ("params", "flops", "memory_bytes"):
        assert sum(g["share"][figure] for g in groups) == pytest.approx(1.0)
        assert all(0 <= g["share"][figure] <= 1 for g in groups)
    for mode in ("PA", "FA", "MA"):
        assert sum(g["draw_probability"][mode] for g in groups if g["prunable"]) == pytest.approx(1.0)
    assert all("draw_probability" not in g for g in groups if not g["prunable"])
    biggest = max(groups, key=lambda g: g["share"]["flops"])
    assert biggest["share"]["flops"] > 0.02


def test_groups_table_shows_share_columns(zoo_model, capsys):
    assert main(["groups", str(zoo_model(*VGG))]) == 0
    out = capsys.readouterr().out
    assert "params %" in out and "FLOPs %" in out and "memory %" in out
