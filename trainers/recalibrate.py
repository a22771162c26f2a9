"""Least-squares recalibration of the hinted layers before distillation (`--recalibrate`, default on).

Pruning a layer's inputs moves every kept channel of its output away from the original's; deeper
layers compound it, so a student that kept its weights can start far from its teacher (PP-OCR's
classifier at FLOPs 0.5: correlation with the original's channels falls from 1.0 in the first
pruned layer to ~0.2 ten layers on). Before the first step, each hinted layer (in graph order) is
corrected channel by channel: on the calibration images its output s is replaced by a * s + b with
a, b the least-squares fit of the teacher's kept channel t (a = cov(s, t) / var(s),
b = mean(t) - a * mean(s)), folded into the layer's weight row and bias. A channel can only get
closer to its teacher's in mean squared error, and later layers are fitted on the corrected
ones. Layers it cannot fold into (ConvTranspose, a MatMul without a bias) are left as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from .convert.norms import layer_of
from .hints import Hint, teacher_view

FOLDABLE = ("conv", "gemm", "matmul")
MAX_IMAGES = 32


def _producer(module, tensor: str):
    for (_ins, outs, _free), op in zip(module.wiring, module.ops.values()):
        if tensor in outs:
            return op
    return None


def _fit(s: torch.Tensor, t: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = s.double().movedim(axis, 0).reshape(s.shape[axis], -1)
    t = t.double().movedim(axis, 0).reshape(t.shape[axis], -1)
    ms, mt = s.mean(1), t.mean(1)
    var = (s - ms[:, None]).pow(2).mean(1)
    cov = ((s - ms[:, None]) * (t - mt[:, None])).mean(1)
    a = torch.where(var > 1e-12, cov / var.clamp_min(1e-12), torch.ones_like(var))
    return a, mt - a * ms


def recalibrate(module, pair, images: torch.Tensor) -> list[str]:
    """Correct each hinted layer of the student in place (module docstring); returns the layers corrected."""
    images = images[:MAX_IMAGES]
    done: list[str] = []
    with torch.no_grad():
        _outs, teacher = pair.teacher(images)
        for hint in pair.hints:
            op = _producer(module, hint.tensor)
            layer = layer_of(op) if op is not None else None
            kind = (getattr(layer, "onnx_source", None) or {}).get("kind")
            if kind not in FOLDABLE or not _fits(kind, layer, hint, teacher[hint.tensor].dim()):
                continue
            _s_outs, student = pair.student(images)
            a, b = _fit(student[hint.tensor], teacher_view(hint, teacher[hint.tensor]), hint.axis)
            _fold(layer, a.float(), b.float())
            done.append(hint.node)
    return done


def _fits(kind: str, layer, hint: Hint, rank: int) -> bool:
    if layer.bias is not None and layer.bias.numel() != layer.weight.shape[0]:
        return False
    if kind == "conv":
        return hint.axis == 1 and isinstance(layer, nn.modules.conv._ConvNd)
    if kind == "matmul" and layer.bias is None:
        return False  # no bias to write the shift into (writeback.py)
    return hint.axis == rank - 1 and getattr(layer, "trans_a", False) is False


def _fold(layer, a: torch.Tensor, b: torch.Tensor) -> None:
    weight = layer.weight
    weight.mul_(a.to(weight.device).view(-1, *([1] * (weight.dim() - 1))))
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device))
    bias = layer.bias
    if bias.dim() == 1 and bias.shape[0] == weight.shape[0]:
        bias.mul_(a.to(bias.device)).add_(b.to(bias.device))
    else:  # a broadcast bias (Gemm): written as it is, per output channel
        bias.copy_((bias.reshape(-1) * a.to(bias.device) + b.to(bias.device)).reshape(bias.shape))
