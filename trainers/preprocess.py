"""The image a graph takes, read from the graph: what `train --teacher` feeds both networks.

`input_spec(proto, input_shapes, mean, std)` reads the first (only) runtime input: rank 4, float,
layout NCHW (dim 1 is 1 or 3) or NHWC (dim 3 is 1 or 3; NCHW wins a tie), height and width from
the model or from `--input-shape`. `InputSpec.to_input(uint8 NCHW RGB batch)` then

1. resizes to the input's height x width (bilinear, antialiased when shrinking) unless already so;
2. converts RGB to the model's channels (1: luminance 0.299 R + 0.587 G + 0.114 B);
3. scales to [0, 1] and normalises per channel, (x - mean) / std;
4. puts channels last for an NHWC input.

Defaults: mean 0 and std 1 (pixels in [0, 1]), unless the model records its own normalisation in
its metadata (`onnxprune.mean` / `onnxprune.std`, written by `train`): a model trained by this tool
is fed as it was trained. `--mean 0.5,0.5,0.5 --std 0.5,0.5,0.5` (in [0, 1] units; one value for
all channels is fine) matches how a third-party model was trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import onnx
import torch
import torch.nn.functional as F

from onnxprune.errors import UserError

LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class InputSpec:
    name: str
    layout: str  # "NCHW" | "NHWC"
    channels: int  # 1 or 3
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalisation: str = "default"  # where mean/std came from: default | model metadata | --mean/--std

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, h, w) RGB -> the float batch the model takes (module docstring)."""
        x = images.to(torch.float32)
        if tuple(x.shape[-2:]) != (self.height, self.width):
            shrinking = x.shape[-2] > self.height or x.shape[-1] > self.width
            x = F.interpolate(
                x, size=(self.height, self.width), mode="bilinear", align_corners=False, antialias=shrinking
            )
        if self.channels == 1 and x.shape[1] == 3:
            weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * weights).sum(1, keepdim=True)
        elif self.channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x / 255.0 - mean) / std
        return x.permute(0, 2, 3, 1).contiguous() if self.layout == "NHWC" else x.contiguous()

    def describe(self) -> str:
        stats = f"mean {list(self.mean)} std {list(self.std)} ({self.normalisation})"
        return (
            f"input {self.name!r}: {self.layout}, {self.channels} channel(s), {self.height}x{self.width}; "
            f"pixels scaled to [0, 1], {stats}"
        )


def parse_stats(text: str | None, flag: str) -> tuple[float, ...] | None:
    """`0.5,0.5,0.5` or `0.5` -> floats (None when not given)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise UserError(f"{flag} {text!r}: give numbers in [0, 1] units, e.g. {flag} 0.5,0.5,0.5") from None
    if not values:
        raise UserError(f"{flag} {text!r}: give one value, or one per channel")
    if flag == "--std" and any(v <= 0 for v in values):
        raise UserError(f"{flag} {text!r}: a standard deviation must be positive")
    return values


def _per_channel(values: tuple[float, ...], channels: int, flag: str) -> tuple[float, ...]:
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise UserError(f"{flag}: {len(values)} values for a model input of {channels} channel(s)")
    return values


def _metadata_stats(proto: onnx.ModelProto) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    meta = {p.key: p.value for p in proto.metadata_props}
    try:
        mean = tuple(float(v) for v in json.loads(meta["onnxprune.mean"]))
        std = tuple(float(v) for v in json.loads(meta["onnxprune.std"]))
    except (KeyError, ValueError, TypeError):
        return None, None
    return (mean, std) if mean and std and all(v > 0 for v in std) else (None, None)


def runtime_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {i.name for i in proto.graph.initializer}
    return [v for v in proto.graph.input if v.name not in initializers]


def input_spec(
    proto: onnx.ModelProto,
    shape: list[int] | None,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    defaults_from: onnx.ModelProto | None = None,
    where: str = "model",
) -> InputSpec:
    """The image input of `proto`; `shape` is the converter's input shape (symbolic dims filled).

    `defaults_from`: the model whose metadata gives mean/std when none are given (the teacher)."""
    inputs = runtime_inputs(proto)
    if len(inputs) != 1:
        raise UserError(
            f"{where}: distillation feeds images to one input; the model has {len(inputs)} "
            f"({', '.join(v.name for v in inputs)})"
        )
    value = inputs[0]
    elem = value.type.tensor_type.elem_type
    if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
        kind = onnx.helper.tensor_dtype_to_np_dtype(elem).name if elem else "untyped"
        raise UserError(f"{where}: input {value.name!r} is {kind}, not an image; distillation feeds float images")
    dims = list(shape or [])
    if len(dims) != 4:
        raise UserError(
            f"{where}: input {value.name!r} has rank {len(dims)}; distillation feeds images (N, C, H, W) or (N, H, W, C)"
        )
    if dims[1] in (1, 3):
        layout, channels, height, width = "NCHW", dims[1], dims[2], dims[3]
    elif dims[3] in (1, 3):
        layout, channels, height, width = "NHWC", dims[3], dims[1], dims[2]
    else:
        raise UserError(
            f"{where}: input {value.name!r} of shape {'x'.join(map(str, dims))} is not an image of 1 or 3 "
            f"channels (NCHW or NHWC)"
        )
    if height < 1 or width < 1:
        raise UserError(f"{where}: input {value.name!r} has no known height and width; give --input-shape")
    source = "--mean/--std"
    if mean is None and std is None:
        mean, std = _metadata_stats(defaults_from if defaults_from is not None else proto)
        source = "the model's metadata"
        if mean is None:
            mean, std, source = (0.0,), (1.0,), "default"
    mean = _per_channel(tuple(mean if mean is not None else (0.0,)), channels, "--mean")
    std = _per_channel(tuple(std if std is not None else (1.0,)), channels, "--std")
    return InputSpec(value.name, layout, int(channels), int(height), int(width), mean, std, source)
