"""The operands of broadcasting binary ops that carry no channels of their own.

A constant operand is sliced with the channels. jax2tf writes every implicit broadcast as an
explicit `broadcast_in_dim`, an Expand to a shape computed from `Shape`, so a LayerNorm's scale
reaches its Mul as `Expand(Reshape(scale), Shape(x))` times `Expand(rsqrt(var + eps), Shape(x))`:
not a constant, yet computed only from constants, broadcasts and values that are the same for
every channel. Such an operand is traced back to its per-channel constants (sliced where their
reader reads them) and its Expands (whose target entry follows the channels), instead of being
opaque data that freezes the channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from onnxprune.analysis.channels import ChannelTracer as Tracer
from onnxprune.analysis.oprules.reshaping import expand_follows

SHIFTING = ("Add", "Sub", "Max", "Min", "Sum", "Mean")  # f(0, c) != 0: a removed channel would carry c
TRACED = ("Add", "Sub", "Mul", "Div", "Max", "Min")  # binary ops whose computed operands are traced
# ops a traced operand may be computed with: position by position, so channel c's value depends
# only on channel c's constants; MOVES also map a zero to a zero
MOVES = ("Expand", "Identity", "Cast")
ARITHMETIC = (
    *MOVES,
    *("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sqrt", "Reciprocal", "Neg", "Exp", "Log", "Abs"),
    *("Relu", "Sigmoid", "Tanh", "Erf", "Softplus", "Clip", "Floor", "Ceil", "Round", "Sign"),
)


def shift_every_channel(
    t: Tracer, node: gs.Node, position: int, tensor: gs.Tensor, layout, axis: int, rank: int
) -> None:
    """A value added to every channel (x*a + b with a scalar b): a removed channel would hold b, not 0.

    A non-zero constant is expanded to one value per channel (surgery cuts it, the zero-mask oracle
    zeroes it: pruning stays exact); a computed one is a structural coupling."""
    if not t.mg.is_const(tensor):  # e.g. x - mean(x) in a decomposed LayerNorm
        return t.block(layout, f"{t.where(node)}: adds {tensor.name!r}, computed, to every channel", structural=True)
    value = t.mg.const_value(tensor)
    if value is None or not np.any(value):
        return
    # expanded shape: one entry per channel on the channel axis, broadcast-compatible with the output
    shape = list(value.shape)
    if axis < 0:
        shape = [1] * (rank - len(shape)) + shape
        axis = 0
    shape[axis] = len(layout)
    # an epsilon added under a square root or a division (a norm's var + eps) is not zeroed by the
    # oracle: a zeroed channel's (x - mean) * rsqrt(0 + eps) is 0, while rsqrt(0 + 0) would give 0 * inf
    role = "divisor" if _under_a_denominator(node) else "operand"
    t.add_member("slice", node, tensor, axis, layout, role, extra=("expand", tuple(shape)), position=position)


def _under_a_denominator(node: gs.Node) -> bool:
    """The node's result reaches only a Reciprocal or a Div's divisor, through square roots."""
    tensor = node.outputs[0]
    for _ in range(4):
        readers = tensor.outputs
        if len(readers) != 1:
            return False
        reader = readers[0]
        if reader.op == "Reciprocal" or (reader.op == "Div" and reader.inputs[1] is tensor):
            return True
        if reader.op != "Sqrt":
            return False
        tensor = reader.outputs[0]
    return False


@dataclass
class _Traced:
    varies: bool = False  # some per-channel constant feeds it
    pure: bool = True  # only MOVES between those constants and the operand: zeroed constants give zeros
    slices: list = field(default_factory=list)  # (reader, constant, its channel axis)
    expands: list = field(default_factory=list)  # (Expand node, its output's channel axis)


def _trace(t: Tracer, tensor: gs.Tensor, k: int, depth: int = 0) -> _Traced | None:
    """How `tensor` varies along the channel axis (the k-th from the right); None if it cannot be told."""
    shape = t.mg.shape(tensor)
    if shape is None or t.layout(tensor) is not None or depth > 24:
        return None
    axis = len(shape) - k
    if axis < 0 or shape[axis] == 1:
        return _Traced()  # the same value for every channel
    if t.mg.is_const(tensor):
        return _Traced(True, True)
    producer = tensor.inputs[0] if tensor.inputs else None
    if producer is None or producer.op not in ARITHMETIC or (producer.domain or "") not in ("", "ai.onnx"):
        return None
    out = _Traced(pure=producer.op in MOVES)
    data = producer.inputs[:1] if producer.op == "Expand" else [i for i in producer.inputs if i.name]
    for operand in data:
        inner = _trace(t, operand, k, depth + 1)
        if inner is None:
            return None
        if inner.varies and t.mg.is_const(operand):  # a per-channel constant, read right here
            inner.slices = [(producer, operand, len(t.mg.shape(operand)) - k)]
        out.varies |= inner.varies
        out.pure &= inner.pure or not inner.varies
        out.slices += inner.slices
        out.expands += inner.expands
    if producer.op == "Expand":
        out.expands.append((producer, axis))
    return out


def broadcast_operand(t: Tracer, node: gs.Node, position: int, tensor: gs.Tensor, layout, k: int) -> bool:
    """Handle operand `position` of `node` when it is computed from constants and broadcasts; False
    (nothing registered) when it is not, or when it is the dividend of a Div."""
    if node.op == "Div" and position == 0:
        return False
    traced = _trace(t, tensor, k)
    if traced is None:
        return False
    for expand, axis in traced.expands:
        if not expand_follows(t, expand, axis, layout):
            t.block(layout, f"{t.where(expand)}: target shape is computed with a fixed channel count")
    if not traced.varies:
        if node.op in SHIFTING:
            shift_every_channel(t, node, position, tensor, layout, -1, k)
        return True
    if node.op in SHIFTING and not traced.pure:  # a removed channel would carry f(constants), not 0
        t.block(layout, f"{t.where(node)}: adds a per-channel value computed from constants", structural=True)
    # a removed channel is zero (x = 0) times or divided by the operand; `pure` operands are zeroed too
    role = "divisor" if node.op == "Div" else ("operand" if traced.pure else "factor")
    for reader, constant, axis in traced.slices:
        t.slice_const(reader, constant, axis, layout, role)
    return True
