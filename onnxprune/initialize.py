"""Re-initialise a pruned model's weights for training from scratch (the paper's method).

Conv/Gemm/MatMul weights: Kaiming-normal (fan-in, ReLU gain), as torch's `kaiming_normal_`;
biases 0; BatchNorm scale 1, shift 0, running mean 0, running variance 1.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)


def _fan_in(op: str, shape: tuple, attrs: dict) -> int:
    if op == "Conv":
        return int(np.prod(shape[1:]))
    if op == "ConvTranspose":
        return int(shape[1] * np.prod(shape[2:]))
    if op == "Gemm":
        return int(shape[1] if attrs.get("transB", 0) else shape[0])
    return int(shape[0])  # MatMul [K, N]


def reinitialize(model: onnx.ModelProto, rng: np.random.Generator) -> None:
    """In place, in graph order, so the same seed gives the same bytes."""
    index = {init.name: i for i, init in enumerate(model.graph.initializer)}
    producers = {out: node for node in model.graph.node for out in node.output}
    done: set[str] = set()

    def put(name: str, make) -> None:
        """Draw and write one tensor at once: only one fresh array is alive at a time."""
        if name in index and name not in done:
            init = model.graph.initializer[index[name]]
            if init.data_type in FLOAT_TYPES:
                done.add(name)
                dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
                _write(init, np.asarray(make(tuple(init.dims)), dtype=dtype))

    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(node.input) > 1:
            weight = node.input[1]
            if node.op_type == "MatMul" and (weight not in index or len(model.graph.initializer[index[weight]].dims) != 2):
                continue
            put(weight, lambda s, op=node.op_type, a=attrs: rng.standard_normal(s, dtype=np.float32)
                * np.float32(np.sqrt(2.0 / max(_fan_in(op, s, a), 1))))
            if len(node.input) > 2 and node.input[2]:
                put(node.input[2], np.zeros)
        elif node.op_type in ("BatchNormalization", "InstanceNormalization"):
            for position, make in enumerate((np.ones, np.zeros, np.zeros, np.ones)[: len(node.input) - 1], start=1):
                put(node.input[position], make)
        elif node.op_type == "Add":  # the bias of a MatMul + Add linear layer
            sources = [producers.get(i) for i in node.input]
            if any(p is not None and p.op_type == "MatMul" for p in sources):
                for name in node.input:
                    put(name, np.zeros)


def _write(init: onnx.TensorProto, value: np.ndarray) -> None:
    if init.HasField("raw_data"):
        init.raw_data = np.ascontiguousarray(value).tobytes()  # one copy, not from_array + CopyFrom
    else:
        init.CopyFrom(numpy_helper.from_array(value, init.name))
