"""Shape inference on a weightless skeleton of the model.

Large initializers are turned into typed graph inputs before `onnx.shape_inference` runs, so a
100 MB model is not serialised through protobuf twice; small ones (shape constants) stay, so
data propagation still resolves Reshape targets.
"""

from __future__ import annotations

import math

import onnx
from onnx import helper

from onnxprune.errors import UserError
from onnxprune.read.names import display_name
from onnxprune.read.symbols import bound_symbols
from onnxprune.read.tensor_info import TensorInfo, dims_of  # noqa: F401  (re-exported: shapes.TensorInfo)

SMALL_INITIALIZER = 64  # elements: shape/axes constants stay real for data propagation
DEFAULT_BATCH = 1


def skeleton(model: onnx.ModelProto, keep_output_shapes: bool = False) -> onnx.ModelProto:
    """The model with its large weights replaced by typed inputs: same structure, no payload."""
    graph = model.graph
    skeleton_graph = onnx.GraphProto(name=graph.name)
    skeleton_graph.node.extend(graph.node)
    if keep_output_shapes:
        skeleton_graph.output.extend(graph.output)
    else:  # exporters' symbolic output dims must not fight the batch we pick
        skeleton_graph.output.extend(
            helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None) for o in graph.output
        )
    skeleton_graph.input.extend(graph.input)
    seen_inputs = {i.name for i in graph.input}
    for init in graph.initializer:
        if math.prod(init.dims) <= SMALL_INITIALIZER:  # (math.prod: np.prod costs 10 us a call)
            skeleton_graph.initializer.append(init)
        elif init.name not in seen_inputs:
            skeleton_graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    for sparse in graph.sparse_initializer:
        skeleton_graph.sparse_initializer.append(sparse)
    skeleton = helper.make_model(skeleton_graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    skeleton.functions.extend(model.functions)
    return skeleton


_SPATIAL_LETTERS = {3: ("L",), 4: ("H", "W"), 5: ("D", "H", "W")}  # dims after batch and channels


def input_shape_hint(value: onnx.ValueInfoProto) -> str:
    """`NAME=1x3xHxW` for an input: its own rank and known dims, 1 for a symbolic batch, a
    letter for every other symbolic dim (from names like "height", else H, W in order for the
    spatial dims of an image, channels first or last)."""
    dims = value.type.tensor_type.shape.dim
    if not dims:
        return f"{value.name}=1x3xHxW"
    known = [d.HasField("dim_value") and d.dim_value > 0 for d in dims]
    symbolic = [p for p in range(1, len(dims)) if not known[p]]
    letters = _SPATIAL_LETTERS.get(len(dims), ())
    by_position = dict(zip(symbolic, letters)) if len(symbolic) == len(letters) else {}
    parts = []
    for position, dim in enumerate(dims):
        if known[position]:
            parts.append(str(dim.dim_value))
        elif position == 0:
            parts.append(str(DEFAULT_BATCH))
        else:
            parts.append(_letter(dim.dim_param) or by_position.get(position, f"D{position}"))
    return f"{value.name}={'x'.join(parts)}"


def _letter(param: str) -> str | None:
    lowered = (param or "").lower()
    if "height" in lowered or lowered in ("h", "img_h"):
        return "H"
    if "width" in lowered or lowered in ("w", "img_w"):
        return "W"
    return None


def input_shape_hints(model: onnx.ModelProto, only_symbolic: bool = False) -> str:
    """`--input-shape` options for the model's real inputs (only those with a symbolic dim, if
    `only_symbolic`), as the user could type them."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if only_symbolic:
        inputs = [
            v
            for v in inputs
            if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in v.type.tensor_type.shape.dim)
        ]
    return " ".join(f"--input-shape {input_shape_hint(v)}" for v in inputs)


def _fix_input_dims(skeleton: onnx.ModelProto, input_shapes: dict | None, initializer_names: set) -> None:
    graph_inputs = [i for i in skeleton.graph.input if i.name not in initializer_names]
    names = {i.name for i in graph_inputs}
    for name in input_shapes or {}:
        if name not in names:
            raise UserError(
                f"--input-shape {name}=...: the model has no input {name!r}; its inputs are {sorted(names)}"
            )
    bound = bound_symbols(graph_inputs, input_shapes, DEFAULT_BATCH)
    for value in graph_inputs:
        dims = value.type.tensor_type.shape.dim
        wanted = (input_shapes or {}).get(value.name)
        if wanted is not None:
            if dims and len(dims) != len(wanted):
                raise UserError(
                    f"--input-shape {value.name}: the model's input has rank {len(dims)}, got {len(wanted)} dims"
                )
            del value.type.tensor_type.shape.dim[:]
            for d in wanted:
                value.type.tensor_type.shape.dim.add().dim_value = int(d)
            continue
        for position, dim in enumerate(dims):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                size = bound.get(dim.dim_param) if dim.dim_param else None
                if position != 0 and size is None:
                    raise UserError(
                        f"input {value.name!r} has a symbolic dimension {position} "
                        f"({dim.dim_param or '?'}); give it with --input-shape {input_shape_hint(value)}"
                    )
                dim.Clear()
                dim.dim_value = DEFAULT_BATCH if size is None else size  # a symbolic batch defaults to 1


class ShapeInfos(dict):
    """Tensor name -> TensorInfo, plus how the shapes were resolved ("onnx", "symbolic", "probe"),
    which fallback ran and why (`fallbacks`), and, where some stayed unknown, why each failed."""

    def __init__(self, *args, method: str = "onnx", failures: list[str] | None = None):
        super().__init__(*args)
        self.method = method
        self.failures = list(failures or [])
        self.probed: set = set()  # shapes read off one run: true for that input, not to be written as value_info
        self.fallbacks: list[dict] = []  # {"method", "reason", "tensors", "resolved", "error"} per fallback run
        self.unknown_unread: list[str] = []  # unknown tensors nothing reads: no fallback runs for them


def infer_shapes(model: onnx.ModelProto, input_shapes: dict | None = None) -> ShapeInfos:
    """Every tensor's static shape and element type, keyed by name.

    ONNX inference with data propagation first; only when it leaves tensors unknown,
    onnxruntime's symbolic inference, then a probe run (shape_fallbacks).
    """
    initializer_names = {i.name for i in model.graph.initializer}
    skeleton_model = skeleton(model)
    _fix_input_dims(skeleton_model, input_shapes, initializer_names)
    infos, non_tensor = ShapeInfos(), set()
    onnx_error = None
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton_model, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        onnx_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        inferred = skeleton_model  # the fallbacks may still resolve it
    graph = inferred.graph
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        if value.type.HasField("tensor_type"):
            infos[value.name] = TensorInfo(dims_of(value.type), value.type.tensor_type.elem_type)
        elif value.type.WhichOneof("value") is not None:
            non_tensor.add(value.name)
    for init in model.graph.initializer:
        infos[init.name] = TensorInfo(tuple(int(d) for d in init.dims), init.data_type)
    unresolved = _fill_gaps(model, skeleton_model, infos, non_tensor, initializer_names)
    if onnx_error is not None and unresolved:
        raise UserError(f"shape inference failed: {onnx_error}; check the model or give --input-shape")
    _check_conv_channels(model, infos)
    return infos


def _fill_gaps(model, skeleton_model, infos: ShapeInfos, non_tensor: set, initializer_names: set) -> list[str]:
    """Resolve what ONNX inference left unknown; returns the tensors still unknown."""
    from onnxprune.read import shape_fallbacks

    def still_missing() -> list[str]:
        unknown = shape_fallbacks.gaps(model, infos, non_tensor)
        if not unknown:
            return unknown
        used, unread = shape_fallbacks.split_by_use(model, unknown)
        infos.unknown_unread = unread  # no cost, no coupling: never worth a fallback
        return used

    def record(method: str, missing: list[str]) -> dict:
        entry = {"method": method, "reason": shape_fallbacks.reason(model, missing), "tensors": len(missing)}
        infos.fallbacks.append(entry)
        return entry

    missing = still_missing()
    if not missing:
        return missing
    entry = record("symbolic", missing)
    try:
        entry["resolved"] = shape_fallbacks.merge(infos, shape_fallbacks.symbolic(skeleton_model), missing)
        infos.method = "symbolic"
    except Exception as exc:  # noqa: BLE001 - any failure of the optional tool means: try the probe
        entry["resolved"], entry["error"] = 0, _first_line(exc)
        infos.failures.append(f"symbolic inference: {_first_line(exc)}")
    missing = still_missing()
    if not missing:
        return missing
    entry = record("probe", missing)
    inputs = [i for i in skeleton_model.graph.input if i.name not in initializer_names]
    try:
        found = shape_fallbacks.probe(model, inputs, missing)
        entry["resolved"] = shape_fallbacks.merge(infos, found, missing)
        infos.probed = {name for name in missing if name in found}
        infos.method = "probe"
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises assorted errors on graphs it cannot run
        entry["resolved"], entry["error"] = 0, _first_line(exc)
        infos.failures.append(f"probe run: {_first_line(exc)}")
    missing = still_missing()
    if missing and not infos.failures:
        infos.failures.append("probe run: some tensors have no value on a zero input")
    return missing


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _check_conv_channels(model: onnx.ModelProto, infos: dict[str, TensorInfo]) -> None:
    """Conv channel arithmetic that ONNX shape inference does not verify (onnxruntime fails at run time).

    Input channels must equal weight in-channels x group, and out-channels must split into the
    groups; a model breaking this cannot run, and pruning it would only move the error.
    """
    for index, node in enumerate(model.graph.node):
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        data, weight = infos.get(node.input[0]), infos.get(node.input[1])
        name = display_name(node, index)
        if group < 1:
            raise UserError(f"node {name!r} (Conv): group={group} must be at least 1; fix or re-export the model")
        if weight is None or not weight.known or len(weight.shape) < 2:
            continue
        if weight.shape[0] % group:
            raise UserError(
                f"node {name!r} (Conv): {weight.shape[0]} output channels do not split into group={group}; "
                f"fix or re-export the model"
            )
        if (
            data is not None
            and data.shape is not None
            and len(data.shape) >= 2
            and isinstance(data.shape[1], int)
            and data.shape[1] != weight.shape[1] * group
        ):
            raise UserError(
                f"node {name!r} (Conv): input has {data.shape[1]} channels but the weight "
                f"{list(weight.shape)} with group={group} expects {weight.shape[1] * group}; "
                f"fix or re-export the model"
            )
