"""`verify A B` and `shrink --verify` (compare_outputs.py): polygraphy-style output checks."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

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


def _two_convs(path, batch: int = 1, unrunnable: bool = False):
    """Conv(3->8) -> Relu -> Conv(8->4): the first conv's channels are prunable. `unrunnable` adds an
    int64 input that indexes a 1-element table: onnxruntime fails on every random feed (1..9)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in (("w1", (8, 3, 3, 3)), ("w2", (4, 8, 3, 3)), ("table", (1,)))
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, 8, 8])]
    if unrunnable:
        nodes.append(helper.make_node("Gather", ["table", "idx"], ["z"], name="lookup"))
        inputs.append(helper.make_tensor_value_info("idx", TensorProto.INT64, [1]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1]))
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def test_verify_feeds_a_fixed_batch_as_declared(tmp_path, capsys):
    """verify and shrink --verify have no --batch flag: a model exported at batch 4 is fed at batch 4
    (they used to refuse it, advising a `--batch 4` neither verb has)."""
    source, pruned = _two_convs(tmp_path / "b4.onnx", batch=4), str(tmp_path / "p.onnx")
    assert main(["verify", source, source]) == 0
    capsys.readouterr()
    args = ["shrink", source, "--mode", "PA", "--target", "0.6", "--init", "keep", "--round-to", "1"]
    assert main([*args, "--verify", "--json", "-o", pruned]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verify"]["runs"] and result["verify"]["zero_mask_max_rel_error"] < ZERO_MASK_TOL


def test_shrink_verify_that_cannot_run_leaves_nothing_written(tmp_path, capsys):
    source, pruned, report = _two_convs(tmp_path / "u.onnx", unrunnable=True), tmp_path / "p.onnx", tmp_path / "r.json"
    args = ["shrink", source, "--mode", "PA", "--target", "0.6", "--init", "keep", "-o", str(pruned)]
    assert main([*args, "--report", str(report)]) == 0 and pruned.exists()  # the pruning itself works
    pruned.unlink(), report.unlink()
    capsys.readouterr()
    assert main([*args, "--report", str(report), "--verify"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--verify could not run, so nothing was written" in err
    assert not pruned.exists() and not report.exists()


def _paired_channels(path):
    """An STFT-like front end (silero-vad): Conv1d with 8 channels whose halves are the real and imaginary
    parts, re^2 + im^2 -> 4 channels, then Conv1d(4 -> 2). Channel i pairs with channel i + 4."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in (("w1", (8, 1, 4)), ("w2", (2, 4, 1)))
    ]
    inits += [
        numpy_helper.from_array(np.array(v, dtype=np.int64), n)
        for n, v in (("s0", [0]), ("s4", [4]), ("s8", [8]), ("ax", [1]))
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["stft"], name="stft", strides=[2]),
        helper.make_node("Slice", ["stft", "s0", "s4", "ax"], ["re"], name="re"),
        helper.make_node("Slice", ["stft", "s4", "s8", "ax"], ["im"], name="im"),
        helper.make_node("Mul", ["re", "re"], ["re2"], name="re2"),
        helper.make_node("Mul", ["im", "im"], ["im2"], name="im2"),
        helper.make_node("Add", ["re2", "im2"], ["power"], name="power"),
        helper.make_node("Conv", ["power", "w2"], ["y"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 31])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def test_zero_mask_oracle_reads_paired_channels_as_their_group(tmp_path, capsys):
    """The report lists the conv's kept channels (6 of 8: three re/im pairs); the oracle must mask the
    removed pair, not read 6 channel indices as positions of a 4-class group (it reported 0.77 on silero)."""
    source, pruned = _paired_channels(tmp_path / "stft.onnx"), str(tmp_path / "p.onnx")
    args = [
        "shrink",
        source,
        "--mode",
        "PA",
        "--target",
        "0.8",
        "--init",
        "keep",
        "--criterion",
        "l1",
        "--round-to",
        "1",
    ]
    assert main([*args, "--verify", "--json", "-o", pruned]) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    stft = next(row for row in result["layers"] if row["node"] == "stft")
    assert stft["out_channels_after"] < 8 and stft["out_channels_after"] % 2 == 0
    assert result["verify"]["zero_mask_max_rel_error"] < ZERO_MASK_TOL
