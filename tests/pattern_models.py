"""Graphs with the patterns real exporters write, built by hand with onnx.helper.

paddle2onnx / tf2onnx / quantizers write weights in Constant nodes without names, Reshape targets
computed from Shape arithmetic, LSTMs, `?` dims and quantized ops; each builder returns one such
pattern small enough to run in a test. Every builder takes a seeded `rng` so property tests can
vary channel counts and sizes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(nodes, inputs, outputs, inits=(), opset=OPSET, value_info=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "pattern", inputs, outputs, list(inits), value_info=list(value_info))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return model


def _weights(rng, shape, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def constant_weights(rng=None, c1: int = 4, c2: int = 6, size: int = 8, value_floats: bool = True) -> onnx.ModelProto:
    """paddle2onnx style: every weight in an UNNAMED Constant node, every node unnamed.

    x -> Conv(c1, 3x3) -> Relu -> Conv(c2, 1x1) -> GAP -> Flatten -> Gemm(5). The last bias is
    a `value_floats` Constant when `value_floats`. Params: c1*27 + c1 + c2*c1 + c2 + 5*c2 + 5.
    """
    rng = rng or np.random.default_rng(0)
    values = {
        "w1": _weights(rng, (c1, 3, 3, 3)),
        "b1": _weights(rng, (c1,)),
        "w2": _weights(rng, (c2, c1, 1, 1)),
        "b2": _weights(rng, (c2,)),
        "w3": _weights(rng, (5, c2)),
        "b3": _weights(rng, (5,)),
    }
    nodes = []
    for name, value in values.items():
        if name == "b3" and value_floats:
            nodes.append(helper.make_node("Constant", [], [name], value_floats=[float(v) for v in value]))
        else:
            nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name)))
    nodes += [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"]),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
    )


def constant_weights_params(c1: int = 4, c2: int = 6) -> int:
    return c1 * 27 + c1 + c2 * c1 + c2 + 5 * c2 + 5


def computed_reshape(rng=None, channels: int = 4, size: int = 8, hw: str | int = "H") -> onnx.ModelProto:
    """Conv, then Reshape to [N, C*H*W / 2, 2] where the target is Shape->Gather->Mul->Div->Concat
    arithmetic (ONNX data propagation gives up at Div), then MatMul with a [2, 3] weight.

    `hw` names a symbolic H/W (give it with --input-shape) or fixes it.
    """
    rng = rng or np.random.default_rng(0)
    ints = lambda name, values: numpy_helper.from_array(np.asarray(values, np.int64), name)  # noqa: E731
    inits = [
        numpy_helper.from_array(_weights(rng, (channels, 3, 3, 3)), "w"),
        numpy_helper.from_array(_weights(rng, (2, 3)), "m"),
        ints("i0", [0]),
        ints("i1", [1]),
        ints("i2", [2]),
        ints("i3", [3]),
        ints("two", [2]),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "i0"], ["n"], name="g0"),
        helper.make_node("Gather", ["s", "i1"], ["ch"], name="g1"),
        helper.make_node("Gather", ["s", "i2"], ["h"], name="g2"),
        helper.make_node("Gather", ["s", "i3"], ["w_"], name="g3"),
        helper.make_node("Mul", ["ch", "h"], ["ch_h"], name="mul0"),
        helper.make_node("Mul", ["ch_h", "w_"], ["chw"], name="mul1"),
        helper.make_node("Div", ["chw", "two"], ["half"], name="div"),
        helper.make_node("Concat", ["n", "half", "two"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["c", "target"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "m"], ["y"], name="matmul"),
    ]
    dim = hw if isinstance(hw, str) else int(hw)
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, dim, dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M", 3])],
        inits,
    )


def lstm_consumer(rng=None, channels: int = 4, hidden: int = 5, width: str | int = "W") -> onnx.ModelProto:
    """CRNN style: Conv on [1, 3, 1, W] -> Squeeze(H) -> Transpose to [W, N, C] -> LSTM -> Squeeze
    -> MatMul(hidden -> 7). The LSTM's weights are initializers."""
    rng = rng or np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(_weights(rng, (channels, 3, 1, 3)), "w"),
        numpy_helper.from_array(np.asarray([2], np.int64), "axis_h"),
        numpy_helper.from_array(np.asarray([1], np.int64), "axis_dir"),
        numpy_helper.from_array(_weights(rng, (1, 4 * hidden, channels)), "lstm_w"),
        numpy_helper.from_array(_weights(rng, (1, 4 * hidden, hidden)), "lstm_r"),
        numpy_helper.from_array(_weights(rng, (hidden, 7)), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[0, 1, 0, 1]),
        helper.make_node("Squeeze", ["c", "axis_h"], ["sq"], name="squeeze_h"),
        helper.make_node("Transpose", ["sq"], ["seq"], name="to_seq", perm=[2, 0, 1]),
        helper.make_node("LSTM", ["seq", "lstm_w", "lstm_r"], ["lstm_y"], name="lstm", hidden_size=hidden),
        helper.make_node("Squeeze", ["lstm_y", "axis_dir"], ["feat"], name="squeeze_dir"),
        helper.make_node("MatMul", ["feat", "fc"], ["y"], name="fc"),
    ]
    dim = width if isinstance(width, str) else int(width)
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 1, dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dim, 1, 7])],
        inits,
    )


