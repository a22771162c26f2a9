"""shrink --exclude / --max-ratio (protect.py): protected layers keep their channels, the report says so."""

from __future__ import annotations

import json

import onnxprune
from onnxprune.cli import main

VGG = ("vgg16_cifar", "legacy", "kept")
FIRST_CONV = "/features/features.0/Conv"


def _shrink_json(capsys, *args) -> dict:
    assert main(["shrink", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _changed(report: dict) -> dict:
    return {row["node"]: row for row in report["layers"]}


def test_exclude_by_op_type_keeps_every_gemm_and_reports_it(zoo_model, tmp_path, capsys):
    model = str(zoo_model(*VGG))
    plain = _shrink_json(capsys, model, "--mode", "PA", "--target", "0.2", "-o", str(tmp_path / "a.onnx"))
    assert any(row["op"] == "Gemm" for row in plain["layers"])  # unprotected, the classifier is cut
    report = _shrink_json(
        capsys, model, "--mode", "PA", "--target", "0.2", "--exclude", "op:Gemm", "-o", str(tmp_path / "b.onnx")
    )
    assert not any(row["op"] == "Gemm" for row in report["layers"])
    assert report["after"]["params"] <= 0.2 * report["before"]["params"]
    (note,) = report["protected"]
    assert note["option"] == "--exclude" and note["pattern"] == "op:Gemm"
    assert len(note["nodes"]) == 3 and note["groups"]


def test_exclude_by_name_glob_and_table_lists_it(zoo_model, tmp_path, capsys):
    model = str(zoo_model(*VGG))
    assert (
        main(
            [
                "shrink",
                model,
                "--mode",
                "FA",
                "--target",
                "0.3",
                "--exclude",
                "/features/features.0/*",
                "--exclude",
                "/features/features.3/Conv",
                "-o",
                str(tmp_path / "c.onnx"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "--exclude /features/features.0/*" in out and "not pruned" in out
    pruned = onnxprune.profile(str(tmp_path / "c.onnx")).rows()
    by_node = {r["node"]: r["out_channels"] for r in pruned}
    assert by_node[FIRST_CONV] == 64 and by_node["/features/features.3/Conv"] == 64


def test_max_ratio_limits_one_layer(zoo_model, tmp_path, capsys):
    model = str(zoo_model(*VGG))
    layer = "/features/features.40/Conv"  # 512 channels
    args = [model, "--mode", "PA", "--target", "0.2", "--round-to", "1"]
    plain = _changed(_shrink_json(capsys, *args, "-o", str(tmp_path / "d.onnx")))
    assert plain[layer]["out_channels_after"] < 359  # unprotected it loses more than 30%
    limited = _shrink_json(capsys, *args, "--max-ratio", f"{layer}=0.3", "-o", str(tmp_path / "e.onnx"))
    assert _changed(limited).get(layer, {"out_channels_after": 512})["out_channels_after"] >= 359  # ceil(0.7*512)
    assert limited["after"]["params"] <= 0.2 * limited["before"]["params"]
    assert limited["protected"][0]["max_ratio"] == 0.3


def test_pattern_matching_nothing_or_bad_ratio_is_one_line_exit_2(zoo_model, tmp_path, capsys):
    model = str(zoo_model(*VGG))
    for extra in (["--exclude", "no_such_layer*"], ["--max-ratio", f"{FIRST_CONV}=1.5"], ["--max-ratio", "0.3"]):
        assert main(["shrink", model, "--mode", "PA", "--target", "0.5", "-o", str(tmp_path / "f.onnx"), *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("onnxprune: error:")
        assert not (tmp_path / "f.onnx").exists()
