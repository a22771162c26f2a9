"""Ops that keep channels where they are: activations, pooling, normalization, reductions, pads."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnxprune.analysis.channels import ChannelTracer as Tracer
from onnxprune.analysis.oprules import _data, _int_list, _pass, _rank, barrier, rule

# ---- channel-preserving ops ---------------------------------------------------------------
ELEMENTWISE = (
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Softplus",
    "Softsign",
    "Mish",
    "Erf",
    "Abs",
    "Neg",
    "Sqrt",
    "Exp",
    "Identity",
    "Cast",
    "Clip",
    "Dropout",
    "ThresholdedRelu",
    "Round",
    "Floor",
    "Ceil",
    "Sign",
    "Reciprocal",
    "Log",
    "Sin",
    "Cos",
    "Not",
    "IsNaN",
    "IsInf",
)


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
        return barrier(t, node, f"{t.where(node)}: pooling with channels off axis 1")
    if len(node.outputs) > 1 and node.outputs[1].outputs:
        return barrier(t, node, f"{t.where(node)}: MaxPool indices encode channel offsets")
    _pass(t, node, layout, 1)


@rule("BatchNormalization", "InstanceNormalization")
def batchnorm(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    if t.axis(_data(node)) != 1:
        return barrier(t, node, f"{t.where(node)}: normalization with channels off axis 1")
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
    across = axis == t.axis(_data(node)) or (
        node.op in ("Softmax", "LogSoftmax", "Hardmax") and t.mg.opset < 13 and axis <= t.axis(_data(node))
    )
    if across and node.op in ("Softmax", "LogSoftmax", "LpNormalization", "LRN") and axis == t.axis(_data(node)):
        # normalises over the channels (LRN: over each channel's neighbours): the graph stays valid
        # without some, the values change
        t.block(layout, f"{t.where(node)}: normalises over the channel axis", structural=True)
    elif across:
        return barrier(t, node, f"{t.where(node)}: mixes values across channels")
    _pass(t, node, layout, t.axis(_data(node)))


@rule("LayerNormalization")
def layer_norm(t: Tracer, node: gs.Node) -> None:
    """Normalises over the axes from `axis` on: fine on other axes; over the channels only when they
    are the single last axis (scale and bias are sliced; structural: the statistics change)."""
    layout = t.layout(_data(node))
    if layout is None:
        return
    rank = _rank(t, _data(node)) or 0
    first = int(node.attrs.get("axis", -1)) % max(rank, 1)
    channel = t.axis(_data(node))
    if channel < first:
        for tensor in node.inputs[1:3]:
            if tensor.name and t.mg.shape(tensor) and len(t.mg.shape(tensor)) > rank - 1 - channel:
                return barrier(t, node, f"{t.where(node)}: scale/bias vary along the channel axis")
        return _pass(t, node, layout, channel, outputs=1)
    if channel != rank - 1 or first != channel:
        return barrier(t, node, f"{t.where(node)}: normalises over the channels and other axes")
    t.block(layout, f"{t.where(node)}: normalises over the channel axis", structural=True)
    for tensor in node.inputs[1:3]:
        t.slice_const(node, tensor, 0, layout, "norm")
    _pass(t, node, layout, channel, outputs=1)


@rule(
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceL1",
    "ReduceL2",
    "ReduceProd",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ReduceLogSum",
)
def reduce(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    rank, axis = _rank(t, _data(node)), t.axis(_data(node))
    axes = _int_list(t, node, "axes", 1)
    if axes is None or rank is None:
        return barrier(t, node, f"{t.where(node)}: reduction axes are not constant")
    axes = [a % rank for a in axes] or list(range(rank))  # no axes: reduce all (noop_with_empty_axes aside)
    if not axes and node.attrs.get("noop_with_empty_axes", 0):
        axes = []
    if axis in axes:  # the result no longer carries channels; without some, it is computed from fewer
        return t.block(layout, f"{t.where(node)}: reduces over the channel axis", structural=True)
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
        return barrier(t, node, f"{t.where(node)}: pads are not constant")
    axes = [a % rank for a in axes] or list(range(rank))
    n = len(axes)
    if axis in axes:
        i = axes.index(axis)
        if pads[i] != 0 or pads[i + n] != 0:
            return barrier(t, node, f"{t.where(node)}: pads the channel axis")
    _pass(t, node, layout, axis)


@rule("Resize", "Upsample")
def resize(t: Tracer, node: gs.Node) -> None:
    layout = t.layout(_data(node))
    if layout is None:
        return
    axis = t.axis(_data(node))
    in_shape, out_shape = t.mg.shape(_data(node)), t.mg.shape(node.outputs[0])
    if in_shape is None or out_shape is None or in_shape[axis] != out_shape[axis]:
        return barrier(t, node, f"{t.where(node)}: resizes the channel axis")
    if node.op == "Resize" and len(node.inputs) > 3 and node.inputs[3].name:  # explicit `sizes`
        if not t.mg.is_const(node.inputs[3]):
            return barrier(t, node, f"{t.where(node)}: sizes are computed")
        t.add_member("dim", node, node.inputs[3], axis, layout, "operand")
    _pass(t, node, layout, axis)
