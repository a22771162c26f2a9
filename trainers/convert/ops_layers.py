"""Op handlers for the layers with weights: Conv, ConvTranspose, BatchNormalization, Gemm, MatMul, PRelu."""

from __future__ import annotations

import math

import onnx
import torch
from torch import nn
from torch.nn.utils import skip_init

from .builder import _attrs, _Builder, _Unsupported, handles
from .modules import _Linear, _PadThen, _PRelu


def _conv_padding(
    b: _Builder,
    node: onnx.NodeProto,
    attrs: dict,
    spatial: list[int],
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
) -> list[int]:
    """ONNX pads [b1, b2, ..., e1, e2, ...], with auto_pad resolved from the probe shape."""
    n = len(kernel)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", "") or auto is None:
        pads = list(attrs.get("pads", [0] * (2 * n)))
    elif auto == "VALID":
        pads = [0] * (2 * n)
    else:
        pads = [0] * (2 * n)
        for i in range(n):
            out = math.ceil(spatial[i] / strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + n] = (small, big) if auto == "SAME_UPPER" else (big, small)
    return pads


def _torch_pad_order(pads: list[int]) -> list[int]:
    """ONNX [b1..bn, e1..en] -> F.pad's (bn, en, ..., b1, e1)."""
    n = len(pads) // 2
    out = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


def _conv_common(b: _Builder, node, what: str):
    """What Conv and ConvTranspose read alike: the constant weight and bias and the kernel geometry."""
    attrs = _attrs(node)
    weight = b.static.get(node.input[1])
    if weight is None:
        raise _Unsupported("the weight must be a constant")
    bias = b.const(node, 2)
    n = weight.dim() - 2
    if n not in (1, 2, 3):
        raise _Unsupported(f"{n}-d {what}")
    kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    return attrs, weight, bias, n, kernel, strides, dilations, int(attrs.get("group", 1))


def _input(node, index: int) -> str | None:
    return node.input[index] if index < len(node.input) and node.input[index] else None


def _load(conv: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)


@handles("Conv")
def _conv(b: _Builder, node):
    x_shape = b.shape_of(node.input[0])
    attrs, weight, bias, n, kernel, strides, dilations, groups = _conv_common(b, node, "convolution")
    pads = _conv_padding(b, node, attrs, x_shape[2:], kernel, strides, dilations)
    symmetric = pads[:n] == pads[n:]
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[n]
    conv = skip_init(
        cls,
        weight.shape[1] * groups,
        weight.shape[0],
        kernel,
        stride=strides,
        dilation=dilations,
        groups=groups,
        bias=bias is not None,
        padding=pads[:n] if symmetric else 0,
    )
    _load(conv, weight, bias)
    conv.onnx_source = {"kind": "conv", "weight": node.input[1], "bias": _input(node, 2)}
    module = conv if symmetric else _PadThen(_torch_pad_order(pads), 0.0, conv)
    return module, [node.input[0]]


@handles("ConvTranspose")
def _conv_transpose(b: _Builder, node):
    x_shape = b.shape_of(node.input[0])
    attrs, weight, bias, n, kernel, strides, dilations, groups = _conv_common(b, node, "transposed convolution")
    out_pad = list(attrs.get("output_padding", [0] * n))
    pads = list(attrs.get("pads", [0] * (2 * n)))
    spatial = x_shape[2:]
    auto = attrs.get("auto_pad", "NOTSET")
    if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        want = (
            list(attrs["output_shape"])[-n:] if "output_shape" in attrs else [s * st for s, st in zip(spatial, strides)]
        )
        for i in range(n):
            total = strides[i] * (spatial[i] - 1) + out_pad[i] + ((kernel[i] - 1) * dilations[i] + 1) - want[i]
            total = max(total, 0)
            if auto == "SAME_UPPER" or (auto != "SAME_LOWER"):
                pads[i], pads[i + n] = total // 2, total - total // 2
            else:
                pads[i], pads[i + n] = total - total // 2, total // 2
    if pads[:n] != pads[n:]:
        # torch pads symmetrically: take the smaller, add output_padding for the rest
        extra = [pads[i + n] - pads[i] for i in range(n)]
        if any(e < 0 for e in extra):
            raise _Unsupported("asymmetric pads larger at the start")
        # cropping the end less = output_padding cannot exceed stride; fall back to cropping
        sym = pads[:n]
    else:
        sym, extra = pads[:n], [0] * n
    cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[n]
    conv = skip_init(
        cls,
        weight.shape[0],
        weight.shape[1] * groups,
        kernel,
        stride=strides,
        padding=sym,
        output_padding=out_pad,
        groups=groups,
        bias=bias is not None,
        dilation=dilations,
    )
    _load(conv, weight, bias)
    conv.onnx_source = {"kind": "conv_transpose", "weight": node.input[1], "bias": _input(node, 2)}
    if any(extra):

        class _Crop(nn.Module):
            def __init__(self, inner, extra):
                super().__init__()
                self.inner, self.extra = inner, extra

            def forward(self, x):
                y = self.inner(x)
                index = [slice(None), slice(None)] + [slice(0, y.shape[2 + i] - e) for i, e in enumerate(self.extra)]
                return y[tuple(index)]

        return _Crop(conv, extra), [node.input[0]]
    return conv, [node.input[0]]


