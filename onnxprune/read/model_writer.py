"""Write a ModelProto to a file without serialising it whole in memory.

`SerializeToString` builds the whole file as one bytes object (a second copy of every weight)
and cannot pass protobuf's 2 GiB limit. Here the model is written field by field: everything but
the top-level initializers in one piece, then each initializer on its own (its bytes streamed
from the source file when they were never loaded, see lazy_weights). Protobuf accepts a
message's fields in any order, so the file parses to the same model. With `data_name`, tensors
of at least `threshold` bytes go to that side file instead (ONNX external data, as `onnx.save`
writes it for models over 2 GiB), their location relative to the model.
"""

from __future__ import annotations

import os
from typing import BinaryIO

import onnx

from onnxprune.read import lazy_weights
from onnxprune.read.lazy_weights import encode_varint, length_field

COPY_CHUNK = 16 << 20  # bytes per read when streaming a weight from its source file
_GRAPH, _INITIALIZER, _RAW_DATA = 7, 5, 9


def _without(message, skip: tuple[str, ...], into):
    """`into` filled with every set field of `message` except `skip`, which is never read
    (`ListFields()` would hand out a copy of a skipped raw_data)."""
    for field in message.DESCRIPTOR.fields:
        name = field.name
        if name in skip:
            continue
        if _repeated(field):
            values = getattr(message, name)
            if len(values):
                getattr(into, name).extend(values)
        elif message.HasField(name):
            if field.message_type is not None:
                getattr(into, name).CopyFrom(getattr(message, name))
            else:
                setattr(into, name, getattr(message, name))
    return into


def _repeated(field) -> bool:
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 5.28; `label` is gone in 7
    return bool(is_repeated) if is_repeated is not None else field.label == field.LABEL_REPEATED


class _Tensor:
    """One initializer as written: its fields but the payload, then the payload (raw_data) from
    memory or from the file it was left in. Sizes come from the dims, never from `ByteSize()` or
    `len(tensor.raw_data)`: protobuf (upb) serialises the message, or copies the bytes, for those."""

    def __init__(self, tensor: onnx.TensorProto, data_name: str | None, threshold: int, data_offset: int):
        self.tensor = tensor
        self.lazy = lazy_weights.is_lazy(tensor)
        raw = self.lazy or tensor.HasField("raw_data")
        self.payload_size = (
            lazy_weights.source(tensor)[2] if self.lazy else (lazy_weights.expected_bytes(tensor) if raw else None)
        )
        if self.payload_size is None:  # values in float_data & co. (small in practice): written as they are
            self.head, self.external, self.size = None, False, tensor.ByteSize()
            return
        self.external = data_name is not None and self.payload_size >= threshold
        meta = _without(tensor, ("raw_data", "external_data", "data_location"), onnx.TensorProto())
        if self.external:
            entries = {"location": data_name, "offset": str(data_offset), "length": str(self.payload_size)}
            for key, value in entries.items():
                entry = meta.external_data.add()
                entry.key, entry.value = key, value
            meta.data_location = onnx.TensorProto.EXTERNAL
        self.head = meta.SerializeToString()
        body = 0 if self.external else len(length_field(_RAW_DATA, self.payload_size)) + self.payload_size
        self.size = len(self.head) + body

    def write(self, out: BinaryIO, data: BinaryIO | None) -> None:
        out.write(length_field(_INITIALIZER, self.size))
        if self.head is None:
            out.write(self.tensor.SerializeToString())
            return
        out.write(self.head)
        target = data if self.external else out
        if not self.external:
            out.write(length_field(_RAW_DATA, self.payload_size))
        if self.lazy:
            _copy_range(*lazy_weights.source(self.tensor), target)
            return
        raw = self.tensor.raw_data  # the one copy protobuf makes of it
        if len(raw) != self.payload_size:
            raise ValueError(f"tensor {self.tensor.name!r}: {len(raw)} bytes, its shape needs {self.payload_size}")
        target.write(raw)


def _copy_range(path: str, offset: int, length: int, out: BinaryIO) -> None:
    with open(path, "rb") as handle:
        handle.seek(offset)
        left = length
        while left:
            chunk = handle.read(min(COPY_CHUNK, left))
            if not chunk:
                raise OSError(f"{path}: ends before the {length} bytes of a weight at offset {offset}")
            out.write(chunk)
            left -= len(chunk)


class Plan:
    """What `write_model` writes, sized before anything is written (the graph's length prefix
    comes first); `external_data` sends tensors of at least `threshold` bytes to a side file."""

    def __init__(self, model: onnx.ModelProto, data_name: str | None = None, threshold: int = 1024):
        self.model = model
        self.head = _without(model, ("graph",), onnx.ModelProto()).SerializeToString()
        self.graph_rest = _without(model.graph, ("initializer",), onnx.GraphProto()).SerializeToString()
        self.tensors, offset = [], 0
        for tensor in model.graph.initializer:
            item = _Tensor(tensor, data_name, threshold, offset)
            offset += item.payload_size if item.external else 0
            self.tensors.append(item)
        self.graph_size = len(self.graph_rest) + sum(len(encode_varint(t.size)) + 1 + t.size for t in self.tensors)
        self.has_graph = model.HasField("graph")
        graph_field = len(length_field(_GRAPH, self.graph_size)) + self.graph_size if self.has_graph else 0
        self.size = len(self.head) + graph_field  # bytes of the model file
        self.outside_initializers = len(self.head) + len(self.graph_rest)

    def write(self, out: BinaryIO, data: BinaryIO | None = None) -> None:
        out.write(self.head)
        if self.has_graph:
            out.write(length_field(_GRAPH, self.graph_size))
            out.write(self.graph_rest)
            for item in self.tensors:
                item.write(out, data)


def write_model(
    model: onnx.ModelProto,
    out: BinaryIO,
    data: BinaryIO | None = None,
    data_name: str | None = None,
    threshold: int = 1024,
) -> None:
    """Write `model` to `out`; with `data` and `data_name`, large tensors go to `data` (external data)."""
    Plan(model, data_name if data is not None else None, threshold).write(out, data)


def serialized_size(model: onnx.ModelProto) -> int:
    """Bytes of the model as one message, weights left in a file included, without serialising it."""
    return Plan(model).size


def sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def save_with_onnx(model: onnx.ModelProto, path, data_path, data_name: str, threshold: int) -> None:
    """onnx's own external-data writer (for weights outside the initializers, e.g. in Constant
    nodes), then the side file's final name put in the references."""
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_path.name,
        size_threshold=threshold,
    )
    written = onnx.load(str(path), load_external_data=False)
    for tensor in onnx.external_data_helper._get_all_tensors(written):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = data_name
    with open(path, "wb") as handle:
        handle.write(written.SerializeToString())
        sync(handle)
