"""Weights a graph computes from stored constants (int8 decoded by Cast -> Mul(scale), as PP-OCRv6's
"compressed" models do) are not folded by profile: they are listed as uncounted, so profile warns and
check refuses instead of passing a budget on the BatchNorms alone (probe round 2, finding F1)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune import profile
from onnxprune.cli import main


def _decoded_convs(path, decode: str) -> str:
    """Conv(3->16) -> Relu -> Conv(16->8), weights stored as int8 and decoded by `decode`:
    "castmul" (Cast -> Mul(scale)) or "dql" (DequantizeLinear, which profile counts)."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []
    for name, shape in (("w1", (16, 3, 3, 3)), ("w2", (8, 16, 3, 3))):
        inits.append(numpy_helper.from_array(rng.integers(-100, 100, shape).astype(np.int8), f"{name}_q"))
        inits.append(numpy_helper.from_array(np.array(0.01, np.float32), f"{name}_scale"))
        if decode == "castmul":
            nodes.append(helper.make_node("Cast", [f"{name}_q"], [f"{name}_f"], to=TensorProto.FLOAT))
            nodes.append(helper.make_node("Mul", [f"{name}_f", f"{name}_scale"], [name]))
        else:
            nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale"], [name]))
    nodes += [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"], name="relu1"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "decoded",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return str(path)


def test_weights_decoded_by_cast_and_mul_are_uncounted_and_check_refuses(tmp_path, capsys):
    path = _decoded_convs(tmp_path / "castmul.onnx", "castmul")
    result = profile(path)
    assert [(u["node"], u["elements"]) for u in result.uncounted] == [("conv1", 432), ("conv2", 1152)]
    assert all("decoded from stored constants" in u["reason"] for u in result.uncounted)
    assert main(["check", path, "--max-params", "100"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "conv1 (Conv, 432 weights decoded" in err


def test_weights_behind_dequantize_linear_stay_counted(tmp_path, capsys):
    path = _decoded_convs(tmp_path / "dql.onnx", "dql")
    result = profile(path)
    assert result.uncounted == [] and result.totals["params"] >= 432 + 1152
    assert main(["check", path, "--max-params", "100"]) == 1  # measured, and over budget


def test_a_constant_weight_the_cost_does_not_look_at_is_not_called_decoded():
    """MatMul(W, x): W is uncounted as before, and no decoding reason is given for it."""
    weight = numpy_helper.from_array(np.ones((32, 16), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("MatMul", ["W", "r"], ["y"], name="mm")],
        "left_weight",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert profile(model).uncounted == [{"node": "mm", "op": "MatMul", "elements": 512}]
