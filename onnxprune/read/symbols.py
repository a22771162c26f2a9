"""Named symbolic dimensions of a model's inputs, and the sizes what is known implies for them.

A leaf of the read package (protobuf fields only, no onnx import), so that both the shape inference
(read/shapes.py) and the feeds (read/inputs.py) bind symbols alike."""

from __future__ import annotations

from typing import Any, Optional, Sequence


def bound_symbols(values: Sequence[Any], input_shapes: Optional[dict], batch: int = 1) -> dict[str, int]:
    """Sizes of named symbolic dimensions implied by what is known, so that an input that shares a
    symbol with another needs no --input-shape of its own (silero-vad: input [batch, samples], state
    [2, batch, 128]): a symbol in an input the user shaped takes the size given there; a symbolic
    first dimension (the batch) takes `batch`, as does a first dimension the user gave as 1 when
    `batch` is larger (a symbolic batch follows --batch)."""
    bound: dict[str, int] = {}
    given = input_shapes or {}
    for value in values:  # what the user gave first: it wins over the default batch
        wanted = given.get(value.name)
        for position, dim in enumerate(symbolic_dims(value)):
            if dim and wanted is not None and position < len(wanted):
                size = batch if position == 0 and int(wanted[0]) == 1 else int(wanted[position])
                bound.setdefault(dim, size)
    for value in values:
        names = symbolic_dims(value)
        if value.name not in given and names and names[0]:
            bound.setdefault(names[0], batch)
    return bound


def symbolic_dims(value: Any) -> list[str]:
    """Per dimension its symbol's name, or "" where it has a size or no name."""
    tensor = value.type.tensor_type
    dims = tensor.shape.dim if tensor.HasField("shape") else []
    return ["" if (d.HasField("dim_value") and d.dim_value > 0) else d.dim_param for d in dims]
