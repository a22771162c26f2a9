"""THE registry: for each op type, how channels flow through it.

A rule gets the tracer and the node. It reads its inputs' layouts, sets its outputs' layouts,
couples or blocks roots, and registers the constants and attributes that surgery must change.
Adding an op means adding one function here, decorated with `@rule("OpType", ...)`.
An op with no rule blocks every channel that reaches it: the graph stays correct.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx_graphsurgeon as gs

from .groups import Layout, Tracer

Rule = Callable[[Tracer, gs.Node], None]
RULES: dict[str, Rule] = {}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for op in op_types:
            RULES[op] = fn
        return fn
    return register


def _where(node: gs.Node) -> str:
    return f"node {node.name!r} ({node.op})"


def _subgraph_reads(graph: gs.Graph) -> set[str]:
    """Names of every tensor the nodes of a subgraph (and its own subgraphs) read."""
    names = set()
    for inner in graph.nodes:
        names.update(i.name for i in inner.inputs if i.name)
        for value in inner.attrs.values():
            if isinstance(value, gs.Graph):
                names |= _subgraph_reads(value)
    return names


def apply_rule(t: Tracer, node: gs.Node) -> None:
    subgraphs = [v for v in node.attrs.values() if isinstance(v, gs.Graph)]
    if subgraphs:  # If/Loop/Scan bodies read outer tensors implicitly: freeze all of them
        reason = f"{_where(node)}: read inside a subgraph"
        for name in set().union(*(_subgraph_reads(g) for g in subgraphs)):
            t.block(t.layouts.get(name), reason)
        return barrier(t, node, reason)
    fn = RULES.get(node.op) if (node.domain or "") in ("", "ai.onnx") else None
    if fn is None:
        barrier(t, node, f"{_where(node)}: no channel rule for this op")
        return
    fn(t, node)


def barrier(t: Tracer, node: gs.Node, reason: str) -> None:
    """Channels entering the node stay as they are; its outputs are opaque."""
    for tensor in node.inputs:
        t.block(t.layout(tensor), reason)


def _data(node: gs.Node) -> gs.Tensor:
    return node.inputs[0]


def _pass(t: Tracer, node: gs.Node, layout: Layout, axis: int, outputs: int = 1) -> None:
    for out in node.outputs[:outputs]:
        t.set(out, layout, axis)


def _int_list(t: Tracer, node: gs.Node, attr: str, input_index: int) -> list[int] | None:
    """An int-list parameter given as attribute (old opsets) or constant input (new ones)."""
    if attr in node.attrs:
        return [int(v) for v in np.atleast_1d(node.attrs[attr])]
    if len(node.inputs) > input_index and node.inputs[input_index].name:
        value = t.mg.const_value(node.inputs[input_index])
        return None if value is None else [int(v) for v in np.atleast_1d(value)]
    return []


def _rank(t: Tracer, tensor: gs.Tensor) -> int | None:
    shape = t.mg.shape(tensor)
    return None if shape is None else len(shape)


# ---- channel-preserving ops ---------------------------------------------------------------
ELEMENTWISE = ("Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
               "Celu", "Gelu", "Softplus", "Softsign", "Mish", "Erf", "Abs", "Neg", "Sqrt", "Exp",
               "Identity", "Cast", "Clip", "Dropout", "ThresholdedRelu", "Round", "Floor", "Ceil",
               "Sign", "Reciprocal", "Log", "Sin", "Cos", "Not", "IsNaN", "IsInf")


@rule(*ELEMENTWISE)
def elementwise(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is not None:
        _pass(t, node, layout, t.axis(_data(node)), outputs=len(node.outputs))


@rule("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def pool(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    if t.axis(_data(node)) != 1:
        return barrier(t, node, f"{_where(node)}: pooling with channels off axis 1")
    if len(node.outputs) > 1 and node.outputs[1].outputs:
        return barrier(t, node, f"{_where(node)}: MaxPool indices encode channel offsets")
    _pass(t, node, layout, 1)


@rule("BatchNormalization", "InstanceNormalization")
def batchnorm(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    if t.axis(_data(node)) != 1:
        return barrier(t, node, f"{_where(node)}: normalization with channels off axis 1")
    for tensor in node.inputs[1:]:
        t.slice_const(node, tensor, 0, layout, "norm")
    _pass(t, node, layout, 1, outputs=1)
    for extra in node.outputs[1:]:  # training-mode running stats follow the channels too
        if extra.name:
            t.set(extra, layout, 0)


@rule("Softmax", "LogSoftmax", "Hardmax", "LRN", "LpNormalization", "CumSum")
def along_axis(t: Tracer, node: gs.Node) -> None:
    """Fine when working along another axis; mixing across channels changes every channel."""
    layout = t.layout(_data(node))
    if layout is None:
        return
    rank = _rank(t, _data(node)) or 0
    if node.op == "LRN":
        axis = 1
    elif node.op == "CumSum":
        value = t.mg.const_value(node.inputs[1])
        axis = int(value) if value is not None else t.axis(_data(node))
    else:
        axis = int(node.attrs.get("axis", -1 if t.mg.opset >= 13 else 1))
    axis = axis % rank if rank else axis
    if node.op in ("Softmax", "LogSoftmax", "Hardmax") and t.mg.opset < 13 and axis <= t.axis(_data(node)):
        return barrier(t, node, f"{_where(node)}: normalises over the channel axis")
    if axis == t.axis(_data(node)):
        return barrier(t, node, f"{_where(node)}: mixes values across channels")
    _pass(t, node, layout, t.axis(_data(node)))


@rule("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL1", "ReduceL2", "ReduceProd",
      "ReduceLogSumExp", "ReduceSumSquare", "ReduceLogSum")
def reduce(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    rank, axis = _rank(t, _data(node)), t.axis(_data(node))
    axes = _int_list(t, node, "axes", 1)
    if axes is None or rank is None:
        return barrier(t, node, f"{_where(node)}: reduction axes are not constant")
    axes = [a % rank for a in axes] or list(range(rank))  # no axes: reduce all (noop_with_empty_axes aside)
    if not axes and node.attrs.get("noop_with_empty_axes", 0):
        axes = []
    if axis in axes:
        return barrier(t, node, f"{_where(node)}: reduces over the channel axis")
    keep = node.attrs.get("keepdims", 1)
    _pass(t, node, layout, axis if keep else axis - sum(a < axis for a in axes))


@rule("Pad")
def pad(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    rank, axis = _rank(t, _data(node)), t.axis(_data(node))
    pads = _int_list(t, node, "pads", 1)
    axes = _int_list(t, node, "axes", 3) if len(node.inputs) > 3 else []
    if pads is None or rank is None or axes is None:
        return barrier(t, node, f"{_where(node)}: pads are not constant")
    axes = [a % rank for a in axes] or list(range(rank))
    n = len(axes)
    if axis in axes:
        i = axes.index(axis)
        if pads[i] != 0 or pads[i + n] != 0:
            return barrier(t, node, f"{_where(node)}: pads the channel axis")
    _pass(t, node, layout, axis)


@rule("Resize", "Upsample")
def resize(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    axis = t.axis(_data(node))
    in_shape, out_shape = t.mg.shape(_data(node)), t.mg.shape(node.outputs[0])
    if in_shape is None or out_shape is None or in_shape[axis] != out_shape[axis]:
        return barrier(t, node, f"{_where(node)}: resizes the channel axis")
    if node.op == "Resize" and len(node.inputs) > 3 and node.inputs[3].name:  # explicit `sizes`
        if not t.mg.is_const(node.inputs[3]):
            return barrier(t, node, f"{_where(node)}: sizes are computed")
        t.add_member("dim", node, node.inputs[3], axis, layout, "operand")
    _pass(t, node, layout, axis)


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
        return barrier(t, node, f"{_where(node)}: permutation unknown")
    _pass(t, node, layout, list(perm).index(t.axis(_data(node))))


@rule("Squeeze", "Unsqueeze")
def squeeze(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    axis, in_rank, out_rank = t.axis(_data(node)), _rank(t, _data(node)), _rank(t, node.outputs[0])
    axes = _int_list(t, node, "axes", 1)
    if axes is None or in_rank is None or out_rank is None:
        return barrier(t, node, f"{_where(node)}: axes are not constant")
    if node.op == "Squeeze":
        in_shape = t.mg.shape(_data(node))
        axes = [a % in_rank for a in axes] or [i for i, d in enumerate(in_shape) if d == 1]
        if axis in axes:
            return barrier(t, node, f"{_where(node)}: squeezes the channel axis")
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
        return barrier(t, node, f"{_where(node)}: input shape unknown")
    axis, split = t.axis(_data(node)), int(node.attrs.get("axis", 1)) % max(len(shape), 1)
    if split > axis:  # channels land in the leading dimension
        return barrier(t, node, f"{_where(node)}: flattens channels into the leading dimension")
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    outer = int(np.prod(shape[split:axis], dtype=np.int64))
    _pass(t, node, layout.repeat(inner).tile(outer), 1)


@rule("Reshape")
def reshape(t: Tracer, node: gs.Node) -> None:
    """Channels may keep their axis or merge with the dims after them (a flatten); nothing else."""
    layout = t.layout(_data(node))
    if layout is None:
        return
    in_shape, out_shape = t.mg.shape(_data(node)), t.mg.shape(node.outputs[0])
    if in_shape is None or out_shape is None:
        return barrier(t, node, f"{_where(node)}: shapes unknown")
    axis, channels = t.axis(_data(node)), in_shape[t.axis(_data(node))]
    outer = int(np.prod(in_shape[:axis], dtype=np.int64))
    inner = int(np.prod(in_shape[axis + 1:], dtype=np.int64))

    def fits(b: int) -> bool:
        if int(np.prod(out_shape[:b], dtype=np.int64)) != outer or out_shape[b] % channels:
            return False
        repeat = out_shape[b] // channels
        return inner % repeat == 0 and int(np.prod(out_shape[b + 1:], dtype=np.int64)) == inner // repeat

    # size-1 dims let several axes fit ([1, 1] -> [1, 1]): prefer the channel axis, else the last one
    fitting = [b for b in range(len(out_shape)) if fits(b)]
    if fitting:
        b = axis if axis in fitting else fitting[-1]
        out_layout = layout.repeat(out_shape[b] // channels)
        target = node.inputs[1]
        value = t.mg.const_value(target)
        if value is not None and b < len(value) and int(value[b]) > 0:
            t.add_member("dim", node, target, b, out_layout, "operand")
        elif value is None and not _runtime_shape(target):
            folded = t.mg.fold_small(target)
            if folded is None or b >= len(folded) or int(folded[b]) > 0:
                return barrier(t, node, f"{_where(node)}: target shape is computed with a fixed channel count")
        return _pass(t, node, out_layout, b)
    barrier(t, node, f"{_where(node)}: reshape splits or reorders channels (e.g. a channel shuffle)")


def _runtime_shape(tensor: gs.Tensor, depth: int = 0) -> bool:
    """True when a shape tensor is derived from a Shape op (so it tracks pruning at run time)."""
    if depth > 8 or not tensor.inputs:
        return False
    producer = tensor.inputs[0]
    if producer.op == "Shape":
        return True
    return any(_runtime_shape(i, depth + 1) for i in producer.inputs if isinstance(i, gs.Variable))


@rule("Concat")
def concat(t: Tracer, node: gs.Node) -> None:
    carried = [i for i in node.inputs if t.layout(i) is not None]
    if not carried:
        return
    axis = t.axis(carried[0])
    if any(t.axis(i) != axis for i in carried):
        return barrier(t, node, f"{_where(node)}: inputs carry channels on different axes")
    rank = _rank(t, node.outputs[0]) or 0
    cat_axis = int(node.attrs.get("axis", 0)) % max(rank, 1)
    if cat_axis != axis:  # concatenating along another axis: channels must match position-wise
        for other in carried[1:]:
            t.couple(t.layout(carried[0]), t.layout(other), _where(node))
        for i in node.inputs:
            if t.layout(i) is None:
                t.block(t.layout(carried[0]), f"{_where(node)}: joined with opaque data")
        return _pass(t, node, t.layout(carried[0]), axis)
    parts = [t.layout_or_fixed(i, axis, f"{_where(node)}: concatenated with a fixed input") for i in node.inputs]
    if any(p is None for p in parts):
        return barrier(t, node, f"{_where(node)}: an input's shape is unknown")
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
        return barrier(t, node, f"{_where(node)}: output shapes unknown")
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
        return barrier(t, node, f"{_where(node)}: slice bounds are not constant")
    axes = [a % rank for a in axes]
    if axis not in axes:
        return _pass(t, node, layout, axis)
    i = axes.index(axis)
    if steps[i] != 1:
        return barrier(t, node, f"{_where(node)}: strided slice of the channel axis")
    start, stop, _ = slice(starts[i], ends[i]).indices(len(layout))
    t.add_member("slice_bounds", node, None, i, layout, "operand", extra=(start, stop))
    _pass(t, node, layout.cut(start, stop), axis)


# ---- binary ops: broadcasting couples channel-carrying operands ----------------------------
@rule("Add", "Sub", "Mul", "Div", "PRelu", "Max", "Min", "Sum", "Mean", "Pow", "Where", "Equal",
      "Less", "Greater", "And", "Or")
def broadcast(t: Tracer, node: gs.Node) -> None:
    out_rank = _rank(t, node.outputs[0])
    carried = [i for i in node.inputs if t.layout(i) is not None]
    if not carried:
        return
    if out_rank is None:
        return barrier(t, node, f"{_where(node)}: output shape unknown")
    out_axes = {t.axis(i) + out_rank - _rank(t, i) for i in carried}
    if len(out_axes) != 1:
        return barrier(t, node, f"{_where(node)}: operands carry channels on different axes")
    out_axis, first = out_axes.pop(), t.layout(carried[0])
    for other in carried[1:]:
        t.couple(first, t.layout(other), _where(node))
    for i, tensor in enumerate(node.inputs):
        if t.layout(tensor) is not None or not tensor.name:
            continue
        shape = t.mg.shape(tensor)
        if shape is None:
            t.block(first, f"{_where(node)}: operand {tensor.name!r} has an unknown shape")
            continue
        axis = out_axis - (out_rank - len(shape))
        if axis < 0 or shape[axis] == 1:
            continue  # broadcast along channels: nothing to slice
        if node.op == "Pow" and i == 1 or node.op == "Where" and i == 0:
            t.block(first, f"{_where(node)}: per-channel exponent or condition")
        elif t.mg.is_const(tensor):
            t.add_member("slice", node, tensor, axis, first, "divisor" if node.op == "Div" and i == 1 else "operand")
        else:
            t.couple(first, t.layout_or_fixed(tensor, axis, f"{_where(node)}: combined with opaque data"), _where(node))
    _pass(t, node, first, out_axis)


# ---- layers: consume channels on their input, produce new roots ---------------------------
@rule("Conv")
def conv(t: Tracer, node: gs.Node) -> None:
    x, weight = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    out, shape = node.outputs[0], t.mg.shape(weight)
    in_layout = t.layout(x)
    if in_layout is not None and t.axis(x) != 1:
        return barrier(t, node, f"{_where(node)}: channels off axis 1")
    if shape is None or not t.mg.is_const(weight) or (bias is not None and bias.name and not t.mg.is_const(bias)):
        barrier(t, node, f"{_where(node)}: weights are computed, not constant")
        return
    groups, out_channels = int(node.attrs.get("group", 1)), shape[0]
    in_channels = shape[1] * groups
    if groups == 1:
        if in_layout is not None:
            t.slice_const(node, weight, 1, in_layout, "consumer")
        out_layout = t.new_root(node, out, out_channels, 1)
    elif groups == in_channels and out_channels % groups == 0:
        # depthwise: output channel j reads input channel j // multiplier; `group` follows
        in_layout = t.layout_or_fixed(x, 1, f"{_where(node)}: depthwise over a fixed input")
        if in_layout is None:
            return barrier(t, node, f"{_where(node)}: input shape unknown")
        out_layout = in_layout.repeat(out_channels // groups)
        t.set(out, out_layout, 1)
        t.add_member("group_attr", node, None, 0, in_layout, "consumer")
    else:
        reason = f"{_where(node)}: grouped conv (group={groups}) keeps its channels"
        t.block(in_layout, reason)
        out_layout = t.new_root(node, out, out_channels, 1, reason)
    t.slice_const(node, weight, 0, out_layout, "producer")
    t.slice_const(node, bias, 0, out_layout, "producer")


@rule("ConvTranspose")
def conv_transpose(t: Tracer, node: gs.Node) -> None:
    x, weight = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    shape, in_layout = t.mg.shape(weight), t.layout(x)
    if shape is None or not t.mg.is_const(weight) or int(node.attrs.get("group", 1)) != 1 \
            or node.attrs.get("output_shape") or (in_layout is not None and t.axis(x) != 1):
        return barrier(t, node, f"{_where(node)}: only constant, ungrouped ConvTranspose is pruned")
    if in_layout is not None:
        t.slice_const(node, weight, 0, in_layout, "consumer")
    out_layout = t.new_root(node, node.outputs[0], shape[1], 1)
    t.slice_const(node, weight, 1, out_layout, "producer")
    t.slice_const(node, bias, 0, out_layout, "producer")


@rule("Gemm")
def gemm(t: Tracer, node: gs.Node) -> None:
    a, b = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    trans_a, trans_b = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
    shape, in_layout = t.mg.shape(b), t.layout(a)
    if shape is None or not t.mg.is_const(b) or t.layout(b) is not None:
        return barrier(t, node, f"{_where(node)}: weight is computed, not constant")
    if in_layout is not None:
        if t.axis(a) != (0 if trans_a else 1):  # blocks the input; the Gemm's own outputs still prune
            t.block(in_layout, f"{_where(node)}: channels on the batch axis of A")
        else:
            t.slice_const(node, b, 1 if trans_b else 0, in_layout, "consumer")
    out_layout = t.new_root(node, node.outputs[0], shape[0] if trans_b else shape[1], 1)
    t.slice_const(node, b, 0 if trans_b else 1, out_layout, "producer")
    c_shape = t.mg.shape(c) if c is not None and c.name else None
    if c_shape and c_shape[-1] == len(out_layout) and len(out_layout) > 1:
        t.slice_const(node, c, len(c_shape) - 1, out_layout, "producer")


@rule("MatMul")
def matmul(t: Tracer, node: gs.Node) -> None:
    a, b = node.inputs
    a_shape, b_shape, in_layout = t.mg.shape(a), t.mg.shape(b), t.layout(a)
    if b_shape is None or len(b_shape) != 2 or not t.mg.is_const(b) or a_shape is None:
        return barrier(t, node, f"{_where(node)}: only MatMul by a constant 2-D weight is pruned")
    if in_layout is not None:
        if t.axis(a) != len(a_shape) - 1:  # blocks the input; the MatMul's own outputs still prune
            t.block(in_layout, f"{_where(node)}: channels not on the contracted axis")
        else:
            t.slice_const(node, b, 0, in_layout, "consumer")
    out_layout = t.new_root(node, node.outputs[0], b_shape[1], len(a_shape) - 1)
    t.slice_const(node, b, 1, out_layout, "producer")
