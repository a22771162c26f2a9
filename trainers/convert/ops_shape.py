"""Op handlers that move data rather than compute it: pools, Flatten/Reshape/Transpose, (Un)Squeeze,
Concat/Split/Slice/Gather, constants, Expand/Tile, Pad, sequences."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from .batch_axis import reshape_position, with_batch
from .builder import _attrs, _axes, _broadcast_dims, _to_tensor, _Unsupported, handles
from .modules import _Op
from .ops_layers import _conv_padding, _torch_pad_order


def _pool_common(b, node, kind: str):
    attrs = _attrs(node)
    x_shape = b.shape_of(node.input[0])
    kernel = list(attrs["kernel_shape"])
    n = len(kernel)
    if n not in (1, 2, 3):
        raise _Unsupported(f"{n}-d pooling")
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    pads = _conv_padding(b, node, attrs, x_shape[2:], kernel, strides, dilations)
    ceil = bool(attrs.get("ceil_mode", 0))
    return attrs, kernel, strides, dilations, pads, ceil, n


@handles("MaxPool")
def _maxpool(b, node):
    attrs, kernel, strides, dilations, pads, ceil, n = _pool_common(b, node, "max")
    if (
        len(node.output) > 1
        and node.output[1]
        and (b.consumers.get(node.output[1]) or node.output[1] in b.graph_outputs)
    ):
        raise _Unsupported("its Indices output")
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    symmetric = pads[:n] == pads[n:] and all(p <= k // 2 for p, k in zip(pads[:n], kernel))
    if symmetric:
        return b.generic(node, lambda x: fn(x, kernel, strides, pads[:n], dilations, ceil), use=[0])
    torch_pads = _torch_pad_order(pads)
    return b.generic(
        node, lambda x: fn(F.pad(x, torch_pads, value=float("-inf")), kernel, strides, 0, dilations, ceil), use=[0]
    )


@handles("AveragePool")
def _avgpool(b, node):
    attrs, kernel, strides, dilations, pads, ceil, n = _pool_common(b, node, "avg")
    if any(d != 1 for d in dilations):
        raise _Unsupported("dilated average pooling")
    include = bool(attrs.get("count_include_pad", 0))
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    if pads[:n] == pads[n:] and all(p <= k // 2 for p, k in zip(pads[:n], kernel)):
        return b.generic(node, lambda x: fn(x, kernel, strides, pads[:n], ceil, include), use=[0])
    torch_pads = _torch_pad_order(pads)
    if include:
        return b.generic(node, lambda x: fn(F.pad(x, torch_pads), kernel, strides, 0, ceil, True), use=[0])

    def avg_exclude(x):  # sum over the window / number of real pixels in it
        ones = torch.ones_like(x[:1, :1])
        total = fn(F.pad(x, torch_pads), kernel, strides, 0, ceil, True)
        count = fn(F.pad(ones, torch_pads), kernel, strides, 0, ceil, True)
        return total / count

    return b.generic(node, avg_exclude, use=[0])


@handles("GlobalAveragePool")
def _gap(b, node):
    rank = len(b.shape_of(node.input[0]))
    if rank == 4:
        return b.generic(node, lambda x: F.adaptive_avg_pool2d(x, 1), use=[0])
    dims = tuple(range(2, rank))
    return b.generic(node, lambda x: x.mean(dim=dims, keepdim=True), use=[0])


@handles("GlobalMaxPool")
def _gmp(b, node):
    rank = len(b.shape_of(node.input[0]))
    if rank == 4:
        return b.generic(node, lambda x: F.adaptive_max_pool2d(x, 1), use=[0])
    dims = tuple(range(2, rank))
    return b.generic(node, lambda x: x.amax(dim=dims, keepdim=True), use=[0])


@handles("Flatten")
def _flatten(b, node):
    rank = len(b.shape_of(node.input[0]))
    axis = _broadcast_dims(rank, int(_attrs(node).get("axis", 1)))
    if axis == 1:
        return b.generic(node, lambda x: torch.flatten(x, 1), use=[0])
    if axis == 0:
        return b.generic(node, lambda x: x.reshape(1, -1), use=[0])
    return b.generic(node, lambda x: torch.flatten(torch.flatten(x, axis), 0, axis - 1), use=[0])


@handles("Reshape")
def _reshape(b, node):
    shape = b.const_list(node, 1)
    allowzero = int(_attrs(node).get("allowzero", 0))
    x_shape = b.shape_of(node.input[0])
    if node.input[0] in b.static:
        target = [x_shape[i] if (d == 0 and not allowzero and i < len(x_shape)) else d for i, d in enumerate(shape)]
        return b.generic(node, lambda x: x.reshape(target), use=[0])
    resolved = [x_shape[i] if (d == 0 and not allowzero) else d for i, d in enumerate(shape)]
    if -1 in resolved:
        known = int(np.prod([d for d in resolved if d != -1])) or 1
        resolved[resolved.index(-1)] = int(np.prod(x_shape)) // known
    # the axis that holds the batch becomes -1, wherever it is ([N, C], [T, N, C], [T * N, C]), so that
    # any batch size runs: the entry a Shape read off the batch, or the axis the input's batch maps to
    marks = b.batch.marked(node, 1)
    position = b.batch.axis.get(node.input[0])
    only = next(iter(marks)) if len(marks) == 1 else None
    found = reshape_position(x_shape, position, resolved, b.batch.batch, only) if position else None
    index = only if only is not None and (found or not position) else (found[0] if found else None)
    target = list(resolved)
    if index is not None:
        target[index] = -1
    module, ins = b.generic(node, lambda x: x.reshape(target), use=[0])
    module.batch_index = index
    return module, ins


@handles("Transpose")
def _transpose(b, node):
    rank = len(b.shape_of(node.input[0]))
    perm = list(_attrs(node).get("perm", list(reversed(range(rank)))))
    return b.generic(node, lambda x: x.permute(perm), use=[0])


@handles("Unsqueeze")
def _unsqueeze(b, node):
    axes = _axes(b, node, 1)
    rank = len(b.shape_of(node.input[0])) + len(axes)
    axes = sorted(a + rank if a < 0 else a for a in axes)

    def run(x):
        for a in axes:
            x = x.unsqueeze(a)
        return x

    return b.generic(node, run, use=[0])


@handles("Squeeze")
def _squeeze(b, node):
    shape = b.shape_of(node.input[0])
    axes = _axes(b, node, 1)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    axes = tuple(sorted(a + len(shape) if a < 0 else a for a in axes))
    return b.generic(node, lambda x: x.squeeze(axes) if axes else x, use=[0])


@handles("Concat")
def _concat(b, node):
    axis = int(_attrs(node)["axis"])
    return b.generic(node, lambda *xs: torch.cat([x for x in xs if x is not None], dim=axis))


@handles("Split")
def _split(b, node):
    attrs = _attrs(node)
    shape = b.shape_of(node.input[0])
    axis = _broadcast_dims(len(shape), int(attrs.get("axis", 0)))
    sizes = attrs.get("split")
    if sizes is None and len(node.input) > 1 and node.input[1]:
        sizes = b.const_list(node, 1)
    if sizes is None:
        parts = int(attrs.get("num_outputs", len(node.output)))
        chunk = -(-shape[axis] // parts)
        sizes = [min(chunk, shape[axis] - chunk * i) for i in range(parts)]
    sizes = [int(s) for s in sizes]
    return b.generic(node, lambda x: tuple(torch.split(x, sizes, dim=axis)), use=[0])


@handles("Slice")
def _slice(b, node):
    shape = b.shape_of(node.input[0])
    attrs = _attrs(node)
    if b.opset < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes, steps = list(attrs.get("axes", range(len(starts)))), [1] * len(starts)
    else:
        starts, ends = b.const_list(node, 1), b.const_list(node, 2)
        axes = b.const_list(node, 3) or list(range(len(starts)))
        steps = b.const_list(node, 4) or [1] * len(starts)
    rank = len(shape)
    index: list[Any] = [slice(None)] * rank
    flips = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = _broadcast_dims(rank, axis)
        size = shape[axis]
        if step > 0:
            start = max(-size, min(start, size))
            end = max(-size, min(end, size))
            index[axis] = slice(start, end if end != size else None, step)
        elif step < 0:
            # torch has no negative steps: gather the indices ONNX would visit
            s = start + size if start < 0 else start
            s = max(-1, min(s, size - 1))
            e = end + size if end < 0 else end
            e = max(-1, min(e, size - 1))
            flips.append((axis, torch.arange(s, e, step, dtype=torch.int64)))
        else:
            raise _Unsupported("a zero step")
    index_t = tuple(index)

    def run(x):
        y = x[index_t]
        for axis, idx in flips:
            y = torch.index_select(y, axis, idx.to(y.device))
        return y

    return b.generic(node, run, use=[0])


@handles("Gather")
def _gather(b, node):
    shape = b.shape_of(node.input[0])
    axis = _broadcast_dims(len(shape), int(_attrs(node).get("axis", 0)))
    size = shape[axis]

    def gather(x, idx):
        idx = idx.to(torch.int64)
        idx = torch.where(idx < 0, idx + size, idx)
        if idx.dim() == 0:
            return x.select(axis, int(idx))
        flat = torch.index_select(x, axis, idx.reshape(-1))
        return flat.reshape(list(x.shape[:axis]) + list(idx.shape) + list(x.shape[axis + 1 :]))

    return b.generic(node, gather)


@handles("Constant")
def _constant(b, node):
    attr = node.attribute[0]
    name = attr.name
    if name == "value":
        value = _to_tensor(numpy_helper.to_array(attr.t))
    elif name == "value_float":
        value = torch.tensor(attr.f, dtype=torch.float32)
    elif name == "value_floats":
        value = torch.tensor(list(attr.floats), dtype=torch.float32)
    elif name == "value_int":
        value = torch.tensor(attr.i, dtype=torch.int64)
    elif name == "value_ints":
        value = torch.tensor(list(attr.ints), dtype=torch.int64)
    else:
        raise _Unsupported(f"a {name} constant")
    return _Op("Constant", lambda: value, []), []


@handles("ConstantOfShape")
def _constant_of_shape(b, node):
    shape = b.const_list(node, 0)
    attrs = _attrs(node)
    value = attrs.get("value")
    fill = _to_tensor(numpy_helper.to_array(value)).reshape(-1) if value is not None else torch.zeros(1)
    marks = b.batch.marked(node, 0)
    if marks:  # a shape read off the batch (an LSTM's zero state): made at run time, at the batch that comes
        return b.batch.runtime_op(node, lambda f, batch: f.expand(with_batch(shape, marks, batch)), [], marks, [fill])
    out = fill.expand(shape).clone() if shape else fill.reshape([]).clone()
    return _Op("ConstantOfShape", lambda: out, []), []


@handles("Range")
def _range(b, node):
    start, limit, delta = (b.const(node, i) for i in range(3))
    out = torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)
    return _Op("Range", lambda: out, []), []


@handles("Expand")
def _expand(b, node):
    shape = b.const_list(node, 1)
    marks = b.batch.marked(node, 1)

    def expand(x, target):
        return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(target)))

    if marks:  # a target read off the batch: taken from the batch that comes at run time
        return b.batch.runtime_op(node, lambda x, batch: expand(x, with_batch(shape, marks, batch)), [0], marks)
    position = b.batch.axis.get(node.input[0])
    if shape and position and position[1] == 1:
        # a target equal to a run-time tensor's batch: 1 broadcasts to whatever batch comes
        k = position[0] + len(shape) - len(b.shape_of(node.input[0]))
        if 0 <= k < len(shape) and shape[k] == b.shape_of(node.input[0])[position[0]]:
            shape = shape[:k] + [1] + shape[k + 1 :]
    return b.generic(node, lambda x: expand(x, shape), use=[0])


@handles("Tile")
def _tile(b, node):
    reps = b.const_list(node, 1)
    marks = b.batch.marked(node, 1)
    if marks:
        return b.batch.runtime_op(node, lambda x, batch: x.repeat(with_batch(reps, marks, batch)), [0], marks)
    return b.generic(node, lambda x: x.repeat(reps), use=[0])


@handles("Pad")
def _pad(b, node):
    attrs = _attrs(node)
    rank = len(b.shape_of(node.input[0]))
    mode = attrs.get("mode", "constant")
    if b.opset < 11:
        pads, value, axes = list(attrs["pads"]), float(attrs.get("value", 0.0)), None
    else:
        pads = b.const_list(node, 1)
        v = b.const(node, 2)
        value = 0.0 if v is None else float(v.reshape(-1)[0]) if v.numel() else 0.0
        axes = b.const_list(node, 3)
    if axes is not None:
        full = [0] * (2 * rank)
        n = len(axes)
        for i, a in enumerate(axes):
            a = _broadcast_dims(rank, a)
            full[a], full[a + rank] = pads[i], pads[i + n]
        pads = full
    torch_pads = _torch_pad_order(pads)
    while len(torch_pads) >= 2 and torch_pads[-1] == 0 and torch_pads[-2] == 0:
        torch_pads = torch_pads[:-2]  # F.pad: only the trailing dims that are padded
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if torch_mode is None:
        raise _Unsupported(f"mode {mode!r}")
    if not torch_pads:
        return b.generic(node, lambda x: x, use=[0])
    if torch_mode == "constant":
        return b.generic(node, lambda x: F.pad(x, torch_pads, value=value), use=[0])
    return b.generic(node, lambda x: F.pad(x, torch_pads, mode=torch_mode), use=[0])
