"""Load ONNX models with one clear error per failure, and save them atomically."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from .errors import UserError

ModelLike = Union[str, os.PathLike, onnx.ModelProto]

# protobuf cannot serialise a single message over 2 GiB: larger models keep weights outside.
PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_DATA_THRESHOLD = 1024  # bytes; tensors above this go to the side file of a big model


def _external_locations(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(tensor name, location) for every tensor whose bytes live in an external file."""
    found = []
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            info = {entry.key: entry.value for entry in tensor.external_data}
            found.append((tensor.name, info.get("location", "")))
    return found


def _confine_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Refuse external data outside the model's folder (path traversal) or missing files."""
    base = path.parent.resolve()
    for tensor_name, location in _external_locations(model):
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


def load_model(source: ModelLike, *, check: bool = True) -> onnx.ModelProto:
    """Load a model from a path (or pass a ModelProto through), raising UserError on bad input."""
    if isinstance(source, onnx.ModelProto):
        return source
    path = Path(source)
    if not path.exists():
        raise UserError(f"{path}: no such file; give the path of an .onnx model")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give the path of an .onnx model file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty; give the path of an .onnx model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, TypeError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{path}: not a readable ONNX model ({type(exc).__name__}); is the file truncated or of another format?") from None
    except Exception as exc:  # protobuf raises a variety of internal errors on junk
        raise UserError(f"{path}: not a readable ONNX model ({type(exc).__name__}); is the file truncated or of another format?") from None
    if not model.graph.node and not model.graph.output:
        raise UserError(f"{path}: not an ONNX model (no graph); is the file truncated or of another format?")
    _confine_external_data(model, path)
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read its external data ({exc}); is the data file complete?") from None
    if check:
        check_model(model, where=str(path))
    return model


def check_model(model: onnx.ModelProto, *, where: str = "model", full: bool = False) -> None:
    """onnx.checker on the weightless skeleton (fast on big models), plus a payload size check.

    Type and shape inference always runs strictly (as `full_check`): the plain checker lets
    through graphs no runtime accepts (an int8 weight on a float Conv, a declared output or
    value_info shape the graph cannot produce), which later stages would trip over with an
    internal error instead of a clear message naming the file. `full` is kept for callers.
    """
    from .shapes import skeleton

    _check_initializer_sizes(model, where)
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


def _check_initializer_sizes(model: onnx.ModelProto, where: str) -> None:
    """Raw weight bytes must match their declared shape (the skeleton check cannot see them)."""
    for init in model.graph.initializer:
        if not init.HasField("raw_data"):
            continue
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where}: initializer {init.name!r} has an unknown data type {init.data_type}") from None
        expected = int(np.prod(init.dims, dtype=np.int64)) * itemsize
        if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            continue  # packed types: two values per byte
        if len(init.raw_data) != expected:
            raise UserError(f"{where}: initializer {init.name!r} holds {len(init.raw_data)} bytes but its shape "
                            f"{list(init.dims)} needs {expected}; is the file truncated or corrupted?")


def _refuse_overwrite(output: Path, inputs: tuple[ModelLike, ...]) -> None:
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and Path(source).resolve() == output.resolve():
            raise UserError(f"-o {output}: is the input model; choose another output path (the input is never overwritten)")


def validate_output_path(output: ModelLike, *inputs: ModelLike) -> Path:
    """Refuse an output equal to an input or in a missing folder, before any work is done."""
    out = Path(output)  # type: ignore[arg-type]
    _refuse_overwrite(out, inputs)
    if not out.parent.resolve().is_dir():
        raise UserError(f"-o {out}: folder {out.parent} does not exist; create it first")
    if out.is_dir():
        raise UserError(f"-o {out}: is a directory; give a file name")
    return out


def save_model(model: onnx.ModelProto, output: ModelLike, *inputs: ModelLike) -> Path:
    """Write atomically: a temp file in the same folder, fsync, then rename over the target.

    A reader sees the old file or the complete new one, never half a model, even if the process
    is killed mid-write. Models over 2 GiB get their weights in `<name>.data` beside them.
    """
    out = validate_output_path(output, *inputs)
    big = model.ByteSize() > PROTOBUF_LIMIT if not _external_locations(model) else True
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    data_name = out.name + ".data"
    tmp_data = out.parent / f".{data_name}.{os.getpid()}.tmp"
    try:
        if big:
            to_write = onnx.ModelProto()
            to_write.CopyFrom(model)
            onnx.save_model(to_write, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=tmp_data.name, size_threshold=EXTERNAL_DATA_THRESHOLD)
            _retarget_external_data(tmp, data_name)
            os.replace(tmp_data, out.parent / data_name)
        else:
            with open(tmp, "wb") as handle:
                handle.write(model.SerializeToString())
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, out)
    finally:
        for leftover in (tmp, tmp_data):
            if leftover.exists():
                leftover.unlink()
    return out


def _retarget_external_data(model_path: Path, location: str) -> None:
    """Point the saved model's external references at the final data file name."""
    model = onnx.load(str(model_path), load_external_data=False)
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    with open(model_path, "wb") as handle:
        handle.write(model.SerializeToString())
        handle.flush()
        os.fsync(handle.fileno())
