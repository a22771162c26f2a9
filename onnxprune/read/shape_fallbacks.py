"""Where ONNX shape inference leaves gaps: onnxruntime's symbolic inference, then a probe run.

ONNX data propagation stops at Div, float arithmetic, many contrib ops and data-dependent
shapes. onnxruntime's symbolic shape inference propagates computed shape values further; what
is still unknown is read off one onnxruntime run on zero inputs of the given shape, with every
unresolved tensor exposed as an output. Both are imported lazily: a graph without gaps (the
zoo, ResNet-50) never pays for sympy or a session.

Only gaps that matter start a fallback: a tensor that some node reads (or a graph output). An
output nothing reads (a Dropout's mask, an unused Split or TopK output) has no cost and couples
nothing; on the ONNX Model Zoo's classic CNNs such a mask was the only gap, and the probe run it
started doubled the memory and quadrupled the time of `profile`.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

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


def readers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the first main-graph node that reads it (directly or inside its subgraphs)."""
    found: dict[str, onnx.NodeProto] = {}
    for node in model.graph.node:
        for name in _reads(node):
            found.setdefault(name, node)
    return found


def _reads(node: onnx.NodeProto) -> list[str]:
    names = list(node.input)
    for attr in node.attribute:
        for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else []) + list(attr.graphs):
            for inner in sub.node:
                names += _reads(inner)
    return names


def split_by_use(model: onnx.ModelProto, missing: list[str]) -> tuple[list[str], list[str]]:
    """(unknown tensors something reads or the graph outputs, unknown tensors nothing reads)."""
    read = readers(model)
    outputs = {o.name for o in model.graph.output}
    used = [name for name in missing if name in read or name in outputs]
    return used, [name for name in missing if name not in read and name not in outputs]


def reason(model: onnx.ModelProto, names: list[str]) -> str:
    """Why a fallback runs: how many tensors, and the first one with the node that reads it."""
    read = readers(model)
    first = names[0]
    node = read.get(first)
    by = f"read by {node.op_type} {node.name!r}" if node is not None else "a graph output"
    return f"ONNX inference left {len(names)} tensor(s) unknown that the graph uses, e.g. {first!r} ({by})"


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
    import logging  # here: every profile imports this module, few run the symbolic fallback

    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    # on failure onnxruntime saves `sym_shape_infer_temp.onnx` in the current folder (over any file of
    # that name): it runs in a folder of its own, removed after
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="onnxprune-symbolic-") as scratch:
        os.chdir(scratch)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                inferred = SymbolicShapeInference.infer_shapes(skeleton_model, auto_merge=True, guess_output_rank=False)
        finally:
            os.chdir(here)
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
    from onnxprune.read.lazy_weights import materialized_copy

    probed = materialized_copy(model)  # the run needs the weights' bytes
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
