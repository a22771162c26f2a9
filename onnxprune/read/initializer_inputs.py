"""Graph inputs that mirror initializers, kept in step when an edit adds, cuts or drops weights.

Below IR version 4 every initializer must also be listed as a graph input (the ONNX Model Zoo's
classic onnx-caffe2 exports do so); from IR 4 on an exporter may still list some (torch's
`keep_initializers_as_inputs`), as overridable defaults. Either way such an input declares the
initializer's type and shape, so an edit that slices a weight must reshape its input, one that
drops a weight must drop its input, and (IR < 4) one that adds a weight must list it.
"""

from __future__ import annotations

import onnx
from onnx import helper

FIRST_IR_WITHOUT_INITIALIZER_INPUTS = 4  # IR 4 (ONNX 1.3, opset 8/9): initializers need not be inputs


def initializer_inputs(model: onnx.ModelProto) -> set[str]:
    """Names of the graph inputs that are also initializers."""
    initializers = {init.name for init in model.graph.initializer}
    return {value.name for value in model.graph.input if value.name in initializers}


def sync_initializer_inputs(model: onnx.ModelProto, mirrored: set[str]) -> None:
    """After an edit: the inputs in `mirrored` (initializer_inputs before it) follow their
    initializers' shapes or go with them; below IR 4 every new initializer gets its input."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    inputs = []
    for value in list(graph.input):
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(value)
        value = copy
        init = initializers.get(value.name)
        if init is None:
            if value.name in mirrored:
                continue  # its initializer was dropped (no reader left): so is the input
        elif _dims(value) != list(init.dims) or value.type.tensor_type.elem_type != init.data_type:
            value = helper.make_tensor_value_info(value.name, init.data_type, list(init.dims))
        inputs.append(value)
    if model.ir_version < FIRST_IR_WITHOUT_INITIALIZER_INPUTS:
        listed = {value.name for value in inputs}
        inputs += [
            helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
            for init in graph.initializer
            if init.name not in listed
        ]
    del graph.input[:]
    graph.input.extend(inputs)


def _dims(value: onnx.ValueInfoProto) -> list | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor_type.shape.dim]


def mismatched_initializer_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs that declare another type or shape than the initializer of the same name (the
    checker does not compare them; onnxruntime refuses such a graph): one description each."""
    initializers = {init.name: init for init in model.graph.initializer}
    found = []
    for value in model.graph.input:
        init = initializers.get(value.name)
        if init is None:
            continue
        declared = value.type.tensor_type.elem_type
        if declared and declared != init.data_type:
            found.append(
                f"initializer {value.name!r} is stored as {onnx.TensorProto.DataType.Name(init.data_type)} but the "
                f"graph input of that name declares {onnx.TensorProto.DataType.Name(declared)}"
            )
            continue
        dims = _dims(value)
        if dims is not None and all(isinstance(d, int) and d > 0 for d in dims) and dims != list(init.dims):
            found.append(
                f"initializer {value.name!r} has shape {list(init.dims)} but the graph input of that name "
                f"declares {dims}"
            )
    return found
