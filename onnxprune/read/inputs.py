"""The inputs `onnxprune bench` feeds a model: the graph inputs' shapes and dtypes at a batch size
(`input_specs`), filled with seeded random values, never zeros (`random_inputs`, `make_inputs`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from onnxprune.errors import UserError
from onnxprune.read.symbols import bound_symbols, symbolic_dims

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name


def _dims(value: Any) -> Optional[list[Optional[int]]]:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]


def shape_hint(value: Any) -> str:
    """`--input-shape NAME=1x3xHxW` in the input's own rank, known dims and dim names."""
    dims = value.type.tensor_type.shape.dim if value.type.tensor_type.HasField("shape") else []
    parts = []
    for position, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            parts.append(str(dim.dim_value))
        elif position == 0:
            parts.append("1")
        elif dim.dim_param.isidentifier():
            parts.append(dim.dim_param)
        else:
            parts.append("C" if position == 1 else ("H", "W", "D")[min(position - 2, 2)])
    return f"--input-shape {value.name}={'x'.join(parts) or '1x3xHxW'}"


def input_specs(
    model_path: Any,
    batch: Optional[int] = 1,
    input_shapes: Optional[dict[str, list[int]]] = None,
    label: Optional[str] = None,
) -> list[InputSpec]:
    """The shapes and dtypes fed to the model (a path or a ModelProto, named `label` in errors): symbolic first dims become `batch`.

    `batch=None` (verbs without a --batch flag: verify, latency) feeds a fixed first dimension as the
    model declares it and a symbolic one as 1, so no error can advise a flag the verb does not have.
    Raises UserError for a bad file, an unknown --input-shape name, a symbolic non-batch
    dimension without --input-shape, or `batch` different from a fixed first dimension.
    """
    import onnx
    from onnx import helper

    from onnxprune.read.io import load_model

    follow_model = batch is None
    batch = 1 if batch is None else batch
    if batch < 1:
        raise UserError(f"--batch {batch}: must be a positive integer, e.g. --batch 8")
    model = load_model(model_path, check=False)
    if label:
        model_path = label
    elif isinstance(model_path, onnx.ModelProto):
        model_path = f"model {model.graph.name!r}" if model.graph.name else "the model"
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    names = [v.name for v in inputs]
    for name in input_shapes or {}:
        if name not in names:
            raise UserError(f"--input-shape {name}=...: {model_path} has no input {name!r}; its inputs are {names}")
    bound = bound_symbols(inputs, input_shapes, batch)
    specs = []
    for value in inputs:
        if not value.type.HasField("tensor_type"):
            raise UserError(f"{model_path}: input {value.name!r} is not a tensor; bench feeds tensors only")
        elem = value.type.tensor_type.elem_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem))
        except (KeyError, TypeError, ValueError):
            dtype = None
        if dtype is None or dtype.kind not in "fiub" or elem == onnx.TensorProto.BFLOAT16:
            raise UserError(
                f"{model_path}: input {value.name!r} has element type "
                f"{onnx.TensorProto.DataType.Name(elem)}, which bench cannot generate"
            )
        dims = _dims(value)
        wanted = (input_shapes or {}).get(value.name)
        if wanted is not None:
            if dims is not None and len(dims) != len(wanted):
                raise UserError(
                    f"--input-shape {value.name}: the model's input has rank {len(dims)}, got {len(wanted)} dims"
                )
            dims_given = list(wanted)
            if not follow_model and batch != 1 and dims_given and dims_given[0] != batch:
                if dims and dims[0] is None and dims_given[0] == 1:
                    dims_given[0] = batch  # a symbolic batch follows --batch
                elif dims and dims[0] is not None:
                    raise UserError(
                        f"--batch {batch}: {model_path} input {value.name!r} has a fixed batch of "
                        f"{dims[0]}; re-export the model with a dynamic batch axis or use --batch {dims[0]}"
                    )
                else:
                    raise UserError(
                        f"--batch {batch} and --input-shape {value.name}={'x'.join(map(str, wanted))} "
                        f"disagree on the batch; make them agree"
                    )
            specs.append(InputSpec(value.name, tuple(int(d) for d in dims_given), dtype.name))
            continue
        if dims is None:
            raise UserError(
                f"{model_path}: input {value.name!r} has no shape; give it with --input-shape "
                f"{value.name}=1x3xHxW (the model's rank and sizes)"
            )
        symbols = symbolic_dims(value)
        for position, dim in enumerate(dims[1:], start=1):
            if dim is None and symbols[position] in bound:
                dims[position] = bound[symbols[position]]
            elif dim is None:
                raise UserError(
                    f"{model_path}: input {value.name!r} has a symbolic dimension {position}; "
                    f"give it with {shape_hint(value)}"
                )
        if dims and dims[0] is None:
            dims[0] = bound.get(symbols[0], batch)
        elif dims and dims[0] != batch and not follow_model:
            raise UserError(
                f"--batch {batch}: {model_path} input {value.name!r} has a fixed batch of {dims[0]}; "
                f"re-export the model with a dynamic batch axis (torch.onnx.export dynamic_axes / "
                f"dynamic_shapes) or use --batch {dims[0]}"
            )
        specs.append(InputSpec(value.name, tuple(int(d) for d in dims), dtype.name))  # type: ignore[arg-type]
    if not specs:
        raise UserError(f"{model_path}: the model has no inputs to feed")
    return specs


def random_inputs(specs: Sequence[InputSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random feeds, never zeros: floats ~ N(0, 1), integers in [1, 10), booleans random."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            data = rng.standard_normal(spec.shape, dtype=np.float64)
            data[data == 0] = 1.0
            feeds[spec.name] = data.astype(dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(1, 10, size=spec.shape).astype(dtype)
        else:
            feeds[spec.name] = np.asarray(rng.random(spec.shape) < 0.5)  # an array even at rank 0
    return feeds


def make_inputs(
    model_path: PathLike, batch: Optional[int] = 1, seed: int = 0, input_shapes: Optional[dict[str, list[int]]] = None
) -> dict[str, np.ndarray]:
    """The exact feeds `bench` uses for this model, batch and seed."""
    return random_inputs(input_specs(model_path, batch, input_shapes), seed)
