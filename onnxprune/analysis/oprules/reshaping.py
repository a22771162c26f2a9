"""Ops that move, merge, cut or join channel axes: Transpose, Flatten, Reshape, Concat, Split, Slice."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis.channels import ChannelTracer as Tracer
from onnxprune.analysis.channels import Layout
from onnxprune.analysis.oprules import _data, _int_list, _pass, _rank, barrier, rule


# ---- shape ops ------------------------------------------------------------------------------
@rule("Shape", "Size")
def shape_reader(t: Tracer, node: gs.Node) -> None:
    """Reads the shape at run time: stays correct after pruning, carries no channels."""


@rule("Transpose")
def transpose(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    rank = _rank(t, _data(node))
    perm = node.attrs.get("perm") or list(reversed(range(rank or 0)))
    if t.axis(_data(node)) not in list(perm):
        return barrier(t, node, f"{t.where(node)}: permutation unknown")
    span = t.span(_data(node))
    if span is None:
        return _pass(t, node, layout, list(perm).index(t.axis(_data(node))))
    # channels spread over two axes (a channel shuffle's [g, c/g]): they must stay adjacent; a swap
    # permutes the positions, as the flattened tensor will see them
    first, second = list(perm).index(t.axis(_data(node))), list(perm).index(t.axis(_data(node)) + 1)
    if abs(first - second) != 1:
        return barrier(t, node, f"{t.where(node)}: separates the axes that hold the channels")
    if first < second:
        return t.set(node.outputs[0], layout, first, span)
    order = np.arange(len(layout)).reshape(span).T.ravel()
    t.set(node.outputs[0], Layout(layout.roots[order], layout.index[order]), second, span[::-1])


@rule("Squeeze", "Unsqueeze")
def squeeze(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    axis, in_rank, out_rank = t.axis(_data(node)), _rank(t, _data(node)), _rank(t, node.outputs[0])
    axes = _int_list(t, node, "axes", 1)
    if axes is None or in_rank is None or out_rank is None:
        return barrier(t, node, f"{t.where(node)}: axes are not constant")
    if node.op == "Squeeze":
        in_shape = t.mg.shape(_data(node))
        axes = [a % in_rank for a in axes] or [i for i, d in enumerate(in_shape) if d == 1]
        if axis in axes:
            return barrier(t, node, f"{t.where(node)}: squeezes the channel axis")
        _pass(t, node, layout, axis - sum(a < axis for a in axes))
    else:
        new_axis = axis
        for a in sorted(x % out_rank for x in axes):
            if a <= new_axis:
                new_axis += 1
        _pass(t, node, layout, new_axis)


@rule("Flatten")
def flatten(t: Tracer, node: gs.Node) -> None:
    layout, shape = t.layout(_data(node)), t.mg.shape(_data(node))
    if layout is None:
        return
    if shape is None:
        return barrier(t, node, f"{t.where(node)}: input shape unknown")
    axis, split = t.axis(_data(node)), int(node.attrs.get("axis", 1)) % max(len(shape), 1)
    if split > axis:  # channels land in the leading dimension
        return barrier(t, node, f"{t.where(node)}: flattens channels into the leading dimension")
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    outer = int(np.prod(shape[split:axis], dtype=np.int64))
    _pass(t, node, layout.repeat(inner).tile(outer), 1)


@rule("Reshape")
def reshape(t: Tracer, node: gs.Node) -> None:
    """Channels may keep their axis, merge with the dims after them (a flatten), or split into two
    axes [g, c/g] that a Transpose may swap and a Reshape merge back (a channel shuffle)."""
    layout = t.layout(_data(node))
    if layout is None:
        return
    if t.span(_data(node)) is not None:
        return _merge_rows(t, node)
    in_shape, out_shape = t.mg.shape(_data(node)), t.mg.shape(node.outputs[0])
    if in_shape is None or out_shape is None:
        return barrier(t, node, f"{t.where(node)}: shapes unknown")
    axis, channels = t.axis(_data(node)), in_shape[t.axis(_data(node))]
    outer = int(np.prod(in_shape[:axis], dtype=np.int64))
    inner = int(np.prod(in_shape[axis + 1 :], dtype=np.int64))

    def fits(b: int) -> bool:
        if int(np.prod(out_shape[:b], dtype=np.int64)) != outer or out_shape[b] % channels:
            return False
        repeat = out_shape[b] // channels
        return inner % repeat == 0 and int(np.prod(out_shape[b + 1 :], dtype=np.int64)) == inner // repeat

    # size-1 dims let several axes fit ([1, 1] -> [1, 1]): prefer the channel axis, else the last one
    fitting = [b for b in range(len(out_shape)) if fits(b)]
    merged = None if fitting else _merged_from_before(in_shape, out_shape, axis)
    if fitting or merged:
        b = (axis if axis in fitting else fitting[-1]) if fitting else merged[0]
        out_layout = layout.repeat(out_shape[b] // channels) if fitting else layout.repeat(merged[2]).tile(merged[1])
        if not _dim_follows(t, node, b, out_layout, None):
            return barrier(t, node, f"{t.where(node)}: target shape is computed with a fixed channel count")
        return _pass(t, node, out_layout, b)
    rows = _channel_split(in_shape, out_shape, axis)
    if rows is None:
        return barrier(t, node, f"{t.where(node)}: reshape splits or reorders channels")
    # [.., c, ..] -> [.., g, c/g, ..] (a channel shuffle's first step): row r, column i is channel
    # r*c/g + i; every row must keep the same columns, so the columns are coupled across rows
    if not _dim_follows(t, node, axis + 1, layout, rows):
        return barrier(t, node, f"{t.where(node)}: target shape is computed with a fixed channel count")
    t.couple_blocks(layout, rows, f"{t.where(node)} (splits the channels into {rows} rows)")
    t.set(node.outputs[0], layout, axis, (rows, channels // rows))


def _merged_from_before(in_shape: tuple, out_shape: tuple, axis: int) -> tuple[int, int, int] | None:
    """(b, tile, repeat) when output axis b holds the channels with part of the axes before them merged
    in ([N, W, C] -> [N, W/2, 2C] or [N, W*C], channels last): position (o, c, r) of the merged axis is
    channel c, so the layout is tiled `tile` times (Torch-Pruning's flatten index mapping). The batch
    axis is never merged into the channels."""
    channels = in_shape[axis]
    outer = int(np.prod(in_shape[:axis], dtype=np.int64))
    inner = int(np.prod(in_shape[axis + 1 :], dtype=np.int64))
    for b in range(1, len(out_shape)):
        before = int(np.prod(out_shape[:b], dtype=np.int64))
        if before == 0 or outer % before or out_shape[b] % (channels * (outer // before)):
            continue
        tile = outer // before
        repeat = out_shape[b] // (channels * tile)
        if tile > 1 and inner % repeat == 0 and int(np.prod(out_shape[b + 1 :], dtype=np.int64)) == inner // repeat:
            return b, tile, repeat
    return None


def _channel_split(in_shape: tuple, out_shape: tuple, axis: int) -> int | None:
    """The row count g when the reshape turns channel axis `axis` into two axes [g, c/g] in place."""
    channels = in_shape[axis]
    if (
        len(out_shape) != len(in_shape) + 1
        or tuple(out_shape[:axis]) != tuple(in_shape[:axis])
        or tuple(out_shape[axis + 2 :]) != tuple(in_shape[axis + 1 :])
    ):
        return None
    rows, columns = out_shape[axis], out_shape[axis + 1]
    return rows if rows * columns == channels and 1 < rows < channels else None


def _dim_follows(t: Tracer, node: gs.Node, entry: int, layout: Layout, rows: int | None) -> bool:
    """Register the target-shape entry that must become kept/rows; False if it cannot follow pruning.

    A computed target (paddle2onnx: Concat(Shape(x)[0], Cast(Constant 200))) is followed to the
    piece that holds the entry: a constant piece is rewritten where its reader reads it, a piece
    derived from Shape tracks pruning at run time.
    """
    reader, tensor, index = _entry_source(t, node, node.inputs[1], entry)
    if tensor is None:
        if reader is not None:  # derived from Shape
            return True
        folded = t.mg.fold_small(node.inputs[1])  # 0 and -1 follow the input whatever computes them
        return folded is not None and entry < len(folded) and int(folded[entry]) <= 0
    value = t.mg.const_value(tensor)
    if int(value[index]) > 0:  # 0 and -1 are copied or inferred by the Reshape itself
        t.add_member("dim", reader, tensor, index, layout, "operand", extra=rows)
    return True


SHAPE_PASSTHROUGH = ("Cast", "Identity")


def _entry_source(t: Tracer, reader: gs.Node, tensor: gs.Tensor, entry: int, depth: int = 0):
    """Where entry `entry` of the 1-D shape `tensor` (read by `reader`) comes from:
    (reader, constant, index) for a constant, (reader, None, None) for a Shape-derived value,
    (None, None, None) when it cannot be told."""
    unknown = (None, None, None)
    value = t.mg.const_value(tensor)
    if value is not None:
        return (reader, tensor, entry) if value.ndim == 1 and entry < len(value) else unknown
    producer = tensor.inputs[0] if tensor.inputs and depth < 12 else None
    if producer is None:
        return unknown
    if producer.op in SHAPE_PASSTHROUGH:
        return _entry_source(t, producer, producer.inputs[0], entry, depth + 1)
    if producer.op == "Concat":
        offset = 0
        for piece in producer.inputs:
            shape = t.mg.shape(piece)
            if shape is None or len(shape) != 1 or not isinstance(shape[0], int):
                return unknown
            if entry < offset + shape[0]:
                return _entry_source(t, producer, piece, entry - offset, depth + 1)
            offset += shape[0]
        return unknown
    return (reader, None, None) if _runtime_shape(tensor) else unknown


def _merge_rows(t: Tracer, node: gs.Node) -> None:
    """[.., a, b, ..] -> [.., a*b, ..]: the channels, spread over two axes, come back onto one."""
    layout, span, axis = t.layout(_data(node)), t.span(_data(node)), t.axis(_data(node))
    in_shape, out_shape = t.mg.shape(_data(node)), t.mg.shape(node.outputs[0])
    if (
        in_shape is None
        or out_shape is None
        or len(out_shape) != len(in_shape) - 1
        or tuple(out_shape[:axis]) != tuple(in_shape[:axis])
        or out_shape[axis] != len(layout)
        or tuple(out_shape[axis + 1 :]) != tuple(in_shape[axis + 2 :])
    ):
        return barrier(t, node, f"{t.where(node)}: reshape of channels spread over {len(span)} axes")
    if not _dim_follows(t, node, axis, layout, None):
        return barrier(t, node, f"{t.where(node)}: target shape is computed with a fixed channel count")
    _pass(t, node, layout, axis)


def _runtime_shape(tensor: gs.Tensor, depth: int = 0) -> bool:
    """True when a shape tensor is derived from a Shape op (so it tracks pruning at run time)."""
    if depth > 8 or not tensor.inputs:
        return False
    producer = tensor.inputs[0]
    if producer.op == "Shape":
        return True
    return any(_runtime_shape(i, depth + 1) for i in producer.inputs if isinstance(i, gs.Variable))


@rule("Expand")
def expand(t: Tracer, node: gs.Node) -> None:
    """Broadcasting a tensor that carries channels: they stay on their (right-aligned) axis, and the
    target shape's entry there must follow them."""
    layout = t.layout(_data(node))
    if layout is None:
        return
    in_rank, out_rank = _rank(t, _data(node)), _rank(t, node.outputs[0])
    if in_rank is None or out_rank is None:
        return barrier(t, node, f"{t.where(node)}: shapes unknown")
    axis = t.axis(_data(node)) + out_rank - in_rank
    if t.mg.shape(node.outputs[0])[axis] != len(layout):
        return barrier(t, node, f"{t.where(node)}: broadcasts the channel axis")
    if not expand_follows(t, node, axis, layout):
        return barrier(t, node, f"{t.where(node)}: target shape is computed with a fixed channel count")
    _pass(t, node, layout, axis)


def expand_follows(t: Tracer, node: gs.Node, axis: int, layout: Layout) -> bool:
    """Register the entry of an Expand's target shape that lies on output axis `axis` (the shape is
    right-aligned with the output); False if it cannot follow the channels."""
    length, out_rank = t.mg.shape(node.inputs[1]), _rank(t, node.outputs[0])
    if not length or not isinstance(length[0], int) or out_rank is None:
        return False
    entry = axis - (out_rank - length[0])
    return entry < 0 or _dim_follows(t, node, entry, layout, None)


@rule("Concat")
def concat(t: Tracer, node: gs.Node, inputs: list | None = None) -> None:
    """`inputs`: the tensors joined (QLinearConcat interleaves them with their scales)."""
    inputs = node.inputs if inputs is None else inputs
    carried = [i for i in inputs if t.layout(i) is not None]
    if not carried:
        return
    axis = t.axis(carried[0])
    if any(t.axis(i) != axis for i in carried):
        return barrier(t, node, f"{t.where(node)}: inputs carry channels on different axes")
    rank = _rank(t, node.outputs[0]) or 0
    cat_axis = int(node.attrs.get("axis", 0)) % max(rank, 1)
    if cat_axis != axis:  # concatenating along another axis: channels must match position-wise
        for other in carried[1:]:
            t.couple(t.layout(carried[0]), t.layout(other), t.where(node))
        for i in inputs:
            if t.layout(i) is None:
                t.block(t.layout(carried[0]), f"{t.where(node)}: joined with opaque data")
        return _pass(t, node, t.layout(carried[0]), axis)
    parts = [t.layout_or_fixed(i, axis, f"{t.where(node)}: concatenated with a fixed input") for i in inputs]
    if any(p is None for p in parts):
        return barrier(t, node, f"{t.where(node)}: an input's shape is unknown")
    _pass(t, node, Layout.concat(parts), axis)


@rule("Split")
def split(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    rank, axis = _rank(t, _data(node)), t.axis(_data(node))
    split_axis = int(node.attrs.get("axis", 0)) % (rank or 1)
    if split_axis != axis:
        return _pass(t, node, layout, axis, outputs=len(node.outputs))
    sizes = [t.mg.shape(o)[axis] if t.mg.shape(o) else None for o in node.outputs]
    if None in sizes:
        return barrier(t, node, f"{t.where(node)}: output shapes unknown")
    parts, start = [], 0
    for out, size in zip(node.outputs, sizes):
        parts.append(layout.cut(start, start + size))
        t.set(out, parts[-1], axis)
        start += size
    t.add_member("split", node, None, axis, layout, "operand", extra=parts)


@rule("Slice")
def slice_(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    rank, axis = _rank(t, _data(node)), t.axis(_data(node))
    starts, ends = _int_list(t, node, "starts", 1), _int_list(t, node, "ends", 2)
    axes = _int_list(t, node, "axes", 3) or list(range(len(starts or [])))
    steps = _int_list(t, node, "steps", 4) or [1] * len(axes)
    if None in (starts, ends, axes, steps) or rank is None:
        return barrier(t, node, f"{t.where(node)}: slice bounds are not constant")
    axes = [a % rank for a in axes]
    if axis not in axes:
        return _pass(t, node, layout, axis)
    i = axes.index(axis)
    if steps[i] != 1:
        return barrier(t, node, f"{t.where(node)}: strided slice of the channel axis")
    start, stop, _ = slice(starts[i], ends[i]).indices(len(layout))
    t.add_member("slice_bounds", node, None, i, layout, "operand", extra=(start, stop))
    _pass(t, node, layout.cut(start, stop), axis)
