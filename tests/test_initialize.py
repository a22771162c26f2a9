"""Re-initialisation (onnxprune/initialize.py): fan-in scaling per layer, zero biases, weights held in
Constant nodes, heads (gain 1, output layout kept), non-weight constants untouched."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnxprune.initialize import reinitialize


def _detector() -> onnx.ModelProto:
    """A backbone conv (weight in a Constant node, unnamed), then two head convs, one per output; the
    second head's output is reshaped by a constant shape and offset by a constant grid (anchors)."""
    rng = np.random.default_rng(0)

    def arr(*shape):
        return (rng.standard_normal(shape) * 5).astype(np.float32)

    inits = [numpy_helper.from_array(arr(32), "b0"), numpy_helper.from_array(arr(12, 32, 1, 1), "wh1"),
             numpy_helper.from_array(arr(12), "bh1"), numpy_helper.from_array(arr(6, 32, 3, 3), "wh2"),
             numpy_helper.from_array(np.array([1, 2, 3, 64], np.int64), "shape"),
             numpy_helper.from_array(arr(1, 2, 3, 64), "grid")]
    nodes = [
        helper.make_node("Constant", [], ["w0"], value=numpy_helper.from_array(arr(32, 3, 3, 3), "w0"), name=""),
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="backbone", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu"),
        helper.make_node("Conv", ["r0", "wh1", "bh1"], ["boxes"], name="head1"),
        helper.make_node("Conv", ["r0", "wh2"], ["h2"], name="head2", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["h2", "shape"], ["h2r"], name="reshape"),
        helper.make_node("Add", ["h2r", "grid"], ["scores"], name="decode"),
    ]
    graph = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 12, 8, 8]),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 3, 64])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _values(model):
    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


def _run(model):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.ones((1, 3, 8, 8), np.float32)})


def test_constant_node_weights_heads_and_untouched_constants():
    model = _detector()
    before = _values(model)
    reinitialize(model, np.random.default_rng(0))
    after = _values(model)
    w0 = after["w0"]  # held in a Constant node: re-drawn, Kaiming (ReLU gain) for a hidden layer
    assert not np.array_equal(w0, before["w0"])
    assert abs(w0.std() - np.sqrt(2 / 27)) < 0.15 * np.sqrt(2 / 27)
    assert np.all(after["b0"] == 0) and np.all(after["bh1"] == 0)
    for name, fan_in in (("wh1", 32), ("wh2", 32 * 9)):  # heads: gain 1, no ReLU follows them
        assert abs(after[name].std() - np.sqrt(1 / fan_in)) < 0.15 * np.sqrt(1 / fan_in), name
    for name in ("shape", "grid"):  # not weights: as given
        assert np.array_equal(after[name], before[name])
    assert [o.shape for o in _run(model)] == [(1, 12, 8, 8), (1, 2, 3, 64)]  # output layout kept


def test_same_seed_same_bytes():
    a, b = _detector(), _detector()
    reinitialize(a, np.random.default_rng(3))
    reinitialize(b, np.random.default_rng(3))
    assert a.SerializeToString() == b.SerializeToString()
