"""Where ONNX shape inference leaves gaps: onnxruntime's symbolic inference, then a probe run.

ONNX data propagation stops at Div, float arithmetic, many contrib ops and data-dependent
shapes. onnxruntime's symbolic shape inference propagates computed shape values further; what
is still unknown is read off one onnxruntime run on zero inputs of the given shape, with every
unresolved tensor exposed as an output. Both are imported lazily: a graph without gaps (the
zoo, ResNet-50) never pays for sympy or a session.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import onnx
from onnx import helper

from onnxprune.read.tensor_info import TensorInfo, dims_of


def gaps(model: onnx.ModelProto, infos: dict, non_tensor: set) -> list[str]:
    """Outputs of the main graph's nodes whose shape is not fully known (sequences excepted)."""
    missing = []
    for node in model.graph.node:
        for name in node.output:
            if not name or name in non_tensor:
                continue
            info = infos.get(name)
            if info is None or not info.known:
                missing.append(name)
    return missing


def merge(infos: dict, found: dict, names: list[str]) -> int:
    """Fill `names` from `found` where it knows every dim; returns how many were filled."""
    filled = 0
    for name in names:
        info = found.get(name)
        if info is not None and info.known:
            infos[name] = info
            filled += 1
    return filled


def symbolic(skeleton_model: onnx.ModelProto) -> dict[str, TensorInfo]:
    """onnxruntime's symbolic shape inference on the (input-fixed) skeleton; raises on failure."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        inferred = SymbolicShapeInference.infer_shapes(skeleton_model, auto_merge=True, guess_output_rank=False)
    if inferred is None:
        raise RuntimeError("symbolic inference gave up")
    found = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        if value.type.HasField("tensor_type"):
            found[value.name] = TensorInfo(dims_of(value.type), value.type.tensor_type.elem_type)
    return found


def probe(model: onnx.ModelProto, inputs: list[onnx.ValueInfoProto], names: list[str]) -> dict[str, TensorInfo]:
    """One onnxruntime run on zero inputs (shapes from `inputs`), `names` exposed as outputs."""
    import onnxruntime as ort

    feeds = {}
    for value in inputs:
        dims = dims_of(value.type)
        if dims is None or not all(isinstance(d, int) and d >= 0 for d in dims):
            raise RuntimeError(f"input {value.name!r} has no concrete shape")
        dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        feeds[value.name] = np.zeros(dims, dtype=dtype)
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    del probed.graph.value_info[:]  # exporters' stale or `?` shapes must not fight the run
    declared = {o.name for o in probed.graph.output}
    probed.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in declared)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    options.log_severity_level = 4
    session = ort.InferenceSession(probed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    found = {}
    for name, value in zip(names, session.run(names, feeds)):
        if isinstance(value, np.ndarray):
            found[name] = TensorInfo(tuple(int(d) for d in value.shape), helper.np_dtype_to_tensor_dtype(value.dtype))
    return found
