"""Load ONNX models with one clear error per failure (saving them: onnxprune.read.save).

onnx and numpy are imported where they are used: the CLI imports this module (through
onnxprune.read.save) to check output paths before any work, and `--help` must not pay for them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

from onnxprune.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

ModelLike = Union[str, os.PathLike, "onnx.ModelProto"]


def file_sha256(path: os.PathLike | str) -> str:
    """The file's SHA-256 (hex), read in 1 MiB blocks: never the whole file in memory."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _external_locations(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(tensor name, location) for every tensor whose bytes live in an external file."""
    import onnx

    found = []
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            info = {entry.key: entry.value for entry in tensor.external_data}
            found.append((tensor.name, info.get("location", "")))
    return found


def _confine_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Refuse external data outside the model's folder (path traversal) or missing files.
    (A lazy load's own references point at the model file itself, by its absolute path.)"""
    base = path.parent.resolve()
    itself = str(path.resolve())
    for tensor_name, location in _external_locations(model):
        if location == itself:
            continue
        target = (base / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(base):
            raise UserError(
                f"{path}: tensor {tensor_name!r} points its external data at {location!r}, outside the "
                f"model's folder; refusing (move the data file next to the model)"
            )
        if not target.is_file():
            raise UserError(
                f"{path}: external data file {location!r} for tensor {tensor_name!r} is missing; "
                f"put it next to the model"
            )


def load_model(source: ModelLike, *, check: bool = True, lazy: bool = False) -> onnx.ModelProto:
    """Load a model from a path (or pass a ModelProto through), raising UserError on bad input.

    `lazy`: large weights stay in the file (lazy_weights), read when something needs their
    values; the analysis needs only their shapes. Such a model must be materialized
    (`lazy_weights.materialize`) before onnxruntime or a user sees it; `save_model` streams them.
    """
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source
    path = Path(source)
    if not path.exists():
        raise UserError(f"{path}: no such file; give the path of an .onnx model")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give the path of an .onnx model file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty; give the path of an .onnx model")
    model = _parse(path, lazy)
    if not model.graph.node and not model.graph.output:
        raise UserError(f"{path}: not an ONNX model (no graph); is the file truncated or of another format?")
    _require_utf8_names(model, path)
    _confine_external_data(model, path)
    try:
        _load_external_data(model, path, lazy)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read its external data ({exc}); is the data file complete?") from None
    if check:
        check_model(model, where=str(path))
    return model


def _parse(path: Path, lazy: bool) -> onnx.ModelProto:
    import onnx
    from google.protobuf.message import DecodeError

    from onnxprune.read import lazy_weights

    try:
        if lazy:
            try:
                return lazy_weights.scan(path)
            except (lazy_weights.NotScannable, ValueError, OSError):
                pass  # not a well-formed message: the ordinary parse below says what is wrong
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, TypeError, UnicodeDecodeError, OSError) as exc:
        raise UserError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}); is the file truncated or of another format?"
        ) from None
    except Exception as exc:  # protobuf raises a variety of internal errors on junk
        raise UserError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}); is the file truncated or of another format?"
        ) from None


def _load_external_data(model: onnx.ModelProto, path: Path, lazy: bool) -> None:
    """Weights in side files: read (eager), or left there with an absolute location (lazy; only
    the main graph's initializers: tensors in subgraphs and attributes are always read)."""
    import onnx

    from onnxprune.read import lazy_weights

    if not lazy:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        return
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL or lazy_weights.is_lazy(tensor):
            continue
        lazy_weights.make_absolute(tensor, path.parent)
        location, offset, length = lazy_weights.source(tensor)
        if offset + length > os.path.getsize(location):
            raise OSError(f"{Path(location).name} ends before the {length} bytes of {tensor.name!r} at offset {offset}")
        if length < lazy_weights.LAZY_MIN_BYTES:  # small ones in memory, as from the model file itself
            lazy_weights.materialize_tensor(tensor)
    for tensor in onnx.external_data_helper._get_all_tensors(model):  # subgraphs and attributes
        if tensor.data_location == onnx.TensorProto.EXTERNAL and not lazy_weights.is_lazy(tensor):
            onnx.external_data_helper.load_external_data_for_tensor(tensor, str(path.parent))
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]


def _require_utf8_names(model: onnx.ModelProto, path: Path) -> None:
    """protobuf reads proto2 strings unchecked: a corrupted name comes back as bytes and fails
    where it is used. Check every name of the main graph once, here, so
    it is one clear error instead of a traceback later."""
    graph = model.graph
    try:
        names = [o.domain for o in model.opset_import]
        for node in graph.node:
            names += [
                node.name,
                node.op_type,
                node.domain,
                *node.input,
                *node.output,
                *(a.name for a in node.attribute),
            ]
        for value in (*graph.input, *graph.output, *graph.value_info):
            names += [value.name, *(d.dim_param for d in value.type.tensor_type.shape.dim)]
        names += [init.name for init in graph.initializer]
        for name in names:
            if not isinstance(name, str):  # protobuf hands undecodable strings back as bytes
                raise UnicodeError(name)
            name.encode("utf-8")
    except UnicodeError:
        raise UserError(f"{path}: a name in the graph is not valid UTF-8; is the file corrupted?") from None


def check_model(model: onnx.ModelProto, *, where: str = "model", full: bool = False) -> None:
    """onnx.checker on the weightless skeleton (fast on big models), plus a payload size check.

    Type and shape inference always runs strictly (as `full_check`): the plain checker lets
    through graphs no runtime accepts (an int8 weight on a float Conv, a declared output or
    value_info shape the graph cannot produce), which later stages would trip over with an
    internal error instead of a clear message naming the file. `full` is kept for callers.
    """
    import onnx

    from onnxprune.read.initializer_inputs import mismatched_initializer_inputs
    from onnxprune.read.shapes import skeleton

    _check_initializer_sizes(model, where)
    mismatched = mismatched_initializer_inputs(model)
    if mismatched:
        raise UserError(f"{where}: {mismatched[0]}; fix or re-export the model")
    light = skeleton(model, keep_output_shapes=True)
    light.graph.value_info.extend(model.graph.value_info)
    try:
        onnx.checker.check_model(light, full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid graph"
        raise UserError(f"{where}: fails the ONNX checker: {first}") from None
    except onnx.shape_inference.InferenceError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{where}: fails ONNX type/shape inference: {first}; fix or re-export the model") from None
    except UnicodeDecodeError:  # the checker's message quotes a name that is not UTF-8
        raise UserError(
            f"{where}: fails the ONNX checker: a name or string in the graph is not valid UTF-8; is the file corrupted?"
        ) from None


def _check_initializer_sizes(model: onnx.ModelProto, where: str) -> None:
    """Raw weight bytes must match their declared shape (the skeleton check cannot see them);
    weights left in the file (lazy) are checked by their recorded length, without reading them."""
    import onnx

    from onnxprune.read import lazy_weights

    for init in model.graph.initializer:
        lazy = lazy_weights.is_lazy(init)
        if not lazy and not init.HasField("raw_data"):
            continue
        expected = lazy_weights.expected_bytes(init)
        if expected is None:
            raise UserError(f"{where}: initializer {init.name!r} has an unknown data type {init.data_type}")
        if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            continue  # packed types: two values per byte
        held = lazy_weights.source(init)[2] if lazy else len(init.raw_data)
        if held != expected:
            raise UserError(
                f"{where}: initializer {init.name!r} holds {held} bytes but its shape "
                f"{list(init.dims)} needs {expected}; is the file truncated or corrupted?"
            )
