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
