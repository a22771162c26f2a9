"""onnxruntime's QOperator ops (domain com.microsoft) around QLinearConv/QGemm: the residual
QLinearAdd, SE gates' QLinearMul, QLinearConcat, quantized pooling and activations.

Each dequantizes its inputs with per-tensor scales, computes in float and requantizes, so a zeroed
channel (its zero point) stays a zeroed channel; channels flow as through the float op. QGemm is
the Gemm rule (layers.py), its integer weight sliced with its scales (quantized.py).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis.channels import ChannelTracer as Tracer
from onnxprune.analysis.oprules import _data, _pass, _rank, barrier, rule
from onnxprune.analysis.oprules.reshaping import concat

MS = "com.microsoft."


@rule(MS + "QLinearAdd", MS + "QLinearMul")
def quantized_binary(t: Tracer, node: gs.Node) -> None:
    """A (0) and B (3), each with a per-tensor scale and zero point."""
    a, b = node.inputs[0], node.inputs[3]
    carried = [x for x in (a, b) if t.layout(x) is not None]
    if not carried:
        return
    out_rank = _rank(t, node.outputs[0])
    if out_rank is None or any(_rank(t, x) is None for x in (a, b)):
        return barrier(t, node, f"{t.where(node)}: shapes unknown")
    out_axes = {t.axis(x) + out_rank - _rank(t, x) for x in carried}
    if len(out_axes) != 1:
        return barrier(t, node, f"{t.where(node)}: operands carry channels on different axes")
    axis, first = out_axes.pop(), t.layout(carried[0])
    if len(carried) == 2:
        t.couple(first, t.layout(b), t.where(node))
    else:
        other = b if carried[0] is a else a
        shape = t.mg.shape(other)
        own = axis - (out_rank - len(shape))
        if own >= 0 and shape[own] > 1:  # per channel: a constant cut with the channels, zeroed to its zp
            zp = node.inputs[5 if other is b else 2]
            value = t.mg.const_value(zp) if zp.name else np.zeros(1)
            if not t.slice_const(node, other, own, first, "operand", ("zero_point", value)):
                return barrier(t, node, f"{t.where(node)}: combined with opaque data")
        elif node.op == "QLinearAdd":  # the same value added to every channel: a removed one would hold it
            t.block(first, f"{t.where(node)}: adds the same value to every channel (quantized)")
    _pass(t, node, first, axis)


@rule(MS + "QLinearConcat")
def quantized_concat(t: Tracer, node: gs.Node) -> None:
    """Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) per input."""
    concat(t, node, node.inputs[2::3])


@rule(MS + "QLinearGlobalAveragePool", MS + "QLinearAveragePool")
def quantized_pool(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    rank = _rank(t, _data(node)) or 0
    axis = rank - 1 if node.attrs.get("channels_last", 0) else 1
    if t.axis(_data(node)) != axis:
        return barrier(t, node, f"{t.where(node)}: pooling over the channel axis")
    _pass(t, node, layout, axis)


@rule(MS + "QLinearLeakyRelu", MS + "QLinearSigmoid")
def quantized_activation(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is not None:
        _pass(t, node, layout, t.axis(_data(node)))
