"""`verify A B` and `shrink --verify` (compare_outputs.py): polygraphy-style output checks."""

from __future__ import annotations

import copy
import json

import pytest

from onnxprune.cli import main
from onnxprune.errors import UserError
from onnxprune.measure.compare_outputs import ZERO_MASK_TOL, zero_mask_error
from tests.tiny_models import conv_model

VGG = ("vgg16_cifar", "legacy", "kept")


def test_verify_same_model_passes_with_zero_error(tmp_path, capsys):
    model = str(conv_model(tmp_path / "a.onnx"))
    assert main(["verify", model, model, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] and result["outputs"][0]["max_abs"] == 0.0
    assert result["outputs"][0]["shape_a"] == [1, 8, 16, 16]


def test_verify_fails_on_a_shape_mismatch(tmp_path, capsys):
    a, b = conv_model(tmp_path / "a.onnx", cout=8), conv_model(tmp_path / "b.onnx", cout=4)
    assert main(["verify", str(a), str(b), "--shapes-only"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "shape [1, 4, 16, 16] instead of [1, 8, 16, 16]" in captured.err


def test_verify_tolerance_and_shapes_only(zoo_model, tmp_path, capsys):
    source, pruned = str(zoo_model(*VGG)), str(tmp_path / "p.onnx")
    assert main(["shrink", source, "--mode", "PA", "--target", "0.5", "--init", "keep", "-o", pruned]) == 0
    capsys.readouterr()
    assert main(["verify", source, pruned, "--tol", "1e-4"]) == 1  # removed channels change the logits
    assert "max relative error" in capsys.readouterr().err
    assert main(["verify", source, pruned, "--shapes-only", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"]
    assert main(["verify", source, pruned, "--tol", "-1"]) == 2


@pytest.mark.parametrize("init", ["keep", "reinit"])
def test_shrink_verify_reports_the_zero_mask_error(zoo_model, tmp_path, capsys, init):
    source = str(zoo_model("resnet50_cifar", "dynamo", "folded"))
    report_path = tmp_path / "r.json"
    assert (
        main(
            [
                "shrink",
                source,
                "--mode",
                "FA",
                "--target",
                "0.5",
                "--init",
                init,
                "--verify",
                "-o",
                str(tmp_path / "p.onnx"),
                "--report",
                str(report_path),
                "--json",
            ]
        )
        == 0
    )
    check = json.loads(capsys.readouterr().out)["verify"]
    assert check["runs"] and check["shapes_match"] and not check["problems"]
    assert check["outputs"][0]["shape_a"] == check["outputs"][0]["shape_b"]
    if init == "keep":
        assert 0 <= check["zero_mask_max_rel_error"] < ZERO_MASK_TOL
    else:
        assert check["zero_mask_max_rel_error"] is None
    assert json.loads(report_path.read_text())["verify"] == check
    assert main(["shrink", source, "--mode", "FA", "--target", "0.5", "--init", init, "--verify", "--dry-run"]) == 0
    assert "verify: onnxruntime runs it: yes; output shapes match the original's: yes" in capsys.readouterr().out


def test_zero_mask_check_catches_a_wrong_cut(zoo_model, tmp_path, capsys):
    source, pruned = str(zoo_model(*VGG)), tmp_path / "p.onnx"
    assert (
        main(["shrink", source, "--mode", "PA", "--target", "0.5", "--init", "keep", "-o", str(pruned), "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert zero_mask_error(source, str(pruned), report) < ZERO_MASK_TOL
    wrong = copy.deepcopy(report)
    row = next(r for r in wrong["layers"] if r["op"] == "Conv")
    row["kept"] = [c for c in range(row["out_channels_before"]) if c not in set(row["kept"])][: len(row["kept"])]
    assert zero_mask_error(source, str(pruned), wrong) > ZERO_MASK_TOL


def test_verify_unreadable_model_is_exit_2(tmp_path, capsys):
    model = str(conv_model(tmp_path / "a.onnx"))
    assert main(["verify", model, str(tmp_path / "missing.onnx")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(UserError):
        zero_mask_error(model, str(tmp_path / "missing.onnx"), {"layers": []})
