"""Small IR 3 graphs with the ONNX Model Zoo's classic patterns (onnx-caffe2 exports, opset 9).

As in the zoo files, every initializer is also listed as a graph input, and shape constants
(`OC2_DUMMY_*`) are initializers too. Each builder returns one pattern small enough for a test:
Sum of several inputs (ResNet's residual merge), LRN (AlexNet, GoogLeNet), Dropout with a mask
output (VGG, AlexNet), BatchNormalization on 4-D maps, BN after a Concat (DenseNet), and
ShuffleNet's grouped convs with the Reshape-Transpose-Reshape channel shuffle.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 9
IR_VERSION = 3
SIZE = 8
CLASSES = 5


class _Graph:
    """Collects nodes and initializers; every initializer becomes a graph input too (IR 3)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: int = 1, **attrs) -> list[str]:
        self.count += 1
        names = [f"r{self.count}" + (f"_{i}" if i else "") for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name=f"n{self.count}", **attrs))
        return names

    def conv(self, x: str, cin: int, cout: int, group: int = 1, kernel: int = 3) -> str:
        stem = f"conv{self.count + 1}"
        scale = np.sqrt(2.0 / (cin // group * kernel * kernel))
        w = self.const(f"{stem}_w", self.rng.normal(0, scale, (cout, cin // group, kernel, kernel)).astype(np.float32))
        b = self.const(f"{stem}_b", self.rng.normal(0, 0.1, cout).astype(np.float32))
        pad = kernel // 2
        return self.node("Conv", [x, w, b], kernel_shape=[kernel, kernel], pads=[pad] * 4, group=group)[0]

    def bn(self, x: str, channels: int) -> str:
        stem = f"bn{self.count + 1}"
        values = (
            self.rng.uniform(0.5, 1.5, channels),
            self.rng.normal(0, 0.1, channels),
            self.rng.normal(0, 0.1, channels),
            self.rng.uniform(0.5, 1.5, channels),
        )
        names = [self.const(f"{stem}_{k}", v.astype(np.float32)) for k, v in zip(("s", "b", "rm", "riv"), values)]
        return self.node("BatchNormalization", [x, *names], epsilon=1e-5)[0]

    def head(self, x: str, channels: int, classes: int = CLASSES) -> str:
        """Global average pool, Reshape (shape constant as an initializer, like OC2_DUMMY), Gemm."""
        pooled = self.node("GlobalAveragePool", [x])[0]
        shape = self.const(f"OC2_DUMMY_{self.count}", np.array([1, channels], np.int64))
        flat = self.node("Reshape", [pooled, shape])[0]
        w = self.const("fc_w", self.rng.normal(0, 0.3, (classes, channels)).astype(np.float32))
        b = self.const("fc_b", self.rng.normal(0, 0.1, classes).astype(np.float32))
        return self.node("Gemm", [flat, w, b], transB=1)[0]

    def model(self, x: str, y: str, channels: int = 3) -> onnx.ModelProto:
        inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, channels, SIZE, SIZE])]
        inputs += [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in self.inits]
        outputs = [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, CLASSES])]
        graph = helper.make_graph(self.nodes, "ir3_pattern", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        return model


def sum_residual(seed: int = 0) -> onnx.ModelProto:
    """ResNet (caffe2): a block's branches merged by one Sum of three inputs."""
    g = _Graph(seed)
    stem = g.node("Relu", [g.bn(g.conv("data", 3, 8), 8)])[0]
    branch_a = g.bn(g.conv(g.node("Relu", [g.bn(g.conv(stem, 8, 6), 6)])[0], 6, 8), 8)
    branch_b = g.bn(g.conv(stem, 8, 8, kernel=1), 8)
    merged = g.node("Relu", [g.node("Sum", [stem, branch_a, branch_b])[0]])[0]
    return g.model("data", g.node("Softmax", [g.head(g.conv(merged, 8, 10), 10)])[0])


def lrn(seed: int = 0) -> onnx.ModelProto:
    """AlexNet/GoogLeNet: conv, Relu, LRN over the channels, max-pool, conv, and a Reshape to FC."""
    g = _Graph(seed)
    normed = g.node("LRN", [g.node("Relu", [g.conv("data", 3, 8)])[0]], size=5, alpha=1e-4, beta=0.75, bias=1.0)[0]
    pooled = g.node("MaxPool", [normed], kernel_shape=[2, 2], strides=[2, 2])[0]
    second = g.node("Relu", [g.conv(pooled, 8, 12)])[0]
    third = g.node("Relu", [g.conv(second, 12, 16)])[0]
    return g.model("data", g.head(third, 16))


def dropout_mask(seed: int = 0) -> onnx.ModelProto:
    """VGG/AlexNet (opset 9): Dropout with its mask output, between convs and before the head."""
    g = _Graph(seed)
    first = g.node("Relu", [g.conv("data", 3, 8)])[0]
    dropped, _mask = g.node("Dropout", [first], outputs=2, ratio=0.5)
    second = g.node("Relu", [g.conv(dropped, 8, 12)])[0]
    dropped2, _mask2 = g.node("Dropout", [second], outputs=2, ratio=0.5)
    return g.model("data", g.head(dropped2, 12))


def spatial_bn(seed: int = 0) -> onnx.ModelProto:
    """Inception v2: conv, BatchNormalization on the 4-D map, then a per-channel scale and shift
    written as Unsqueeze -> Mul/Add of 1-D constants (DenseNet and Inception v2 do this)."""
    g = _Graph(seed)
    normed = g.bn(g.conv("data", 3, 8), 8)
    scale = g.node("Unsqueeze", [g.const("sc_w", g.rng.uniform(0.5, 1.5, 8).astype(np.float32))], axes=[1, 2])[0]
    shift = g.node("Unsqueeze", [g.const("sc_b", g.rng.normal(0, 0.1, 8).astype(np.float32))], axes=[1, 2])[0]
    scaled = g.node("Add", [g.node("Mul", [normed, scale])[0], shift])[0]
    second = g.node("Relu", [g.bn(g.conv(g.node("Relu", [scaled])[0], 8, 10), 10)])[0]
    return g.model("data", g.head(second, 10))


def bn_after_concat(seed: int = 0) -> onnx.ModelProto:
    """DenseNet: each layer's output concatenated to its input, then BN + Relu + conv on the concat."""
    g = _Graph(seed)
    stem = g.conv("data", 3, 8)
    grown = g.conv(g.node("Relu", [g.bn(stem, 8)])[0], 8, 4)
    dense = g.node("Concat", [stem, grown], axis=1)[0]
    grown2 = g.conv(g.node("Relu", [g.bn(dense, 12)])[0], 12, 4)
    dense2 = g.node("Concat", [dense, grown2], axis=1)[0]
    out = g.conv(g.node("Relu", [g.bn(dense2, 16)])[0], 16, 10, kernel=1)
    return g.model("data", g.head(out, 10))


def channel_shuffle(seed: int = 0, groups: int = 2) -> onnx.ModelProto:
    """ShuffleNet (caffe2): grouped 1x1 conv, BN, Reshape [N, g, c/g, H, W] -> Transpose ->
    Reshape [N, c, H, W] (shape constants as initializers), depthwise 3x3, grouped 1x1, Sum residual."""
    g = _Graph(seed)
    stem = g.node("Relu", [g.bn(g.conv("data", 3, 8), 8)])[0]
    squeezed = g.node("Relu", [g.bn(g.conv(stem, 8, 8, group=groups, kernel=1), 8)])[0]
    split = g.const("OC2_DUMMY_1", np.array([1, groups, 8 // groups, SIZE, SIZE], np.int64))
    swapped = g.node("Transpose", [g.node("Reshape", [squeezed, split])[0]], perm=[0, 2, 1, 3, 4])[0]
    merge = g.const("OC2_DUMMY_3", np.array([1, 8, SIZE, SIZE], np.int64))
    shuffled = g.node("Reshape", [swapped, merge])[0]
    depthwise = g.bn(g.conv(shuffled, 8, 8, group=8), 8)
    expanded = g.bn(g.conv(depthwise, 8, 8, group=groups, kernel=1), 8)
    merged = g.node("Relu", [g.node("Sum", [stem, expanded])[0]])[0]
    return g.model("data", g.head(g.conv(merged, 8, 10, kernel=1), 10))


PATTERNS = {
    "sum_residual": sum_residual,
    "lrn": lrn,
    "dropout_mask": dropout_mask,
    "spatial_bn": spatial_bn,
    "bn_after_concat": bn_after_concat,
    "channel_shuffle": channel_shuffle,
}
