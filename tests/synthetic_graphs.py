"""Hand-built ONNX graphs with exporter quirks that torch never writes (shared by the group/surgery tests)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class GraphBuilder:
    """Nodes, initializers and Constant-node weights for a small float CNN on a 1x3x8x8 input."""

    def __init__(self, seed: int = 0, constant_nodes: bool = False):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.constant_nodes = constant_nodes  # weights in unnamed Constant nodes (paddle2onnx style)
        self.count = 0

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, value: np.ndarray, stem: str = "w") -> str:
        name = self.fresh(stem)
        tensor = numpy_helper.from_array(np.asarray(value), name)
        if self.constant_nodes:
            self.nodes.append(helper.make_node("Constant", [], [name], value=tensor))  # name="" as paddle2onnx
        else:
            self.initializers.append(tensor)
        return name

    def node(self, op: str, inputs: list[str], name: str = "", outputs: int = 1, **attrs) -> list[str]:
        outs = [self.fresh(op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        name: str = "",
        k: int = 1,
        group: int = 1,
        bias: bool = True,
        bias_name: str | None = None,
    ) -> str:
        w = self.const(self.rng.standard_normal((cout, cin // group, k, k)).astype(np.float32), "weight")
        inputs = [x, w]
        if bias:
            inputs.append(bias_name or self.const(self.rng.standard_normal(cout).astype(np.float32), "bias"))
        return self.node("Conv", inputs, name, pads=[k // 2] * 4, group=group)[0]

    def relu(self, x: str, name: str = "") -> str:
        return self.node("Relu", [x], name)[0]

    def model(self, output: str, in_channels: int = 3, size: int = 8) -> onnx.ModelProto:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_channels, size, size])
        self.nodes.append(helper.make_node("Identity", [output], ["y"], name="output"))
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        graph = helper.make_graph(self.nodes, "synthetic", [x], [y], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        model.graph.output[0].CopyFrom(inferred.graph.output[0])
        onnx.checker.check_model(model, full_check=True)
        return model


def constant_weight_cnn() -> onnx.ModelProto:
    """Three convs whose weights and biases are unnamed Constant nodes; one conv is unnamed too."""
    b = GraphBuilder(constant_nodes=True)
    h = b.relu(b.conv("x", 3, 8, "conv1", k=3))
    h = b.relu(b.conv(h, 8, 6, ""))  # an unnamed layer: reported as Conv#index
    return b.model(b.conv(h, 6, 4, "head"))


def qdq_cnn() -> onnx.ModelProto:
    """QDQ (as onnxruntime's static quantizer writes it): a conv with per-channel int8 weights, then float convs."""
    b = GraphBuilder()
    scale, zero = b.const(np.float32(0.05), "s"), b.const(np.int8(0), "zp")
    xq = b.node("QuantizeLinear", ["x", scale, zero], "x_q")[0]
    xd = b.node("DequantizeLinear", [xq, scale, zero], "x_dq")[0]
    wq = b.const(b.rng.integers(-100, 100, (8, 3, 3, 3)).astype(np.int8), "w_q")
    ws = b.const(np.full(8, 0.01, np.float32), "w_scale")
    wz = b.const(np.zeros(8, np.int8), "w_zp")
    w = b.node("DequantizeLinear", [wq, ws, wz], "w_dq", axis=0)[0]
    h = b.relu(b.node("Conv", [xd, w, b.const(b.rng.standard_normal(8).astype(np.float32))], "qconv", pads=[1] * 4)[0])
    h = b.relu(b.conv(h, 8, 6, "conv2"))
    return b.model(b.conv(h, 6, 4, "head"))


def conv_integer_cnn() -> onnx.ModelProto:
    """Dynamic quantization: DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul(scale), then float convs."""
    b = GraphBuilder()
    xq, xs, xz = b.node("DynamicQuantizeLinear", ["x"], "dq", outputs=3)
    wq = b.const(b.rng.integers(0, 255, (8, 3, 3, 3)).astype(np.uint8), "w_q")
    acc = b.node("ConvInteger", [xq, wq, xz], "qconv", pads=[1] * 4)[0]
    h = b.node("Cast", [acc], to=TensorProto.FLOAT)[0]
    scale = b.node("Mul", [xs, b.const(np.float32(0.01), "w_scale")])[0]
    h = b.relu(b.node("Mul", [h, scale])[0])
    h = b.relu(b.conv(h, 8, 6, "conv2"))
    return b.model(b.conv(h, 6, 4, "head"))


def qlinear_cnn() -> onnx.ModelProto:
    """A QLinearConv between QuantizeLinear and DequantizeLinear, then float convs."""
    b = GraphBuilder()
    s, z = b.const(np.float32(0.05), "s"), b.const(np.uint8(128), "zp")
    xq = b.node("QuantizeLinear", ["x", s, z])[0]
    wq = b.const(b.rng.integers(0, 255, (8, 3, 3, 3)).astype(np.uint8), "w_q")
    ws, wz = b.const(np.full(8, 0.01, np.float32), "w_scale"), b.const(np.full(8, 128, np.uint8), "w_zp")
    yq = b.node("QLinearConv", [xq, s, z, wq, ws, wz, s, z], "qconv", pads=[1] * 4)[0]
    h = b.relu(b.node("DequantizeLinear", [yq, s, z])[0])
    h = b.relu(b.conv(h, 8, 6, "conv2"))
    return b.model(b.conv(h, 6, 4, "head"))
