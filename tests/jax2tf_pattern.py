"""A classifier as jax2tf + tf2onnx write it (issue 25, item 6), built by hand with onnx.helper.

jax works channels-last: a 1-D conv is Transpose(NWC -> NCW) -> Conv -> Transpose back; flax's
LayerNorm is written out (mean, mean of squares, rsqrt, scale, bias) and every implicit broadcast
is an explicit `broadcast_in_dim`, i.e. an Expand to a target computed from `Shape` (the batch is
symbolic); `reshape` merges an inner spatial axis into the channel axis ([N, W, C] -> [N, W/2, 2C])
and flattens ([N, W, C] -> [N, W*C]) before the Dense layers (MatMul + Add).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Graph:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, value, stem: str) -> str:
        self.count += 1
        name = f"{stem}_{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, shape, stem: str, scale: float = 0.3) -> str:
        return self.const((self.rng.standard_normal(shape) * scale).astype(np.float32), stem)

    def op(self, op: str, inputs: list[str], name: str = "", **attrs) -> str:
        self.count += 1
        out = f"{(name or op).lower()}_{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or f"jax2tf/{op}_{self.count}", **attrs))
        return out

    def broadcast_to(self, x: str, like: str) -> str:
        """jax's broadcast_in_dim with a symbolic batch: Expand to Shape(like)."""
        return self.op("Expand", [x, self.op("Shape", [like])])

    def conv1d(self, x_nwc: str, cin: int, cout: int, name: str, stride: int = 1) -> str:
        x = self.op("Transpose", [x_nwc], perm=[0, 2, 1])
        w, b = self.weight((cout, cin, 3), f"{name}/kernel"), self.weight((cout,), f"{name}/bias", 0.1)
        y = self.op("Conv", [x, w, b], name, kernel_shape=[3], pads=[1, 1], strides=[stride])
        return self.op("Transpose", [y], perm=[0, 2, 1])

    def layer_norm(self, x: str, channels: int, name: str) -> str:
        """flax.linen.LayerNorm over the last (channel) axis, written out."""
        mean = self.op("ReduceMean", [x], f"{name}/mean", axes=[-1], keepdims=1)
        mean2 = self.op("ReduceMean", [self.op("Mul", [x, x])], f"{name}/mean2", axes=[-1], keepdims=1)
        var = self.op("Sub", [mean2, self.op("Mul", [mean, mean])])
        var = self.op("Max", [var, self.const(np.float32(0), "zero")])
        inv = self.op("Reciprocal", [self.op("Sqrt", [self.op("Add", [var, self.const(np.float32(1e-6), "eps")])])])
        shape = self.const(np.array([1, 1, channels], np.int64), "shape")
        scale = self.op(
            "Reshape",
            [self.const(1 + 0.2 * self.rng.standard_normal(channels).astype(np.float32), f"{name}/scale"), shape],
        )
        bias = self.op("Reshape", [self.weight((channels,), f"{name}/bias", 0.1), shape])
        mul = self.op("Mul", [self.broadcast_to(inv, x), self.broadcast_to(scale, x)])
        centred = self.op("Sub", [x, self.broadcast_to(mean, x)])
        return self.op("Add", [self.op("Mul", [centred, mul]), self.broadcast_to(bias, x)])

    def dense(self, x: str, cin: int, cout: int, name: str) -> str:
        y = self.op("MatMul", [x, self.weight((cin, cout), f"{name}/kernel")], name)
        return self.op("Add", [y, self.weight((cout,), f"{name}/bias", 0.1)])

    def reshape_keep_batch(self, x: str, tail: list[int]) -> str:
        batch = self.op("Slice", [self.op("Shape", [x]), self.const([0], "start"), self.const([1], "end")])
        target = self.op("Concat", [batch, self.const(np.array(tail, np.int64), "tail")], axis=0)
        return self.op("Reshape", [x, target])


def jax2tf_classifier(width: int = 32, seed: int = 0, classes: int = 10) -> onnx.ModelProto:
    """[N, width, 4] -> conv1d(16) -> LayerNorm -> relu -> conv1d(24, stride 2) -> relu -> reshape to
    [N, width/4, 48] -> Dense(32) -> relu -> flatten -> Dense(classes)."""
    g = _Graph(seed)
    h = g.conv1d("x", 4, 16, "conv1")
    h = g.op("Relu", [g.layer_norm(h, 16, "norm1")])
    h = g.op("Relu", [g.conv1d(h, 16, 24, "conv2", stride=2)])  # [N, width/2, 24]
    h = g.reshape_keep_batch(h, [width // 4, 48])  # pairs of positions merged into the channels
    h = g.op("Relu", [g.dense(h, 48, 32, "dense1")])  # [N, width/4, 32]
    h = g.reshape_keep_batch(h, [width // 4 * 32])  # flatten, channels last
    logits = g.dense(h, width // 4 * 32, classes, "head")
    graph = helper.make_graph(
        g.nodes,
        "jax2tf_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width, 4])],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["N", classes])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    return model
