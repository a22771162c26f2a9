"""Broadcasting binary ops (which couple groups) and the layers that consume and produce channels."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnxprune.analysis.channels import ChannelTracer as Tracer
from onnxprune.analysis.oprules import _pass, _rank, barrier, rule
from onnxprune.analysis.oprules.broadcasts import SHIFTING, TRACED, broadcast_operand, shift_every_channel
from onnxprune.analysis.oprules.quantized import LAYER_INPUTS, fixed_outputs, is_weight, slice_weight


# ---- binary ops: broadcasting couples channel-carrying operands ----------------------------
@rule(
    "Add",
    "Sub",
    "Mul",
    "Div",
    "PRelu",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Pow",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "And",
    "Or",
)
def broadcast(t: Tracer, node: gs.Node) -> None:
    out_rank = _rank(t, node.outputs[0])
    carried = [i for i in node.inputs if t.layout(i) is not None]
    if not carried:
        return
    if out_rank is None:
        return barrier(t, node, f"{t.where(node)}: output shape unknown")
    out_axes = {t.axis(i) + out_rank - _rank(t, i) for i in carried}
    if len(out_axes) != 1:
        return barrier(t, node, f"{t.where(node)}: operands carry channels on different axes")
    out_axis, first = out_axes.pop(), t.layout(carried[0])
    for other in carried[1:]:
        t.couple(first, t.layout(other), t.where(node))
    for i, tensor in enumerate(node.inputs):
        if t.layout(tensor) is not None or not tensor.name:
            continue
        shape = t.mg.shape(tensor)
        if shape is None:
            t.block(first, f"{t.where(node)}: operand {tensor.name!r} has an unknown shape")
            continue
        axis = out_axis - (out_rank - len(shape))
        if axis < 0 or shape[axis] == 1:  # the same value for every channel
            if node.op in SHIFTING:
                shift_every_channel(t, node, i, tensor, first, axis, out_rank - out_axis)
            continue
        if node.op == "Pow" and i == 1 or node.op == "Where" and i == 0:
            t.block(first, f"{t.where(node)}: per-channel exponent or condition")
        elif t.mg.is_const(tensor):
            t.add_member(
                "slice", node, tensor, axis, first, "divisor" if node.op == "Div" and i == 1 else "operand", position=i
            )
        elif node.op in TRACED and broadcast_operand(t, node, i, tensor, first, out_rank - out_axis):
            continue
        else:
            t.couple(
                first, t.layout_or_fixed(tensor, axis, f"{t.where(node)}: combined with opaque data"), t.where(node)
            )
    _pass(t, node, first, out_axis)


# ---- layers: consume channels on their input, produce new roots ---------------------------
def computed_weights(t: Tracer, node: gs.Node, weight: gs.Tensor, shape) -> None:
    """A layer whose weights are not a constant: its input is frozen, its output an unprunable root."""
    if weight is not None and weight.inputs and weight.inputs[0].op == "DequantizeLinear":
        reason = f"{t.where(node)}: weights are dequantized from computed values or in blocks"
    else:
        reason = f"{t.where(node)}: weights are computed, not constant"
    barrier(t, node, reason)
    out_shape = t.mg.shape(node.outputs[0])
    if out_shape is not None and len(out_shape) >= 2:
        axis = 1 if "Conv" in node.op else len(out_shape) - 1
        t.new_root(node, node.outputs[0], out_shape[axis], axis, reason)


@rule("Conv", "QLinearConv", "ConvInteger")
def conv(t: Tracer, node: gs.Node) -> None:
    w_pos, b_pos = LAYER_INPUTS[node.op]
    x, weight = node.inputs[0], node.inputs[w_pos]
    bias = node.inputs[b_pos] if b_pos is not None and len(node.inputs) > b_pos else None
    out, shape = node.outputs[0], t.mg.shape(weight)
    in_layout = t.layout(x)
    if in_layout is not None and t.axis(x) != 1:
        return barrier(t, node, f"{t.where(node)}: channels off axis 1")
    if shape is None or not is_weight(t, weight) or (bias is not None and bias.name and not is_weight(t, bias)):
        return computed_weights(t, node, weight, shape)
    groups, out_channels = int(node.attrs.get("group", 1)), shape[0]
    in_channels = shape[1] * groups
    if groups == 1:
        if in_layout is not None:
            slice_weight(t, node, w_pos, 1, in_layout, "consumer")
        out_layout = t.new_root(node, out, out_channels, 1)
    elif groups == in_channels and out_channels % groups == 0:
        # depthwise: output channel j reads input channel j // multiplier; `group` follows
        in_layout = t.layout_or_fixed(x, 1, f"{t.where(node)}: depthwise over a fixed input")
        if in_layout is None:
            return barrier(t, node, f"{t.where(node)}: input shape unknown")
        out_layout = in_layout.repeat(out_channels // groups)
        t.set(out, out_layout, 1)
        t.add_member("group_attr", node, None, 0, in_layout, "consumer")
    else:
        # grouped: input channel i of every group goes together (and likewise for the outputs), so
        # each group keeps the same count at the same offsets and `group` stays
        in_layout = t.layout_or_fixed(x, 1, f"{t.where(node)}: grouped conv over a fixed input")
        if in_layout is None or len(in_layout) != in_channels or out_channels % groups:
            return barrier(t, node, f"{t.where(node)}: grouped conv with unknown or uneven channels")
        t.couple_blocks(in_layout, groups, f"{t.where(node)} (group={groups})")
        slice_weight(t, node, w_pos, 1, in_layout.cut(0, in_channels // groups), "consumer")
        out_layout = t.new_root(node, out, out_channels, 1)
        t.couple_blocks(out_layout, groups, f"{t.where(node)} (group={groups})")
    slice_weight(t, node, w_pos, 0, out_layout, "producer")
    slice_weight(t, node, b_pos, 0, out_layout, "producer")


@rule("ConvTranspose")
def conv_transpose(t: Tracer, node: gs.Node) -> None:
    x, weight = node.inputs[0], node.inputs[1]
    shape, in_layout = t.mg.shape(weight), t.layout(x)
    if (
        shape is None
        or not is_weight(t, weight)
        or int(node.attrs.get("group", 1)) != 1
        or node.attrs.get("output_shape")
        or (in_layout is not None and t.axis(x) != 1)
    ):
        return barrier(t, node, f"{t.where(node)}: only constant, ungrouped ConvTranspose is pruned")
    if in_layout is not None:
        slice_weight(t, node, 1, 0, in_layout, "consumer")
    out_layout = t.new_root(node, node.outputs[0], shape[1], 1)
    slice_weight(t, node, 1, 1, out_layout, "producer")
    slice_weight(t, node, 2, 0, out_layout, "producer")


@rule("Gemm", "com.microsoft.QGemm")
def gemm(t: Tracer, node: gs.Node) -> None:
    w_pos, c_pos = (3, 6) if node.op == "QGemm" else (1, 2)
    a, b = node.inputs[0], node.inputs[w_pos]
    c = node.inputs[c_pos] if len(node.inputs) > c_pos else None
    trans_a, trans_b = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
    shape, in_layout = t.mg.shape(b), t.layout(a)
    if shape is None or not is_weight(t, b) or t.layout(b) is not None:
        return computed_weights(t, node, b, None)
    if in_layout is not None:
        if t.axis(a) != (0 if trans_a else 1):  # blocks the input; the Gemm's own outputs still prune
            t.block(in_layout, f"{t.where(node)}: channels on the batch axis of A")
        else:
            slice_weight(t, node, w_pos, 1 if trans_b else 0, in_layout, "consumer")
    out_layout = t.new_root(node, node.outputs[0], shape[0] if trans_b else shape[1], 1)
    slice_weight(t, node, w_pos, 0 if trans_b else 1, out_layout, "producer")
    c_shape = t.mg.shape(c) if c is not None and c.name else None
    if c_shape and c_shape[-1] == len(out_layout) and len(out_layout) > 1:
        slice_weight(t, node, c_pos, len(c_shape) - 1, out_layout, "producer")


@rule("MatMul", "QLinearMatMul", "MatMulInteger")
def matmul(t: Tracer, node: gs.Node) -> None:
    """A @ B with a constant (float, QDQ or integer) B [K, N]: rows follow A's last axis, columns are
    new channels."""
    w_pos = 3 if node.op == "QLinearMatMul" else 1
    a, b = node.inputs[0], node.inputs[w_pos]
    a_shape, b_shape, in_layout = t.mg.shape(a), t.mg.shape(b), t.layout(a)
    if b_shape is None or len(b_shape) != 2 or not is_weight(t, b) or a_shape is None:
        if node.op == "MatMul" and b.inputs and b.inputs[0].op == "DequantizeLinear":
            return computed_weights(t, node, b, None)
        reason = f"{t.where(node)}: only {node.op} by a constant 2-D weight is pruned"
        barrier(t, node, reason)
        return fixed_outputs(t, node, reason) if node.op != "MatMul" else None
    if in_layout is not None:
        if t.axis(a) != len(a_shape) - 1:  # blocks the input; the MatMul's own outputs still prune
            t.block(in_layout, f"{t.where(node)}: channels not on the contracted axis")
        else:
            slice_weight(t, node, w_pos, 0, in_layout, "consumer")
    out_layout = t.new_root(node, node.outputs[0], b_shape[1], len(a_shape) - 1)
    slice_weight(t, node, w_pos, 1, out_layout, "producer")
