"""Tiny ONNX models built with onnx.helper, shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_model(path: Path, cout: int = 8, batch: int | str = 1, size: int | str = 16) -> Path:
    """Conv(3->cout, 3x3, pad 1) + Relu on a 3x`size`x`size` input: cout*27 + cout parameters.

    `batch` and `size` are ints (static) or names (symbolic dimensions).
    """
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((cout, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal((cout,)).astype(np.float32), "b")
    hw = int(size) if str(size).isdigit() else size
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, hw, hw])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, cout, hw, hw])
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["out"]),
        ],
        "g",
        [x],
        [y],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def residual_net(rng=None, widths=(16, 32, 32), size=8) -> onnx.ModelProto:
    """Conv/BN/Relu stack with a residual Add and a Gemm head: weights of 2-40 KB, so most are lazy."""
    rng = rng or np.random.default_rng(0)
    nodes, inits, prev, cin = [], [], "x", 3

    def weight(name, shape):
        inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
        return name

    for i, cout in enumerate(widths):
        w, b = weight(f"w{i}", [cout, cin, 3, 3]), weight(f"b{i}", [cout])
        nodes.append(helper.make_node("Conv", [prev, w, b], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        bn = [weight(f"bn{i}_{k}", [cout]) for k in ("s", "b", "m")]
        inits.append(numpy_helper.from_array(rng.random(cout).astype(np.float32) + 0.5, f"bn{i}_v"))
        nodes.append(helper.make_node("BatchNormalization", [f"c{i}", *bn, f"bn{i}_v"], [f"n{i}"], name=f"bn{i}"))
        nodes.append(helper.make_node("Relu", [f"n{i}"], [f"r{i}"], name=f"relu{i}"))
        prev, cin = f"r{i}", cout
    nodes.append(helper.make_node("Add", [f"r{len(widths) - 1}", f"r{len(widths) - 2}"], ["sum"], name="add"))
    nodes.append(helper.make_node("GlobalAveragePool", ["sum"], ["pool"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"))
    fc_w, fc_b = weight("fc_w", [10, cin]), weight("fc_b", [10])
    nodes.append(helper.make_node("Gemm", ["flat", fc_w, fc_b], ["y"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
