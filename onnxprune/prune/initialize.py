"""Re-initialise a pruned model's weights for training from scratch (the paper's method).

Conv/ConvTranspose/Gemm/MatMul weights: normal with fan-in scaling per layer -- Kaiming's ReLU
gain (std sqrt(2 / fan_in), torch's `kaiming_normal_`) for hidden layers, gain 1 (std
sqrt(1 / fan_in)) for head layers, whose output reaches a graph output without passing another
layer (a classifier, every output conv of a detector's multi-output head): no ReLU follows them,
so the ReLU gain would only inflate the initial logits. Biases 0; BatchNorm scale 1, shift 0,
running mean 0, running variance 1. Shapes never change, so heads keep their output layout.

A bias written as its own Add after a layer (MatMul + Add; paddle2onnx's Conv + Add(Reshape(Constant)))
is zeroed at its source constant when it holds one value per output channel.

Weights are found by tensor name among the initializers *and* the `Constant` nodes (paddle2onnx
and some TF exports hold weights in Constant nodes); only float tensors read as a layer's weight,
bias or normalisation parameter are touched -- shape tensors, anchors and grids are left as given.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.read import lazy_weights
from onnxprune.read.constant_folding import FOLDABLE_OPS
from onnxprune.read.graph import node_reads

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _fan_in(op: str, shape: tuple, attrs: dict) -> int:
    if op == "Conv":
        return int(np.prod(shape[1:]))
    if op == "ConvTranspose":
        return int(shape[1] * np.prod(shape[2:]))
    if op == "Gemm":
        return int(shape[1] if attrs.get("transB", 0) else shape[0])
    return int(shape[0])  # MatMul [K, N]


def _stored_tensors(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Tensor name -> the TensorProto holding its value: initializers and Constant nodes' `value`."""
    stored = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] not in stored:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    stored[node.output[0]] = attr.t
    return stored


def _head_layers(model: onnx.ModelProto, layers: set[int]) -> set[int]:
    """Indices of layer nodes with a path to a graph output that passes no other layer."""
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = defaultdict(list)
    for index, node in enumerate(nodes):
        for name in node_reads(node):  # an If reading a layer's output inside a branch consumes it
            consumers[name].append(index)
    outputs = {o.name for o in model.graph.output}
    heads = set()
    for index in layers:
        seen, stack = set(), list(nodes[index].output)
        while stack:
            name = stack.pop()
            if name in outputs:
                heads.add(index)
                break
            if name in seen:
                continue
            seen.add(name)
            for user in consumers.get(name, []):
                if user not in layers:
                    stack.extend(o for o in nodes[user].output if o)
    return heads


def reinitialize(model: onnx.ModelProto, rng: np.random.Generator) -> None:
    """In place, in graph order, so the same seed gives the same bytes."""
    stored = _stored_tensors(model)
    nodes = list(model.graph.node)
    producers = {out: node for node in nodes for out in node.output}
    done: set[str] = set()

    def put(name: str, make: Callable[[tuple], np.ndarray]) -> None:
        """Draw and write one tensor at once: only one fresh array is alive at a time."""
        tensor = stored.get(name)
        if tensor is not None and name not in done and tensor.data_type in FLOAT_TYPES:
            done.add(name)
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
            _write(tensor, np.asarray(make(tuple(tensor.dims)), dtype=dtype))

    def is_layer(node: onnx.NodeProto) -> bool:
        if node.op_type not in LAYER_OPS or len(node.input) < 2:
            return False
        weight = stored.get(node.input[1])
        return weight is not None and (node.op_type != "MatMul" or len(weight.dims) == 2)

    layers = {i for i, node in enumerate(nodes) if is_layer(node)}
    heads = _head_layers(model, layers)
    for index, node in enumerate(nodes):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if index in layers:
            gain = 1.0 if index in heads else 2.0
            put(
                node.input[1],
                lambda s, op=node.op_type, a=attrs, g=gain: (
                    rng.standard_normal(s, dtype=np.float32) * np.float32(np.sqrt(g / max(_fan_in(op, s, a), 1)))
                ),
            )
            if len(node.input) > 2 and node.input[2]:
                put(node.input[2], np.zeros)
        elif node.op_type in ("BatchNormalization", "InstanceNormalization"):
            for position, make in enumerate((np.ones, np.zeros, np.zeros, np.ones)[: len(node.input) - 1], start=1):
                put(node.input[position], make)
        elif (
            node.op_type == "Add"
        ):  # a layer's bias as its own Add: MatMul + Add, paddle's Conv + Add(Reshape(Constant))
            layer = next((p for p in map(producers.get, node.input) if p is not None and is_layer(p)), None)
            if layer is None:
                continue
            channels = _out_channels(layer, stored[layer.input[1]])
            for name in node.input:
                source = _constant_source(name, producers, stored)
                if source is not None and int(np.prod(stored[source].dims)) == channels:
                    put(source, np.zeros)


def _constant_source(name: str, producers: dict, stored: dict) -> str | None:
    """The stored tensor `name` is, or is made from by shape-only ops (a bias behind Reshape(Constant))."""
    while name not in stored:
        node = producers.get(name)
        if node is None or node.op_type not in FOLDABLE_OPS | {"Identity"}:
            return None
        name = node.input[0]
    return name


def _out_channels(layer: onnx.NodeProto, weight: onnx.TensorProto) -> int:
    if layer.op_type == "Conv":
        return int(weight.dims[0])
    trans_b = any(a.name == "transB" and a.i for a in layer.attribute)
    return int(weight.dims[0] if layer.op_type == "Gemm" and trans_b else weight.dims[-1])


def _write(tensor: onnx.TensorProto, value: np.ndarray) -> None:
    if tensor.HasField("raw_data") or lazy_weights.is_lazy(tensor):  # a weight left in the input file: never read
        tensor.ClearField("external_data")
        tensor.ClearField("data_location")
        tensor.raw_data = np.ascontiguousarray(value).tobytes()  # one copy, not from_array + CopyFrom
    else:
        tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