@handles("BatchNormalization")
def _batchnorm(b: _Builder, node):
    attrs = _attrs(node)
    params = [b.const(node, i) for i in range(1, 5)]
    if any(p is None for p in params):
        raise _Unsupported("scale, bias, mean and variance must be constants")
    scale, bias, mean, var = params
    rank = len(b.shape_of(node.input[0]))
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank)
    if cls is None:
        raise _Unsupported(f"rank-{rank} input")
    momentum = 1.0 - float(attrs.get("momentum", 0.9))  # ONNX: running = m*running + (1-m)*batch
    bn = cls(scale.shape[0], eps=float(attrs.get("epsilon", 1e-5)), momentum=momentum)
    with torch.no_grad():
        bn.weight.copy_(scale)
        bn.bias.copy_(bias)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    bn.onnx_source = {
        "kind": "batchnorm",
        "scale": node.input[1],
        "bias": node.input[2],
        "mean": node.input[3],
        "var": node.input[4],
    }
    return bn, [node.input[0]]


def _fuse_bias_add(b: _Builder, node, out_features: int) -> tuple[torch.Tensor | None, str | None, str | None]:
    """MatMul's single consumer is Add(y, constant bias): fold the bias into the linear layer."""
    y = node.output[0]
    users = b.consumers.get(y, [])
    if len(users) != 1 or y in b.graph_outputs:
        return None, None, None
    add = users[0]
    if add.op_type != "Add" or len(add.input) != 2:
        return None, None, None
    other = add.input[1] if add.input[0] == y else add.input[0]
    if other == y or other not in b.static:
        return None, None, None
    bias = b.static[other]
    if not bias.is_floating_point() or bias.numel() != out_features or bias.shape[-1:] != (out_features,):
        return None, None, None
    b.fused.add(id(add))
    return bias.reshape(-1).clone(), add.output[0], other


@handles("Gemm")
def _gemm(b: _Builder, node):
    attrs = _attrs(node)
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
    weight = b.static.get(node.input[1])
    if weight is None or node.input[0] in b.static:

        def gemm(a, w, c):
            a = a.transpose(0, 1) if trans_a else a
            w = w.transpose(0, 1) if trans_b else w
            y = torch.matmul(a, w)
            y = y * alpha if alpha != 1.0 else y
            return y if c is None else y + (c * beta if beta != 1.0 else c)

        return b.generic(node, gemm, use=[0, 1, 2])
    w = (weight if trans_b else weight.transpose(0, 1)) * alpha  # (out, in)
    c = b.const(node, 2) if len(node.input) > 2 and node.input[2] in b.static else None
    if len(node.input) > 2 and node.input[2] and c is None:
        raise _Unsupported("a run-time C input")
    bias = None if c is None else c * beta
    if bias is not None and bias.numel() == w.shape[0] and bias.dim() <= 2 and bias.shape[-1] == w.shape[0]:
        bias = bias.reshape(-1)
    linear = _Linear(w.clone(), None if bias is None else bias.clone(), bool(trans_a))
    linear.onnx_source = {
        "kind": "gemm",
        "weight": node.input[1],
        "trans_b": bool(trans_b),
        "alpha": alpha,
        "bias": _input(node, 2),
        "beta": beta,
        "bias_shape": None if c is None else list(c.shape),
    }
    return linear, [node.input[0]]


@handles("MatMul")
def _matmul(b: _Builder, node):
    weight = b.static.get(node.input[1])
    if weight is None or weight.dim() != 2 or node.input[0] in b.static or not weight.is_floating_point():
        return b.generic(node, torch.matmul)
    bias, out_name, bias_name = _fuse_bias_add(b, node, weight.shape[1])
    module = _Linear(weight.transpose(0, 1).clone(), bias)
    module.onnx_source = {
        "kind": "matmul",
        "weight": node.input[1],
        "bias": bias_name,
        "bias_shape": None if bias_name is None else list(b.static[bias_name].shape),
    }
    return module, [node.input[0]], [out_name or node.output[0]]


@handles("PRelu")
def _prelu(b: _Builder, node):
    slope = b.static.get(node.input[1])
    if slope is None:
        return b.generic(node, lambda x, s: torch.where(x >= 0, x, x * s))
    x_shape = b.shape_of(node.input[0])
    rank = len(x_shape)
    channels = x_shape[1] if rank > 1 else 1
    aligned = [1] * (rank - slope.dim()) + list(slope.shape)  # numpy broadcasting, right-aligned
    channelwise = slope.numel() == 1 or (
        rank > 1
        and len(aligned) == rank
        and aligned[1] == channels
        and all(d == 1 for i, d in enumerate(aligned) if i != 1)
    )
    prelu = _PRelu(slope.clone(), channelwise)
    prelu.onnx_source = {"kind": "prelu", "weight": node.input[1], "shape": list(slope.shape)}
    return prelu, [node.input[0]]
