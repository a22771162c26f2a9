"""Resize (opset 10-19) and Upsample (opset 7-9): nearest and linear, from scales or sizes.

The output size is known when the module is built (scales and sizes are constants, or folded from
the probe's shapes), so every resized axis becomes precomputed source indices (nearest) or index
pairs and weights (linear), computed with ONNX's formulas for every coordinate_transformation_mode
and nearest_mode. Applying them is one `index_select` (plus a lerp) per axis: exact to onnxruntime,
differentiable, and exported by torch as Gather/Mul/Add when the trained model goes through torch.
Cubic mode, `tf_crop_and_resize`, antialiasing and aspect-ratio policies are refused by name.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .builder import _attrs, _Builder, _Unsupported, handles


def _source_coords(mode: str, out_len: int, in_len: int, scale: float) -> np.ndarray:
    """x_original for every output index along one axis (float32, as onnxruntime computes it)."""
    x = np.arange(out_len, dtype=np.float32)
    scale = np.float32(scale)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(x)
    if mode == "align_corners":
        return np.zeros_like(x) if out_len == 1 else x * np.float32(in_len - 1) / np.float32(out_len - 1)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adjustment = np.float32(out_len) / (scale * np.float32(in_len))
        offset = np.float32(in_len) / 2 * (1 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    raise _Unsupported(f"coordinate_transformation_mode {mode!r}")


def _nearest(coords: np.ndarray, how: str, in_len: int) -> np.ndarray:
    if how == "floor":
        idx = np.floor(coords)
    elif how == "ceil":
        idx = np.ceil(coords)
    elif how in ("round_prefer_floor", "round_prefer_ceil"):
        frac = coords - np.floor(coords)
        tie = np.isclose(frac, 0.5, rtol=0, atol=1e-6)
        rounded = np.floor(coords + 0.5)
        idx = np.where(tie, np.floor(coords) if how == "round_prefer_floor" else np.ceil(coords), rounded)
    else:
        raise _Unsupported(f"nearest_mode {how!r}")
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


class _Resize(nn.Module):
    """Per resized axis: index_select (nearest) or two index_selects and a lerp (linear)."""

    def __init__(self, plan: list[tuple[int, np.ndarray, np.ndarray | None, np.ndarray | None]], rank: int):
        super().__init__()
        self.axes = []
        for k, (axis, first, second, weight) in enumerate(plan):
            self.axes.append((axis, second is not None))
            self.register_buffer(f"i{k}", torch.from_numpy(first))
            if second is not None:
                shape = [1] * rank
                shape[axis] = -1
                self.register_buffer(f"j{k}", torch.from_numpy(second))
                self.register_buffer(f"w{k}", torch.from_numpy(weight.astype(np.float32)).reshape(shape))

    def forward(self, x):
        for k, (axis, linear) in enumerate(self.axes):
            a = x.index_select(axis, getattr(self, f"i{k}"))
            if linear:
                b = x.index_select(axis, getattr(self, f"j{k}"))
                w = getattr(self, f"w{k}").to(x.dtype)
                x = a + (b - a) * w
            else:
                x = a
        return x


def _build(
    b: _Builder, node, x_name: str, scales: list[float] | None, sizes: list[int] | None, attrs: dict, upsample: bool
):
    shape = b.shape_of(x_name)
    rank = len(shape)
    mode = attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear", "trilinear"):
        raise _Unsupported(f"mode {mode!r}")
    linear = mode != "nearest"
    coord_mode = "asymmetric" if upsample else attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest_mode = "floor" if upsample else attrs.get("nearest_mode", "round_prefer_floor")
    if coord_mode == "tf_crop_and_resize":
        raise _Unsupported("coordinate_transformation_mode 'tf_crop_and_resize'")
    if attrs.get("antialias", 0) and linear:
        raise _Unsupported("antialias")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch" and sizes is not None:
        raise _Unsupported(f"keep_aspect_ratio_policy {attrs['keep_aspect_ratio_policy']!r}")
    axes = [a + rank if a < 0 else a for a in attrs.get("axes", range(rank))]
    full_scales, out_sizes = [1.0] * rank, list(shape)
    if sizes is not None:
        for axis, size in zip(axes, sizes):
            out_sizes[axis] = int(size)
            full_scales[axis] = int(size) / shape[axis]
    elif scales is not None:
        for axis, scale in zip(axes, scales):
            full_scales[axis] = float(scale)
            out_sizes[axis] = int(math.floor(shape[axis] * float(scale)))
    else:
        raise _Unsupported("neither scales nor sizes")
    plan = []
    for axis in range(rank):
        if out_sizes[axis] == shape[axis] and full_scales[axis] == 1.0:
            continue
        if axis == 0 and b.probe_batch != 1:
            raise _Unsupported("resizing the batch axis")
        coords = _source_coords(coord_mode, out_sizes[axis], shape[axis], full_scales[axis])
        if not linear:
            plan.append((axis, _nearest(coords, nearest_mode, shape[axis]), None, None))
            continue
        coords = np.clip(coords, 0, shape[axis] - 1)
        low = np.floor(coords).astype(np.int64)
        high = np.minimum(low + 1, shape[axis] - 1)
        plan.append((axis, low, high, coords - low))
    return _Resize(plan, rank), [x_name]


def _floats(b: _Builder, node, index: int) -> list[float] | None:
    value = b.const(node, index)
    return None if value is None or value.numel() == 0 else [float(v) for v in value.reshape(-1).tolist()]


@handles("Resize")
def _resize(b: _Builder, node):
    attrs = _attrs(node)
    if b.opset <= 10 or len(node.input) == 2:
        return _build(b, node, node.input[0], _floats(b, node, 1), None, attrs, upsample=False)
    sizes = b.const_list(node, 3) if len(node.input) > 3 and node.input[3] else None
    sizes = sizes or None
    return _build(b, node, node.input[0], _floats(b, node, 2) if sizes is None else None, sizes, attrs, upsample=False)


@handles("Upsample")
def _upsample(b: _Builder, node):
    attrs = _attrs(node)
    scales = list(attrs["scales"]) if "scales" in attrs else _floats(b, node, 1)
    return _build(b, node, node.input[0], scales, None, attrs, upsample=True)
