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
from onnxprune.analysis.oprules.reshaping import _dim_follows, expand_follows

SHIFTING = ("Add", "Sub", "Max", "Min", "Sum", "Mean")  # f(0, c) can be != 0: a removed channel would carry it
TRACED = ("Add", "Sub", "Mul", "Div", "Max", "Min")  # binary ops whose computed operands are traced
# ops a traced operand may be computed with: position by position, so channel c's value depends
# only on channel c's constants; ZERO_PRESERVING ones map a zero input to a zero output
ZERO_PRESERVING = ("Expand", "Identity", "Cast", "Mul", "Neg", "Abs", "Sqrt", "Relu", "Tanh", "Erf")
ZERO_PRESERVING += ("Floor", "Ceil", "Round", "Sign")
ARITHMETIC = (*ZERO_PRESERVING, "Add", "Sub", "Div", "Pow", "Max", "Min", "Reciprocal", "Exp", "Log")
ARITHMETIC += ("Sigmoid", "Softplus", "Clip")
VECTOR_RESHAPES = ("Reshape", "Unsqueeze", "Squeeze", "Flatten")


def shift_every_channel(
    t: Tracer, node: gs.Node, position: int, tensor: gs.Tensor, layout, axis: int, rank: int
) -> None:
    """A value added to every channel (x*a + b with a scalar b): a removed channel would hold b, not 0.

    A constant that leaves a zero channel zero (see keeps_zero) is not channel-coupled: it stays one
    shared constant, as it is. Any other is expanded to one value per channel (surgery cuts it, the
    zero-mask oracle zeroes it: pruning stays exact); a computed one is a structural coupling."""
    if not t.mg.is_const(tensor):  # e.g. x - mean(x) in a decomposed LayerNorm
        return t.block(layout, f"{t.where(node)}: adds {tensor.name!r}, computed, to every channel", structural=True)
    value = t.mg.const_value(tensor)
    # an epsilon under a square root or a division (a norm's var + eps) needs nothing either: a removed
    # channel's (x - mean) * rsqrt(0 + eps) is 0 (zeroing eps would give 0 * inf)
    if value is None or keeps_zero(node.op, value) or _under_a_denominator(node):
        return
    # expanded shape: one entry per channel on the channel axis, broadcast-compatible with the output
    shape = list(value.shape)
    if axis < 0:
        shape = [1] * (rank - len(shape)) + shape
        axis = 0
    shape[axis] = len(layout)
    t.add_member("slice", node, tensor, axis, layout, "operand", extra=("expand", tuple(shape)), position=position)


def keeps_zero(op: str, value: np.ndarray) -> bool:
    """op(0, value) == 0: a removed channel, zero in the zero-mask original, stays zero through a
    SHIFTING op with this same-for-every-channel constant (Max(x, -0.4), a ReLU floor; Add(x, 0))."""
    if op == "Max":
        return bool(np.all(value <= 0))
    if op == "Min":
        return bool(np.all(value >= 0))
    return not np.any(value)  # Add, Sub, Sum, Mean: only a zero adds nothing


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
    zero: bool = True  # zeroing the `zeroable` constants makes it 0 on the removed channels
    slices: list = field(default_factory=list)  # (reader, constant, its channel axis, zeroable)
    follows: list = field(default_factory=list)  # (Expand or Reshape node, its output's channel axis)


def _zero_preserving(op: str, position: int, inputs: int) -> bool:
    """f(.., 0 at `position`, ..) == 0 whatever the other (finite) inputs are."""
    if op == "Div":
        return position == 0
    return op in ZERO_PRESERVING or (op in ("Add", "Sub") and inputs == 1)