def question_mark_dims(rng=None, channels: int = 4) -> onnx.ModelProto:
    """paddle2onnx style: input dims written as `?` (and -1), stale `?` value_info on intermediates."""
    rng = rng or np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(_weights(rng, (channels, 3, 3, 3)), "conv_w"),
        numpy_helper.from_array(_weights(rng, (channels,)), "conv_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["?", 3, "?", "?"])
    x.type.tensor_type.shape.dim[2].Clear()
    x.type.tensor_type.shape.dim[2].dim_value = -1
    stale = helper.make_tensor_value_info("c", TensorProto.FLOAT, ["?", channels, "?", "?"])
    return _model(
        nodes,
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["?", channels, "?", "?"])],
        inits,
        value_info=[stale],
    )


def _quantize(weights: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric per-channel int8: (int8 weights, float scales, int8 zero points)."""
    reduce = tuple(a for a in range(weights.ndim) if a != axis)
    scale = (np.abs(weights).max(axis=reduce) / 127.0 + 1e-8).astype(np.float32)
    shape = [1] * weights.ndim
    shape[axis] = -1
    q = np.clip(np.round(weights / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale, np.zeros_like(scale, dtype=np.int8)


def qdq_conv(rng=None, cin: int = 3, cout: int = 8, size: int = 8) -> onnx.ModelProto:
    """QDQ: x -> Q -> DQ -> Conv(weight = DQ(int8 const), bias = DQ(int32 const)) -> Relu -> GAP
    -> Flatten -> Gemm(weight = DQ(int8 const)) -> y. Params: cout*cin*9 + cout + 10*cout + 10."""
    rng = rng or np.random.default_rng(0)
    w, w_scale, w_zp = _quantize(_weights(rng, (cout, cin, 3, 3)))
    fc, fc_scale, fc_zp = _quantize(_weights(rng, (10, cout)))
    x_scale = np.float32(0.05)
    inits = [
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(w_zp, "w_zp"),
        numpy_helper.from_array(rng.integers(-100, 100, cout).astype(np.int32), "b_q"),
        numpy_helper.from_array((w_scale * x_scale).astype(np.float32), "b_scale"),
        numpy_helper.from_array(fc, "fc_q"),
        numpy_helper.from_array(fc_scale, "fc_scale"),
        numpy_helper.from_array(fc_zp, "fc_zp"),
        numpy_helper.from_array(_weights(rng, (10,)), "fc_b"),
        numpy_helper.from_array(np.asarray(x_scale), "x_scale"),
        numpy_helper.from_array(np.asarray(0, np.uint8), "x_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["wd"], name="dq_w", axis=0),
        helper.make_node("DequantizeLinear", ["b_q", "b_scale"], ["bd"], name="dq_b", axis=0),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("DequantizeLinear", ["fc_q", "fc_scale", "fc_zp"], ["fcd"], name="dq_fc", axis=0),
        helper.make_node("Gemm", ["f", "fcd", "fc_b"], ["y"], name="fc", transB=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )


def conv_integer(rng=None, cin: int = 3, cout: int = 8, size: int = 8) -> onnx.ModelProto:
    """quantize_dynamic's shape: DynamicQuantizeLinear(x) -> ConvInteger(x_q, W int8) -> Cast ->
    Mul(scales) -> Add(bias) ; then MatMulInteger for a 1x1 head. Params: cout*cin*9 + cout + cout*4."""
    rng = rng or np.random.default_rng(0)
    w, w_scale, _ = _quantize(_weights(rng, (cout, cin, 3, 3)))
    m, m_scale, _ = _quantize(_weights(rng, (cout, 4)), axis=1)
    inits = [
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.zeros((), np.int8), "w_zp"),
        numpy_helper.from_array(w_scale.reshape(1, cout, 1, 1), "w_scale"),
        numpy_helper.from_array(_weights(rng, (1, cout, 1, 1)), "bias"),
        numpy_helper.from_array(m, "m_q"),
        numpy_helper.from_array(np.zeros((), np.int8), "m_zp"),
    ]
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dql"),
        helper.make_node("ConvInteger", ["xq", "w_q", "xz", "w_zp"], ["ci"], name="conv_int", pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["ci"], ["cf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "w_scale"], ["scale"], name="scale"),
        helper.make_node("Mul", ["cf", "scale"], ["deq"], name="deq"),
        helper.make_node("Add", ["deq", "bias"], ["c"], name="bias_add"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Transpose", ["r"], ["t"], name="nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("DynamicQuantizeLinear", ["t"], ["tq", "ts", "tz"], name="dql2"),
        helper.make_node("MatMulInteger", ["tq", "m_q", "tz", "m_zp"], ["mi"], name="matmul_int"),
        helper.make_node("Cast", ["mi"], ["y"], name="cast2", to=TensorProto.FLOAT),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size, size, 4])],
        inits,
    )


def qlinear_conv(rng=None, cin: int = 3, cout: int = 8, size: int = 8) -> onnx.ModelProto:
    """QOperator: Q(x) -> QLinearConv(int8 W, int32 B) -> QLinearMatMul on [.., W, C] -> DQ."""
    rng = rng or np.random.default_rng(0)
    w, w_scale, w_zp = _quantize(_weights(rng, (cout, cin, 3, 3)))
    m, _, _ = _quantize(_weights(rng, (size, 6)), axis=1)
    scalar = lambda name, value, dtype: numpy_helper.from_array(np.asarray(value, dtype), name)  # noqa: E731
    inits = [
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(w_zp, "w_zp"),
        numpy_helper.from_array(rng.integers(-100, 100, cout).astype(np.int32), "b_q"),
        scalar("x_scale", 0.05, np.float32),
        scalar("x_zp", 0, np.int8),
        scalar("y_scale", 0.1, np.float32),
        scalar("y_zp", 0, np.int8),
        numpy_helper.from_array(m, "m_q"),
        scalar("m_scale", 0.02, np.float32),
        scalar("m_zp", 0, np.int8),
        scalar("z_scale", 0.2, np.float32),
        scalar("z_zp", 0, np.int8),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q"),
        helper.make_node(
            "QLinearConv",
            ["xq", "x_scale", "x_zp", "w_q", "w_scale", "w_zp", "y_scale", "y_zp", "b_q"],
            ["cq"],
            name="qconv",
            pads=[1, 1, 1, 1],
        ),
        helper.make_node(
            "QLinearMatMul",
            ["cq", "y_scale", "y_zp", "m_q", "m_scale", "m_zp", "z_scale", "z_zp"],
            ["mq"],
            name="qmatmul",
        ),
        helper.make_node("DequantizeLinear", ["mq", "z_scale", "z_zp"], ["y"], name="dq"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, size, 6])],
        inits,
    )


def custom_weight_op(rng=None, channels: int = 8) -> onnx.ModelProto:
    """A Conv, then a custom-domain op holding a [channels, channels] weight profile cannot count."""
    rng = rng or np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(_weights(rng, (channels, 3, 1, 1)), "w"),
        numpy_helper.from_array(_weights(rng, (channels, channels)), "mystery_w"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("MysteryMix", ["c", "mystery_w"], ["y"], name="mix", domain="com.example"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 4, 4])],
        inits,
    )
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model


def float_computed_reshape(rng=None, channels: int = 4, size: int = 8) -> onnx.ModelProto:
    """Reshape whose last target dim goes through float arithmetic on activations
    (Cast(Sqrt(ReduceMean(x) * 0 + 4)) = 2): neither ONNX nor symbolic inference can follow it,
    only a run can. Then MatMul with a [2, 3] weight."""
    rng = rng or np.random.default_rng(0)
    arr = lambda name, values, dtype: numpy_helper.from_array(np.asarray(values, dtype), name)  # noqa: E731
    inits = [
        numpy_helper.from_array(_weights(rng, (channels, 3, 3, 3)), "w"),
        numpy_helper.from_array(_weights(rng, (2, 3)), "m"),
        arr("i0", [0], np.int64),
        arr("minus_one", [-1], np.int64),
        arr("one", [1], np.int64),
        arr("zero", 0.0, np.float32),
        arr("four", 4.0, np.float32),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["c"], ["mean"], name="mean", keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"], name="times_zero"),
        helper.make_node("Add", ["nothing", "four"], ["f4"], name="plus_four"),
        helper.make_node("Sqrt", ["f4"], ["f2"], name="sqrt"),
        helper.make_node("Cast", ["f2"], ["i2"], name="to_int", to=TensorProto.INT64),
        helper.make_node("Reshape", ["i2", "one"], ["last"], name="as_1d"),
        helper.make_node("Shape", ["c"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "i0"], ["n"], name="batch"),
        helper.make_node("Concat", ["n", "minus_one", "last"], ["target"], name="target", axis=0),
        helper.make_node("Reshape", ["c", "target"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "m"], ["y"], name="matmul"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "M", 3])],
        inits,
    )


def dynamic_quantize_lstm(rng=None, inputs: int = 4, hidden: int = 5, steps: int = 6) -> onnx.ModelProto:
    """onnxruntime's DynamicQuantizeLSTM (what quantize_dynamic makes of an LSTM): int8 W [1, I, 4H]
    and R [1, H, 4H] (transposed against LSTM's), float B, per-tensor scales; then Squeeze."""
    rng = rng or np.random.default_rng(0)
    w, _, _ = _quantize(_weights(rng, (1, inputs, 4 * hidden)), axis=0)
    r, _, _ = _quantize(_weights(rng, (1, hidden, 4 * hidden)), axis=0)
    scalar = lambda name, value, dtype: numpy_helper.from_array(np.asarray([value], dtype), name)  # noqa: E731
    inits = [
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(r, "r_q"),
        numpy_helper.from_array(_weights(rng, (1, 8 * hidden)), "b"),
        scalar("w_scale", 0.01, np.float32),
        scalar("w_zp", 0, np.int8),
        scalar("r_scale", 0.01, np.float32),
        scalar("r_zp", 0, np.int8),
        numpy_helper.from_array(np.asarray([1], np.int64), "axis_dir"),
    ]
    lstm = helper.make_node(
        "DynamicQuantizeLSTM",
        ["x", "w_q", "r_q", "b", "", "", "", "", "w_scale", "w_zp", "r_scale", "r_zp"],
        ["y"],
        name="qlstm",
        domain="com.microsoft",
        hidden_size=hidden,
    )
    nodes = [lstm, helper.make_node("Squeeze", ["y", "axis_dir"], ["out"], name="squeeze")]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, 1, inputs])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [steps, 1, hidden])],
        inits,
    )
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model
