"""A tensor's static shape and element type, as shape inference (or a probe run) found them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple  # ints, or None for an unknown dimension
    elem_type: int
    known: bool = field(init=False, compare=False, repr=False)  # every dim is an int (computed once: hot)

    def __post_init__(self):
        object.__setattr__(self, "known", self.shape is not None and all(isinstance(d, int) for d in self.shape))

    @property
    def itemsize(self) -> int:
        return np.dtype(helper.tensor_dtype_to_np_dtype(self.elem_type)).itemsize


def dims_of(type_proto: onnx.TypeProto) -> tuple | None:
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