def _trace(t: Tracer, tensor: gs.Tensor, k: int, depth: int = 0) -> _Traced | None:
    """How `tensor` varies along the channel axis (the k-th from the right); None if it cannot be told."""
    shape = t.mg.shape(tensor)
    if shape is None or t.layout(tensor) is not None or depth > 24:
        return None
    axis = len(shape) - k
    if axis < 0 or shape[axis] == 1:
        return _Traced(zero=False)  # the same value for every channel
    if t.mg.is_const(tensor):
        return _Traced(True, True)
    producer = tensor.inputs[0] if tensor.inputs else None
    if producer is None or (producer.domain or "") not in ("", "ai.onnx"):
        return None
    if producer.op in VECTOR_RESHAPES:  # a per-channel vector moved onto the channel axis
        source = producer.inputs[0]
        in_shape = t.mg.shape(source)
        if in_shape is None or int(np.prod(shape)) != shape[axis] or int(np.prod(in_shape)) != shape[axis]:
            return None
        inner = _trace(t, source, len(in_shape) - next(i for i, d in enumerate(in_shape) if d > 1), depth + 1)
        if inner is not None and producer.op == "Reshape":
            inner.follows.append((producer, axis))
        return _leaf(t, producer, 0, source, inner, k=len(in_shape) - next(i for i, d in enumerate(in_shape) if d > 1))
    if producer.op not in ARITHMETIC:
        return None
    data = producer.inputs[:1] if producer.op == "Expand" else [i for i in producer.inputs if i.name]
    parts = []
    for position, operand in enumerate(data):
        inner = _leaf(t, producer, position, operand, _trace(t, operand, k, depth + 1), k)
        if inner is None:
            return None
        parts.append((position, inner))
    out = _Traced(varies=any(p.varies for _, p in parts), zero=False)
    for position, inner in parts:
        keeps_zero = _zero_preserving(producer.op, position, sum(p.varies for _, p in parts))
        for reader, constant, c_axis, zeroable in inner.slices:
            out.slices.append((reader, constant, c_axis, zeroable and keeps_zero))
        out.follows += inner.follows
        out.zero |= inner.varies and inner.zero and keeps_zero
    if producer.op in ("Add", "Sub", "Max", "Min"):  # 0 + c is c: every input must be zero
        out.zero = all(p.varies and p.zero for _, p in parts)
    if producer.op == "Expand":
        out.follows.append((producer, axis))
    return out


def _leaf(t: Tracer, reader: gs.Node, position: int, operand: gs.Tensor, inner: _Traced | None, k: int):
    """A per-channel constant read right here becomes a slice of `reader` (zeroable on its own)."""
    if inner is not None and inner.varies and t.mg.is_const(operand):
        inner.slices = [(reader, operand, len(t.mg.shape(operand)) - k, True)]
    return inner


def broadcast_operand(t: Tracer, node: gs.Node, position: int, tensor: gs.Tensor, layout, k: int) -> bool:
    """Handle operand `position` of `node` when it is computed from constants and broadcasts; False
    (nothing registered) when it is not, or when it is the dividend of a Div."""
    if node.op == "Div" and position == 0:
        return False
    traced = _trace(t, tensor, k)
    if traced is None:
        return False
    for follower, axis in traced.follows:
        follows = (
            expand_follows(t, follower, axis, layout)
            if follower.op == "Expand"
            else _dim_follows(t, follower, axis, layout, None)
        )
        if not follows:
            t.block(layout, f"{t.where(follower)}: target shape is computed with a fixed channel count")
    if not traced.varies:
        if node.op in SHIFTING:
            shift_every_channel(t, node, position, tensor, layout, -1, k)
        return True
    # zeroing a constant that also divides (b / (s * w) with w per channel) would give 0 / 0: then none
    zeroable = {id(c) for _, c, _, z in traced.slices if z} - {id(c) for _, c, _, z in traced.slices if not z}
    zero = traced.zero and zeroable
    if node.op in SHIFTING and not zero:  # a removed channel would carry f(constants), not 0
        t.block(layout, f"{t.where(node)}: adds a per-channel value computed from constants", structural=True)
    # a removed channel is x = 0 times, divided by, or (when `zero`) plus an operand that is 0 there
    for reader, constant, axis, _ in traced.slices:
        role = "operand" if zero and id(constant) in zeroable else "factor"
        t.slice_const(reader, constant, axis, layout, "divisor" if node.op == "Div" else role)
    return True
