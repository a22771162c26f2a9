"""The rest of what the pruner lets through (onnxprune/oprules): rarer activations, Lp pooling and
normalisation, LRN, Hardmax, CumSum, InstanceNormalization and LayerNormalization (trainable scale
and shift)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .builder import _attrs, _Builder, _Unsupported, handles


@handles("Celu")
def _celu(b: _Builder, node):
    alpha = float(_attrs(node).get("alpha", 1.0))
    return b.generic(node, lambda x: F.celu(x, alpha), use=[0])


@handles("ThresholdedRelu")
def _thresholded_relu(b: _Builder, node):
    alpha = float(_attrs(node).get("alpha", 1.0))
    return b.generic(node, lambda x: torch.where(x > alpha, x, torch.zeros_like(x)), use=[0])


@handles("IsNaN")
def _isnan(b: _Builder, node):
    return b.generic(node, torch.isnan, use=[0])


@handles("IsInf")
def _isinf(b: _Builder, node):
    attrs = _attrs(node)
    pos, neg = int(attrs.get("detect_positive", 1)), int(attrs.get("detect_negative", 1))

    def isinf(x):
        return (torch.isposinf(x) if pos else torch.zeros_like(x, dtype=torch.bool)) | (
            torch.isneginf(x) if neg else torch.zeros_like(x, dtype=torch.bool)
        )

    return b.generic(node, isinf, use=[0])


@handles("Hardmax")
def _hardmax(b: _Builder, node):
    axis = int(_attrs(node).get("axis", -1 if b.opset >= 13 else 1))
    rank = len(b.shape_of(node.input[0]))
    axis = axis + rank if axis < 0 else axis
    if b.opset < 13:  # coerced to 2-D at `axis`

        def hardmax(x):
            flat = x.reshape(int(torch.tensor(x.shape[:axis]).prod()), -1)
            return F.one_hot(flat.argmax(1), flat.shape[1]).to(x.dtype).reshape(x.shape)

        return b.generic(node, hardmax, use=[0])
    return b.generic(node, lambda x: F.one_hot(x.argmax(axis), x.shape[axis]).to(x.dtype).movedim(-1, axis), use=[0])


@handles("LpNormalization")
def _lp_normalization(b: _Builder, node):
    attrs = _attrs(node)
    axis, p = int(attrs.get("axis", -1)), int(attrs.get("p", 2))
    if p not in (1, 2):
        raise _Unsupported(f"p={p}")
    return b.generic(node, lambda x: x / torch.linalg.vector_norm(x, ord=p, dim=axis, keepdim=True), use=[0])


@handles("CumSum")
def _cumsum(b: _Builder, node):
    attrs = _attrs(node)
    axis = b.const_list(node, 1)[0]
    exclusive, reverse = int(attrs.get("exclusive", 0)), int(attrs.get("reverse", 0))

    def cumsum(x):
        y = x.flip(axis) if reverse else x
        out = torch.cumsum(y, axis)
        if exclusive:
            out = out - y
        return out.flip(axis) if reverse else out

    return b.generic(node, cumsum, use=[0])


@handles("LRN")
def _lrn(b: _Builder, node):
    attrs = _attrs(node)
    size = int(attrs["size"])
    alpha, beta, bias = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))
    # torch's local_response_norm divides alpha by size like ONNX, and pads the window the same way
    return b.generic(node, lambda x: F.local_response_norm(x, size, alpha=alpha, beta=beta, k=bias), use=[0])


def _lp_pool_fn(p: int, kernel, strides, pads):
    n = len(kernel)

    def lp_pool(x):
        if any(pads):
            padding = []
            for i in reversed(range(n)):
                padding += [pads[i], pads[i + n]]
            x = F.pad(x, padding)
        powered = x.abs().pow(p)
        pooled = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n](powered, kernel, strides)
        return (pooled * float(torch.tensor(kernel).prod())).pow(1.0 / p)

    return lp_pool


@handles("LpPool")
def _lp_pool(b: _Builder, node):
    attrs = _attrs(node)
    kernel = list(attrs["kernel_shape"])
    n = len(kernel)
    if (
        attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID")
        or attrs.get("ceil_mode", 0)
        or any(d != 1 for d in attrs.get("dilations", [1] * n))
    ):
        raise _Unsupported("auto_pad SAME, ceil_mode or dilations")
    return b.generic(
        node,
        _lp_pool_fn(
            int(attrs.get("p", 2)), kernel, list(attrs.get("strides", [1] * n)), list(attrs.get("pads", [0] * (2 * n)))
        ),
        use=[0],
    )


@handles("GlobalLpPool")
def _global_lp_pool(b: _Builder, node):
    p = int(_attrs(node).get("p", 2))
    dims = tuple(range(2, len(b.shape_of(node.input[0]))))
    return b.generic(node, lambda x: x.abs().pow(p).sum(dim=dims, keepdim=True).pow(1.0 / p), use=[0])


class _InstanceNorm(nn.Module):
    def __init__(self, scale: torch.Tensor, bias: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(scale.clone())
        self.bias = nn.Parameter(bias.clone())
        self.eps = eps

    def forward(self, x):
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


@handles("InstanceNormalization")
def _instance_norm(b: _Builder, node):
    scale, bias = b.const(node, 1), b.const(node, 2)
    if scale is None or bias is None:
        raise _Unsupported("scale and bias must be constants")
    module = _InstanceNorm(scale, bias, float(_attrs(node).get("epsilon", 1e-5)))
    module.onnx_source = {"kind": "affine", "weight": node.input[1], "bias": node.input[2]}
    return module, [node.input[0]]


class _LayerNorm(nn.Module):
    """ONNX LayerNormalization: normalise over the axes from `axis` on, then scale (and shift)."""

    def __init__(self, scale: torch.Tensor, bias: torch.Tensor | None, axis: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(scale.clone())
        self.bias = nn.Parameter(bias.clone()) if bias is not None else None
        self.axis, self.eps = axis, eps

    def forward(self, x):
        dims = tuple(range(self.axis % x.dim(), x.dim()))
        mean = x.mean(dims, keepdim=True)
        var = (x - mean).pow(2).mean(dims, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps) * self.weight
        return y + self.bias if self.bias is not None else y


@handles("LayerNormalization")
def _layer_norm(b: _Builder, node):
    if any(node.output[1:]):
        raise _Unsupported("its Mean/InvStdDev outputs are used")
    scale = b.const(node, 1)
    bias = b.const(node, 2) if len(node.input) > 2 and node.input[2] else None
    if scale is None or (len(node.input) > 2 and node.input[2] and bias is None):
        raise _Unsupported("scale and bias must be constants")
    attrs = _attrs(node)
    module = _LayerNorm(scale, bias, int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5)))
    if bias is not None:  # written back like InstanceNormalization's scale and shift
        module.onnx_source = {"kind": "affine", "weight": node.input[1], "bias": node.input[2]}
    return module, [node.input[0]]
