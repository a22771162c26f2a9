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

    def conv(self, x: str, cin: int, cout: int, name: str = "", k: int = 1, group: int = 1, bias: bool = True,
             bias_name: str | None = None) -> str:
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
