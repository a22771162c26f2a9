"""profile: per-layer input/output shapes, --csv, and `profile A B` side by side (profile_views.py)."""

from __future__ import annotations

import csv
import io
import json

from onnxprune.cli import main
from tests.tiny_models import conv_model

VGG = ("vgg16_cifar", "legacy", "kept")


def test_profile_json_and_table_show_input_and_output_shapes(tmp_path, capsys):
    model = str(conv_model(tmp_path / "a.onnx", cout=8, size=16))
    assert main(["profile", model, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["layers"]
    assert row["input_shape"] == [1, 3, 16, 16] and row["output_shape"] == [1, 8, 16, 16]
    assert main(["profile", model]) == 0
    out = capsys.readouterr().out
    assert "1x3x16x16" in out and "1x8x16x16" in out


def test_profile_csv_to_stdout_and_to_a_file(zoo_model, tmp_path, capsys):
    model = str(zoo_model(*VGG))
    assert main(["profile", model, "--csv", "-"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["node"] == "/features/features.0/Conv"
    assert rows[0]["input_shape"] == "1x3x32x32" and rows[0]["output_shape"] == "1x64x32x32"
    assert int(rows[0]["params"]) == 64 * 27 + 64
    path = tmp_path / "layers.csv"
    assert main(["profile", model, "--csv", str(path), "--sort", "flops", "--top", "3"]) == 0
    assert "FLOPs (MACs)" in capsys.readouterr().out  # the table is still printed
    written = list(csv.DictReader(path.open()))
    assert len(written) == 3 and int(written[0]["flops"]) >= int(written[2]["flops"])
    assert main(["profile", model, "--csv", str(tmp_path / "missing" / "x.csv")]) == 2


def test_profile_two_models_side_by_side(zoo_model, tmp_path, capsys):
    model, pruned = str(zoo_model(*VGG)), str(tmp_path / "p.onnx")
    assert main(["shrink", model, "--mode", "PA", "--target", "0.3", "-o", pruned, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert main(["profile", model, pruned, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["totals"]["params"]["a"] == report["before"]["params"]
    assert result["totals"]["params"]["b"] == report["after"]["params"]
    assert abs(result["totals"]["params"]["ratio"] - report["after"]["params"] / report["before"]["params"]) < 1e-9
    by_node = {row["node"]: row for row in result["layers"]}
    for changed in report["layers"]:
        row = by_node[changed["node"]]
        assert row["out_channels"]["a"] == changed["out_channels_before"]
        assert row["out_channels"]["b"] == changed["out_channels_after"]
        assert row["output_shape"]["b"][1] == changed["out_channels_after"]
    assert main(["profile", model, pruned]) == 0
    out = capsys.readouterr().out
    assert "→" in out and "ratio" in out and "total" in out


def test_profile_side_by_side_lists_layers_only_in_one_model(tmp_path, capsys):
    a = conv_model(tmp_path / "a.onnx", cout=8)
    import onnx

    model = onnx.load(str(a))
    model.graph.node[0].name = "renamed"
    onnx.save(model, str(tmp_path / "b.onnx"))
    assert main(["profile", str(a), str(tmp_path / "b.onnx"), "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert [(r["node"], r["params"]["a"] is None, r["params"]["b"] is None) for r in layers] == [
        ("Conv#0", False, True),
        ("renamed", True, False),
    ]
