"""Issue 25 item 4: `shrink --verify` and `verify` judge an output a saturating activation computes
on its logits when the output itself is off only by onnxruntime's Sigmoid (exact to ~2e-7 absolute:
on a saturated map that is ~0.1-1% relative), as the corpus oracle does, and say so."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.analysis.groups import channel_groups
from onnxprune.cli import main
from onnxprune.measure.verify import zero_mask

SIZE = 32


def saturated_map(seed: int = 0, bias: float = -11.0) -> onnx.ModelProto:
    """conv1 (32 channels, prunable) -> Relu -> head conv (1 channel, bias -11) -> Sigmoid: a
    text-detector-like probability map whose values are all ~1e-5 on random inputs."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((32, 3, 3, 3)) * 0.5).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal((1, 32, 3, 3)) * 0.05).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([bias], np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4, name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["logits"], pads=[1] * 4, name="head"),
        helper.make_node("Sigmoid", ["logits"], ["prob"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "saturated",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, SIZE, SIZE])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _shrink(tmp_path, seed, capsys) -> tuple[int, dict]:
    source = tmp_path / "map.onnx"
    onnx.save(saturated_map(seed), source)
    args = ["shrink", str(source), "--mode", "FA", "--target", "0.5", "--init", "keep", "--verify"]
    rc = main([*args, "-o", str(tmp_path / "p.onnx"), "--report", str(tmp_path / "r.json"), "--json"])
    capsys.readouterr()
    return rc, json.loads((tmp_path / "r.json").read_text())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shrink_verify_judges_a_saturated_sigmoid_on_its_logits(seed, tmp_path, capsys):
    rc, report = _shrink(tmp_path, seed, capsys)
    check = report["verify"]
    assert rc == 0, check["problems"]
    assert check["zero_mask_output_rel_error"]["prob"] > 1e-4  # the false alarm of old: the output itself
    assert check["zero_mask_max_rel_error"] < 1e-5
    assert check["zero_mask_compared_on"]["prob"] == "logits (Sigmoid input 'logits')"
    # and the text output says which
    source = tmp_path / "map.onnx"
    rc = main(["shrink", str(source), "--mode", "FA", "--init", "keep", "--verify", "-o", str(tmp_path / "q.onnx")])
    out = " ".join(capsys.readouterr().out.split())
    assert rc == 0 and "compared output 'prob' on its logits (Sigmoid input 'logits')" in out


def test_verify_passes_on_logits_and_still_catches_a_real_difference(tmp_path, capsys):
    rc, report = _shrink(tmp_path, 0, capsys)
    assert rc == 0
    deps = channel_groups(tmp_path / "map.onnx")
    keep = deps.keep_from_layers({row["node"]: row["kept"] for row in report["layers"]})
    reference = tmp_path / "zeroed.onnx"
    onnx.save(zero_mask(deps, keep), reference)
    assert main(["verify", str(reference), str(tmp_path / "p.onnx"), "--tol", "1e-4", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["outputs"][0]
    assert row["max_rel"] > 1e-4 and row["logits_max_rel"] < 1e-5
    assert row["compared_on"] == "logits (Sigmoid input 'logits')"
    shifted = saturated_map(0, bias=-10.9)  # logits off by 0.1: a real difference, on output and logits
    onnx.save(shifted, tmp_path / "shifted.onnx")
    assert main(["verify", str(tmp_path / "map.onnx"), str(tmp_path / "shifted.onnx"), "--tol", "1e-4"]) == 1
    err = capsys.readouterr().err
    assert "max relative error" in err and "its logits, the Sigmoid's input" in err
