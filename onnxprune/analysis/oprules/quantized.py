"""Quantized layers and their scales: QDQ (DequantizeLinear of an int8 weight feeding a float
Conv/Gemm/MatMul), QOperator (QLinearConv, QLinearMatMul) and dynamic quantization (ConvInteger,
MatMulInteger after DynamicQuantizeLinear).

Slicing an integer weight is surgery like any other: its rows (or columns) go with the channels,
and so do its scales and zero points when they are per channel along the cut axis; a per-tensor
scale, and a per-channel one along the other axis, stay as they are. For the zero-mask oracle,
"zero" of an integer weight is its zero point (dequantized, (q - zp) * scale = 0), and a zeroed
activation quantized per tensor is its zero point, which every quantized consumer reads as 0: so a
pruned quantized graph equals the zero-masked original. Activation Quantize/Dequantize pass the
channels through (per-tensor scales unchanged, per-channel ones sliced); DynamicQuantizeLinear's
scale spans all channels, but its range always includes 0, so zeroed channels leave it unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis.channels import ChannelTracer as Tracer
from onnxprune.analysis.oprules import _data, _pass, _rank, barrier, rule

QUANTIZED_LAYERS = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger")
QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")

# op -> {integer weight's input position: (scale position, zero-point position, the weight's axis
# that per-channel scales run along)}
INTEGER_WEIGHTS = {
    "QLinearConv": {3: (4, 5, 0)},
    "ConvInteger": {1: (None, 3, 0)},
    "QLinearMatMul": {3: (4, 5, 1)},
    "MatMulInteger": {1: (None, 3, 1)},
    "QGemm": {3: (4, 5, None)},  # onnxruntime's (com.microsoft); the axis depends on transB
}
# where a quantized layer reads its data and (QOperator) its bias
LAYER_INPUTS = {"Conv": (1, 2), "QLinearConv": (3, 8), "ConvInteger": (1, None)}


def dequantized_constant(t: Tracer, tensor: gs.Tensor | None) -> gs.Node | None:
    """The DequantizeLinear that computes `tensor` from constants only (a QDQ weight or bias)."""
    node = tensor.inputs[0] if tensor is not None and tensor.inputs else None
    if node is None or node.op != "DequantizeLinear" or (node.domain or "") not in ("", "ai.onnx"):
        return None
    if node.attrs.get("block_size", 0) or not all(t.mg.is_const(i) for i in node.inputs if i.name):
        return None
    return node


def is_weight(t: Tracer, tensor: gs.Tensor | None) -> bool:
    """A constant, or the dequantization of one."""
    return tensor is not None and (t.mg.is_const(tensor) or dequantized_constant(t, tensor) is not None)


def slice_weight(t: Tracer, node: gs.Node, position: int, axis: int, layout, role: str) -> bool:
    """`slice_const` for input `position` of a layer: a float constant, a QDQ weight (its int8 values,
    scales and zero points are cut where the DequantizeLinear reads them) or a QOperator/integer one."""
    tensor = node.inputs[position] if position is not None and position < len(node.inputs) else None
    if tensor is None or not tensor.name:
        return True
    dq = dequantized_constant(t, tensor)
    if dq is not None:
        rank = len(t.mg.shape(dq.inputs[0]) or [0])
        return _slice_integer(t, dq, 0, 1, 2, int(dq.attrs.get("axis", 1)) % max(rank, 1), axis, layout, role)
    spec = INTEGER_WEIGHTS.get(node.op, {}).get(position)
    if spec is None:
        return t.slice_const(node, tensor, axis, layout, role)
    scale, zero_point, channel_axis = spec
    if node.op == "QGemm":  # B [K, N], or [N, K] with transB: scales run along N
        channel_axis = 0 if node.attrs.get("transB", 0) else 1
    return _slice_integer(t, node, position, scale, zero_point, channel_axis, axis, layout, role)


def _slice_integer(t, node, w_pos, s_pos, zp_pos, quant_axis, axis, layout, role) -> bool:
    params = [p for p in (s_pos, zp_pos) if p is not None and p < len(node.inputs) and node.inputs[p].name]
    values = {p: t.mg.const_value(node.inputs[p]) for p in params}
    if any(v is None for v in values.values()):
        t.block(layout, f"{t.where(node)}: quantization parameters are computed, not constant")
        return False
    per_channel = any(v.size > 1 for v in values.values())
    fill = None
    zero_point = values.get(zp_pos)
    if zero_point is not None and np.any(zero_point):  # the weight's zero is its zero point
        rank = len(t.mg.shape(node.inputs[w_pos]) or [])
        shape = [1] * rank
        if zero_point.size > 1:
            shape[quant_axis] = -1
        fill = zero_point.reshape(shape)
    if not t.slice_const(
        node, node.inputs[w_pos], axis, layout, role, ("zero_point", fill) if fill is not None else None
    ):
        return False
    if per_channel and quant_axis == axis:  # per-channel scales and zero points go with their channels
        for p in params:
            if values[p].size > 1:
                t.slice_const(node, node.inputs[p], 0, layout, "quant_param")
    return True


# ---- activations: Quantize/Dequantize pass the channels -------------------------------------
@rule(*QDQ)
def quantize_dequantize(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    axis, rank = t.axis(_data(node)), _rank(t, _data(node)) or 1
    if node.op == "DynamicQuantizeLinear":  # scale and zero point are scalars computed over everything
        return t.set(node.outputs[0], layout, axis)
    if node.attrs.get("block_size", 0):
        return barrier(t, node, f"{t.where(node)}: blocked quantization")
    params = [i for i in node.inputs[1:3] if i.name]
    values = [t.mg.const_value(i) for i in params]
    if any(v is None for v in values):
        return barrier(t, node, f"{t.where(node)}: scale or zero point is computed")
    if any(v.size > 1 for v in values):  # per axis
        if int(node.attrs.get("axis", 1)) % rank != axis:
            return barrier(t, node, f"{t.where(node)}: quantized per channel along another axis")
        for tensor, value in zip(params, values):
            if value.size > 1:
                t.slice_const(node, tensor, 0, layout, "quant_param")
    _pass(t, node, layout, axis)


def fixed_outputs(t: Tracer, node: gs.Node, reason: str) -> None:
    """Each channel-carrying output becomes an unprunable root, so the refusal is listed with its reason."""
    for out in node.outputs[:1]:
        shape = t.mg.shape(out)
        if shape is not None and len(shape) >= 2:
            t.new_root(
                node, out, shape[1] if len(shape) > 2 else shape[-1], 1 if len(shape) > 2 else len(shape) - 1, reason
            )
