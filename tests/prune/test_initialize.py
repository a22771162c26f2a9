"""Re-initialisation (onnxprune/prune/initialize.py): fan-in scaling per layer, zero biases, weights held in
Constant nodes, heads (gain 1, output layout kept), non-weight constants untouched."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnxprune.prune.initialize import reinitialize


def _detector() -> onnx.ModelProto:
    """A backbone conv (weight in a Constant node, unnamed), then two head convs, one per output; the
    second head's output is reshaped by a constant shape and offset by a constant grid (anchors)."""
    rng = np.random.default_rng(0)

    def arr(*shape):
        return (rng.standard_normal(shape) * 5).astype(np.float32)

    inits = [
        numpy_helper.from_array(arr(32), "b0"),
        numpy_helper.from_array(arr(12, 32, 1, 1), "wh1"),
        numpy_helper.from_array(arr(12), "bh1"),
        numpy_helper.from_array(arr(6, 32, 3, 3), "wh2"),
        numpy_helper.from_array(np.array([1, 2, 3, 64], np.int64), "shape"),
        numpy_helper.from_array(arr(1, 2, 3, 64), "grid"),
    ]
    nodes = [
        helper.make_node("Constant", [], ["w0"], value=numpy_helper.from_array(arr(32, 3, 3, 3), "w0"), name=""),
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="backbone", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu"),
        helper.make_node("Conv", ["r0", "wh1", "bh1"], ["boxes"], name="head1"),
        helper.make_node("Conv", ["r0", "wh2"], ["h2"], name="head2", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["h2", "shape"], ["h2r"], name="reshape"),
        helper.make_node("Add", ["h2r", "grid"], ["scores"], name="decode"),
    ]
    graph = helper.make_graph(
        nodes,
        "det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 12, 8, 8]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 3, 64]),
        ],
        inits,
    )
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


def _paddle_style_conv_bias() -> onnx.ModelProto:
    """Conv without bias input, then Add(Reshape(Constant)) as paddle2onnx writes a conv bias, then a
    residual-free Add of a non-bias constant of another size (left as given)."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 8, 1, 1], np.int64), "bias_shape")
    offset = numpy_helper.from_array(np.full((1, 1, 8, 8), 3.0, np.float32), "offset")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "Constant", [], ["b"], value=numpy_helper.from_array(np.full(8, 7.0, np.float32), "b"), name="bias_value"
        ),
        helper.make_node("Reshape", ["b", "bias_shape"], ["b4"], name="bias_reshape"),
        helper.make_node("Add", ["c", "b4"], ["y"], name="bias_add"),
        helper.make_node("Add", ["y", "offset"], ["out"], name="offset_add"),
    ]
    graph = helper.make_graph(
        nodes,
        "paddle",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 8, 8])],
        [w, shape, offset],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_conv_bias_behind_reshape_constant_is_zeroed():
    model = _paddle_style_conv_bias()
    reinitialize(model, np.random.default_rng(0))
    after = _values(model)
    assert np.all(after["b"] == 0)  # the bias's source constant, behind Reshape
    assert np.array_equal(after["bias_shape"], [1, 8, 1, 1]) and np.all(after["offset"] == 3.0)
    assert _run(model)[0].shape == (1, 8, 8, 8)
