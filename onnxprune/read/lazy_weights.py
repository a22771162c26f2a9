"""Weights left in the file: a model read without copying its large initializers into memory.

`onnx.load` reads the whole file and parses it, holding every weight twice on the way; the
analysis (profile, groups, the shrink loop) needs only their shapes. Here the protobuf wire
format is walked down to each top-level initializer: one whose `raw_data` is large is parsed
without it and marked as *external data at its place in the model file* (`location` = the file's
absolute path, `offset`, `length`), the form ONNX itself uses for weights kept outside. Weights
that already live in a side file get their location made absolute the same way.

An absolute location cannot come from a file (io.load_model refuses it), so it marks the
tensors this module owns: `read_array` reads one on demand, `materialize` puts the bytes back
into the proto, and `model_writer` streams them from the source when a model is saved. Nothing
else may see such a model: callers that hand a model to onnxruntime or return it to users
materialize it first.
"""

from __future__ import annotations

import math
import mmap
import os
from pathlib import Path

import numpy as np
import onnx

LAZY_MIN_BYTES = 4096  # smaller tensors (shape constants, BN vectors) stay in memory, as parsed
_LEN = 2  # wire type of length-delimited fields
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_TENSOR_RAW_DATA, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 9, 13, 14


class NotScannable(Exception):
    """The file does not walk as a protobuf message: the caller parses it the ordinary way (and
    reports what is wrong with it)."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise NotScannable("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf, pos: int, end: int):
    """(field number, wire type, field start, value start, field end) of each field in buf[pos:end]."""
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise NotScannable("field number 0")
        if wire == 0:
            _, stop = _varint(buf, pos, end)
        elif wire == 1:
            stop = pos + 8
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            stop = pos + length
        elif wire == 5:
            stop = pos + 4
        else:  # groups (deprecated) and junk
            raise NotScannable(f"wire type {wire}")
        if stop > end:
            raise NotScannable("field runs past its message")
        yield number, wire, start, pos, stop
        pos = stop


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_field(number: int, payload_length: int) -> bytes:
    """The key and length prefix of a length-delimited field."""
    return encode_varint(number << 3 | _LEN) + encode_varint(payload_length)


def _external_entries(location: str, offset: int, length: int) -> bytes:
    """external_data entries (StringStringEntryProto: key=1, value=2) and data_location=EXTERNAL."""
    out = bytearray()
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = (
            length_field(1, len(key.encode())) + key.encode() + length_field(2, len(value.encode())) + value.encode()
        )
        out += length_field(_TENSOR_EXTERNAL_DATA, len(entry)) + entry
    out += encode_varint(_TENSOR_DATA_LOCATION << 3) + encode_varint(onnx.TensorProto.EXTERNAL)
    return bytes(out)


def _slim_tensor(buf, start: int, end: int, location: str) -> bytes | None:
    """A TensorProto's bytes without its large raw_data, pointing at it instead; None to keep it whole."""
    raw, others = None, []
    for number, wire, f_start, v_start, f_end in _fields(buf, start, end):
        if number in (_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION):
            return None  # already external (handled after parsing) or contradictory: keep as written
        if number == _TENSOR_RAW_DATA and wire == _LEN:
            if raw is not None:
                return None  # repeated raw_data: protobuf keeps the last; not worth the subtlety
            raw = (v_start, f_end - v_start)
        else:
            others.append(bytes(buf[f_start:f_end]))
    if raw is None or raw[1] < LAZY_MIN_BYTES:
        return None
    return b"".join(others) + _external_entries(location, raw[0], raw[1])


def _slim_graph(buf, start: int, end: int, location: str) -> bytes:
    pieces, run_start = [], start  # runs of fields kept as they are, copied in one slice
    for number, wire, f_start, v_start, f_end in _fields(buf, start, end):
        if number != _GRAPH_INITIALIZER or wire != _LEN:
            continue
        slim = _slim_tensor(buf, v_start, f_end, location)
        if slim is None:
            continue
        pieces.append(bytes(buf[run_start:f_start]))
        pieces.append(length_field(_GRAPH_INITIALIZER, len(slim)) + slim)
        run_start = f_end
    pieces.append(bytes(buf[run_start:end]))
    return b"".join(pieces)


