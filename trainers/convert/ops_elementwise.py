"""Op handlers for element-wise ops, activations, reductions, softmax and ArgMax."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .builder import HANDLERS, _attrs, _axes, _broadcast_dims, _Builder, _torch_dtype, _Unsupported, handles


def _unary(fn):
    def handler(b: _Builder, node):
        return b.generic(node, fn, use=[0])

    return handler


for _op, _fn in {
    "Relu": F.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Reciprocal": torch.reciprocal,
    "Erf": torch.erf,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Softplus": F.softplus,
    "Softsign": F.softsign,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Not": torch.logical_not,
    "Sign": torch.sign,
    "Round": torch.round,
    "Mish": F.mish,
    "HardSwish": F.hardswish,
}.items():
    HANDLERS[_op] = _unary(_fn)


@handles("Identity")
def _identity(b: _Builder, node):
    return b.generic(node, lambda x: x, use=[0])


@handles("LeakyRelu")
def _leaky(b, node):
    alpha = float(_attrs(node).get("alpha", 0.01))
    return b.generic(node, lambda x: F.leaky_relu(x, alpha), use=[0])


@handles("Elu")
def _elu(b, node):
    alpha = float(_attrs(node).get("alpha", 1.0))
    return b.generic(node, lambda x: F.elu(x, alpha), use=[0])


@handles("Selu")
def _selu(b, node):
    attrs = _attrs(node)
    alpha, gamma = float(attrs.get("alpha", 1.6732632423543772)), float(attrs.get("gamma", 1.0507009873554805))
    if abs(alpha - 1.6732632423543772) < 1e-6 and abs(gamma - 1.0507009873554805) < 1e-6:
        return b.generic(node, F.selu, use=[0])
    return b.generic(node, lambda x: gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1)), use=[0])


@handles("Gelu")
def _gelu(b, node):
    approximate = _attrs(node).get("approximate", "none")
    return b.generic(node, lambda x: F.gelu(x, approximate=approximate), use=[0])


@handles("HardSigmoid")
def _hardsigmoid(b, node):
    attrs = _attrs(node)
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if abs(alpha - 1 / 6) < 1e-7 and abs(beta - 0.5) < 1e-7:
        return b.generic(node, F.hardsigmoid, use=[0])
    return b.generic(node, lambda x: torch.clamp(x * alpha + beta, 0.0, 1.0), use=[0])


@handles("Clip")
def _clip(b, node):
    attrs = _attrs(node)
    if b.opset < 11 or "min" in attrs or "max" in attrs:
        lo, hi = attrs.get("min"), attrs.get("max")
    elif any(name and not b.is_static(name) for name in node.input[1:3]):
        # a bound computed at run time (openWakeWord's log-mel floor, max - 80 dB): clamp takes tensors
        return b.generic(node, lambda x, lo=None, hi=None: torch.clamp(x, lo, hi), use=[0, 1, 2])
    else:
        lo_t, hi_t = b.const(node, 1), b.const(node, 2)
        lo = None if lo_t is None else float(lo_t.reshape(-1)[0])
        hi = None if hi_t is None else float(hi_t.reshape(-1)[0])
    if lo is None and hi is None:
        return b.generic(node, lambda x: x, use=[0])
    if lo == 0.0 and hi == 6.0:
        return b.generic(node, F.relu6, use=[0])
    return b.generic(node, lambda x: torch.clamp(x, lo, hi), use=[0])


@handles("Dropout")
def _dropout(b, node):
    attrs = _attrs(node)
    ratio = attrs.get("ratio", 0.5)
    if b.opset >= 12:
        r = b.const(node, 1)
        ratio = 0.5 if r is None else float(r.reshape(-1)[0])
    if (
        len(node.output) > 1
        and node.output[1]
        and (b.consumers.get(node.output[1]) or node.output[1] in b.graph_outputs)
    ):
        raise _Unsupported("its mask output")
    return nn.Dropout(float(ratio)), [node.input[0]], [node.output[0]]


@handles("Cast")
def _cast(b, node):
    dtype = _torch_dtype(int(_attrs(node)["to"]))
    return b.generic(node, lambda x: x.to(dtype), use=[0])


@handles("CastLike")
def _cast_like(b, node):
    return b.generic(node, lambda x, like: x.to(like.dtype))


def _binary(fn_float, fn_int=None):
    def handler(b, node):
        def run(x, y):
            if fn_int is not None and not x.is_floating_point() and not y.is_floating_point():
                return fn_int(x, y)
            return fn_float(x, y)

        return b.generic(node, run)

    return handler


HANDLERS["Add"] = _binary(torch.add)
HANDLERS["Sub"] = _binary(torch.sub)
HANDLERS["Mul"] = _binary(torch.mul)
HANDLERS["Div"] = _binary(torch.div, lambda x, y: torch.div(x, y, rounding_mode="trunc"))
HANDLERS["Pow"] = _binary(torch.pow)
HANDLERS["Equal"] = _binary(torch.eq)
HANDLERS["Less"] = _binary(torch.lt)
HANDLERS["LessOrEqual"] = _binary(torch.le)
HANDLERS["Greater"] = _binary(torch.gt)
HANDLERS["GreaterOrEqual"] = _binary(torch.ge)
HANDLERS["And"] = _binary(torch.logical_and)
HANDLERS["Or"] = _binary(torch.logical_or)
HANDLERS["Mod"] = _binary(torch.fmod)


def _variadic(fn):
    def handler(b, node):
        def run(*xs):
            out = xs[0]
            for x in xs[1:]:
                out = fn(out, x)
            return out

        return b.generic(node, run)

    return handler


HANDLERS["Sum"] = _variadic(torch.add)
HANDLERS["Max"] = _variadic(torch.maximum)
HANDLERS["Min"] = _variadic(torch.minimum)


@handles("Mean")
def _mean(b, node):
    count = len(node.input)

    def run(*xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out / count

    return b.generic(node, run)


@handles("SplitToSequence")
def _split_to_sequence(b, node):
    attrs = _attrs(node)
    shape = b.shape_of(node.input[0])
    axis = _broadcast_dims(len(shape), int(attrs.get("axis", 0)))
    keep = bool(attrs.get("keepdims", 1))
    split = b.const(node, 1)
    if split is None:
        sizes = [1] * shape[axis]
    elif split.dim() == 0:
        chunk = int(split)
        sizes = [min(chunk, shape[axis] - chunk * i) for i in range(-(-shape[axis] // chunk))]
        keep = True
    else:
        sizes, keep = [int(v) for v in split.tolist()], True

    def run(x):
        parts = torch.split(x, sizes, dim=axis)
        return [p if keep else p.squeeze(axis) for p in parts]

    return b.generic(node, run, use=[0])


@handles("SequenceAt")
def _sequence_at(b, node):
    position = b.const_list(node, 1)[0]
    return b.generic(node, lambda seq: seq[position], use=[0])


@handles("Where")
def _where(b, node):
    return b.generic(node, torch.where)


def _reduce(fn_name: str):
    def handler(b, node):
        attrs = _attrs(node)
        rank = len(b.shape_of(node.input[0]))
        axes = _axes(b, node, 1)
        keep = bool(attrs.get("keepdims", 1))
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return b.generic(node, lambda x: x, use=[0])
            axes = list(range(rank))
        dims = tuple(sorted(_broadcast_dims(rank, a) for a in axes))

        def reduce(x):
            if fn_name == "mean":
                return x.mean(dim=dims, keepdim=keep)
            if fn_name == "sum":
                return x.sum(dim=dims, keepdim=keep)
            if fn_name == "max":
                return x.amax(dim=dims, keepdim=keep)
            if fn_name == "min":
                return x.amin(dim=dims, keepdim=keep)
            if fn_name == "prod":
                out = x
                for d in sorted(dims, reverse=True):
                    out = out.prod(dim=d, keepdim=keep)
                return out
            if fn_name == "l1":
                return x.abs().sum(dim=dims, keepdim=keep)
            if fn_name == "l2":
                return x.pow(2).sum(dim=dims, keepdim=keep).sqrt()
            if fn_name == "logsum":
                return x.sum(dim=dims, keepdim=keep).log()
            if fn_name == "logsumexp":
                return torch.logsumexp(x, dim=dims, keepdim=keep)
            return x.pow(2).sum(dim=dims, keepdim=keep)

        return b.generic(node, reduce, use=[0])

    return handler


HANDLERS["ReduceMean"] = _reduce("mean")
HANDLERS["ReduceSum"] = _reduce("sum")
HANDLERS["ReduceMax"] = _reduce("max")
HANDLERS["ReduceMin"] = _reduce("min")
HANDLERS["ReduceProd"] = _reduce("prod")
HANDLERS["ReduceSumSquare"] = _reduce("sumsquare")
HANDLERS["ReduceL1"] = _reduce("l1")
HANDLERS["ReduceL2"] = _reduce("l2")
HANDLERS["ReduceLogSum"] = _reduce("logsum")
HANDLERS["ReduceLogSumExp"] = _reduce("logsumexp")


def _softmax(fn):
    def handler(b, node):
        rank = len(b.shape_of(node.input[0]))
        default = -1 if b.opset >= 13 else 1
        axis = _broadcast_dims(rank, int(_attrs(node).get("axis", default)))
        if b.opset >= 13 or axis == rank - 1:
            return b.generic(node, lambda x: fn(x, dim=axis), use=[0])

        def coerced(x):  # opset < 13: softmax over the flattened trailing dims
            shape = x.shape
            return fn(x.reshape(int(np.prod(shape[:axis])) if axis else 1, -1), dim=1).reshape(shape)

        return b.generic(node, coerced, use=[0])

    return handler


HANDLERS["Softmax"] = _softmax(F.softmax)
HANDLERS["LogSoftmax"] = _softmax(F.log_softmax)


@handles("ArgMax")
def _argmax(b, node):
    attrs = _attrs(node)
    axis, keep = int(attrs.get("axis", 0)), bool(attrs.get("keepdims", 1))
    return b.generic(node, lambda x: torch.argmax(x, dim=axis, keepdim=keep), use=[0])