def scan(path: Path) -> onnx.ModelProto:
    """The model at `path` with its large top-level initializers left in the file; raises
    NotScannable where the bytes do not walk as a protobuf message."""
    location = str(path.resolve())
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        size = len(buf)
        pieces, run_start = [], 0
        for number, wire, f_start, v_start, f_end in _fields(buf, 0, size):
            if number != _MODEL_GRAPH or wire != _LEN:
                continue
            graph = _slim_graph(buf, v_start, f_end, location)
            pieces += [bytes(buf[run_start:f_start]), length_field(_MODEL_GRAPH, len(graph)), graph]
            run_start = f_end
        pieces.append(bytes(buf[run_start:size]))
    model = onnx.ModelProto()
    model.ParseFromString(b"".join(pieces))
    return model


def _entries(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def is_lazy(tensor: onnx.TensorProto) -> bool:
    """A tensor whose bytes this module left in a file (an absolute external location)."""
    return tensor.data_location == onnx.TensorProto.EXTERNAL and os.path.isabs(_entries(tensor).get("location", ""))


def expected_bytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes the tensor's dims and type need (None for types without a fixed item size)."""
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    count = math.prod(tensor.dims)
    if tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (count + 1) // 2
    return count * itemsize


def source(tensor: onnx.TensorProto) -> tuple[str, int, int]:
    """(file, offset, length) of an external tensor's bytes."""
    info = _entries(tensor)
    offset = int(info.get("offset", 0) or 0)
    length = info.get("length")
    if length is None:
        length = expected_bytes(tensor)
        if length is None:
            length = os.path.getsize(info["location"]) - offset
    return info["location"], offset, int(length)


def make_absolute(tensor: onnx.TensorProto, base: Path) -> None:
    """Point an external tensor of the model's own side file at its absolute path (the loader
    has already confined the location to the model's folder)."""
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = str((base / entry.value).resolve())


def read_bytes(tensor: onnx.TensorProto) -> bytes:
    path, offset, length = source(tensor)
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    if len(data) != length:
        raise OSError(f"{path}: {length} bytes expected at offset {offset}, {len(data)} found")
    return data


def read_array(tensor: onnx.TensorProto) -> np.ndarray:
    """A lazy tensor's value: a read-only map of its bytes in the file (pages are read as they are
    touched; `cut_from_file` reads a cut of it one block of rows at a time)."""
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    path, offset, length = source(tensor)
    shape = tuple(int(d) for d in tensor.dims)
    if length != math.prod(shape) * dtype.itemsize or offset + length > os.path.getsize(path):
        raise OSError(f"{path}: {length} bytes at offset {offset} do not hold {tensor.name!r} {list(shape)}")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


CUT_BLOCK = 32 << 20  # bytes of rows read at a time by cut_from_file


def cut_from_file(value: np.ndarray, masks: dict[int, np.ndarray]) -> np.ndarray | None:
    """`value` with each axis cut to its mask ({axis: keep}), read from its file a block of rows at
    a time so the whole weight is never in memory at once (a 400 MB fully connected layer is cut
    in 32 MB steps); None unless `value` is read_array's map of a weight left in its file."""
    if not (isinstance(value, np.memmap) and isinstance(value.base, mmap.mmap)) or value.ndim == 0:
        return None
    rows = value.shape[0]
    keep = np.flatnonzero(masks[0]) if 0 in masks else np.arange(rows)
    others = {axis: mask for axis, mask in masks.items() if axis != 0}
    shape = [len(keep)] + [int(others[a].sum()) if a in others else value.shape[a] for a in range(1, value.ndim)]
    out = np.empty(shape, dtype=value.dtype)
    per_row = math.prod(value.shape[1:])
    step = max(1, CUT_BLOCK // max(per_row * value.dtype.itemsize, 1))
    filled = 0
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        wanted = keep[(keep >= start) & (keep < stop)]
        if not len(wanted):
            continue
        block = np.fromfile(
            value.filename,
            dtype=value.dtype,
            count=(stop - start) * per_row,
            offset=value.offset + start * per_row * value.dtype.itemsize,
        ).reshape((stop - start, *value.shape[1:]))[wanted - start]
        for axis, mask in others.items():
            block = np.compress(mask, block, axis=axis)
        out[filled : filled + len(wanted)] = block
        filled += len(wanted)
    return out


def materialize_tensor(tensor: onnx.TensorProto) -> None:
    data = read_bytes(tensor)
    tensor.ClearField("external_data")
    tensor.ClearField("data_location")
    tensor.raw_data = data


def lazy_initializers(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [init for init in model.graph.initializer if is_lazy(init)]


def materialize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Read every lazy tensor's bytes into the model (in place), one tensor at a time."""
    for tensor in lazy_initializers(model):
        materialize_tensor(tensor)
    return model


def materialized_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A self-contained copy (the original stays lazy)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return materialize(copy)
