"""Layer-wise least-squares refit of a pruned student before distillation (`--recalibrate`, default on).

Pruning a layer's inputs moves every kept channel of its output away from the original's, and deeper
layers compound it: a student that kept its weights can start far from its teacher (PP-OCR's
classifier at FLOPs 0.5: correlation with the original's channels falls from 1.0 in the first pruned
layer to ~0.2 ten layers on). But each layer is linear in its weights, and the teacher says what its
output should be. So before the first step every layer the two graphs share by output tensor name --
Conv (1-D, 2-D), Gemm, MatMul with a bias -- is refitted in graph order, the reconstruction step of
channel pruning (He et al., ICCV 2017; ThiNet; FSKD, CVPR 2020) done with the teacher's tensors:

* rows: the student's input patches to the layer on the calibration images (after the layers before
  it were refitted) and, at the same positions, the teacher's output on the channels the student
  kept (the shrink report's `kept`, as the hints have it; all channels where none were pruned);
* fit: per group, ridge regression pulled toward the current weights W0,
  min ||X W + b - Y||^2 + lam * ||W - W0||^2 (the bias is not penalised);
* lam is chosen on held-out calibration images (every fourth chunk) from a grid, against W0 itself:
  a layer changes only where the refit predicts images it was not fitted on better than it did.

Layers whose input patches the student cannot hand over (ConvTranspose, 3-D, a transposed Gemm
input, a MatMul with no bias to write into) are left to the epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .convert.norms import layer_of

IMAGES = 128  # calibration images the refit reads
ROWS = 8192  # sampled rows (positions) per layer, over all images
EXACT = 1e-9  # a layer whose held-out residual is this small (relative) already computes its teacher's tensor
LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # x the mean input energy of the group


class _Stop(Exception):
    """Raised by the input hook: the rest of the forward pass is not needed."""


@dataclass
class Target:
    layer: nn.Module
    tensor: str
    kind: str  # "conv" | "linear"
    kept: torch.Tensor  # teacher channels the student's output channels are, in order
    groups: int


def _candidates(module) -> list[tuple[nn.Module, str, str]]:
    """(layer, output tensor, kind) for every layer the refit can write, in graph order."""
    found = []
    for (_ins, outs, _free), op in zip(module.wiring, module.ops.values()):
        layer = layer_of(op)
        kind = (getattr(layer, "onnx_source", None) or {}).get("kind")
        if not outs or not outs[0]:
            continue
        if kind == "conv" and isinstance(layer, (nn.Conv1d, nn.Conv2d)) and layer.padding_mode == "zeros":
            found.append((layer, outs[0], "conv"))
        elif kind in ("gemm", "matmul") and not getattr(layer, "trans_a", False):
            if kind == "matmul" and layer.bias is None:
                continue  # no bias to write the shift into (writeback.py)
            if layer.bias is not None and layer.bias.numel() != layer.weight.shape[0]:
                continue
            found.append((layer, outs[0], "linear"))
    return found


def _channel_axis(kind: str, shape: tuple[int, ...]) -> int:
    return 1 if kind == "conv" else len(shape) - 1


def _targets(module, pair, teacher, chunk: torch.Tensor) -> list[Target]:
    """The candidates whose tensor both networks compute, with the channels the student kept."""
    found = _candidates(module)
    tensors = {tensor for _layer, tensor, _kind in found}
    computed = teacher.available
    if computed is None:  # onnxruntime: any tensor of its graph
        computed = {name for node in teacher.proto.graph.node for name in node.output}
    tensors &= computed
    module.taps = frozenset(pair.taps | tensors)
    teacher.set_taps(pair.taps | tensors)
    s_taps, t_taps = pair.student.fn(chunk)[1], pair.teacher.fn(chunk)[1]
    by_hint = {h.tensor: h.kept for h in pair.aligned if h.kept is not None}
    targets = []
    for layer, tensor, kind in found:
        if tensor not in s_taps or tensor not in t_taps:
            continue
        s, t = tuple(s_taps[tensor].shape), tuple(t_taps[tensor].shape)
        axis = _channel_axis(kind, s)
        if len(s) != len(t) or any(a != b for i, (a, b) in enumerate(zip(s, t)) if i != axis):
            continue
        if s[axis] == t[axis]:
            kept = torch.arange(s[axis])
        elif tensor in by_hint:
            kept = by_hint[tensor].cpu()
        else:
            continue
        groups = layer.groups if kind == "conv" else 1
        targets.append(Target(layer, tensor, kind, kept, groups))
    return targets


def _positions(rng: np.random.Generator, per_image: int, count: int, images: int) -> torch.Tensor:
    """(images, k) sampled positions per image."""
    k = min(per_image, count)
    return torch.from_numpy(np.stack([rng.choice(per_image, k, replace=False) for _ in range(images)]))


def _conv_rows(layer: nn.Module, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The input patches of `layer` at output positions `pos` (images, k): (images * k, Cin * kernel)."""
    if x.dim() == 3:  # Conv1d as a 2-D convolution of height 1
        x, kernel = x.unsqueeze(2), (1, *layer.kernel_size)
        extra = dict(dilation=(1, *layer.dilation), padding=(0, *layer.padding), stride=(1, *layer.stride))
    else:
        kernel = layer.kernel_size
        extra = dict(dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
    rows = [F.unfold(x[i : i + 1], kernel, **extra)[0][:, pos[i]].T for i in range(x.shape[0])]
    return torch.cat(rows).double()


def _out_rows(kind: str, y: torch.Tensor, kept: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    if kind == "conv":
        y = y.index_select(1, kept.to(y.device)).flatten(2)  # (images, C, positions)
        return torch.cat([y[i][:, pos[i]].T for i in range(y.shape[0])]).double()
    y = y.index_select(y.dim() - 1, kept.to(y.device)).reshape(-1, kept.numel())
    return y[pos.reshape(-1)].double()


class _Stats:
    """X'X, X'Y and Y'Y per group, on fitting and on held-out chunks."""

    def __init__(self):
        self.parts: dict[bool, list[torch.Tensor]] = {}

    def add(self, x: torch.Tensor, y: torch.Tensor, groups: int, held_out: bool) -> None:
        x = x.reshape(x.shape[0], groups, -1)
        x = torch.cat([x, torch.ones(x.shape[0], groups, 1, dtype=x.dtype)], dim=2)  # the bias's column
        y = y.reshape(y.shape[0], groups, -1)
        new = [torch.einsum("pgf,pgh->gfh", x, x), torch.einsum("pgf,pgc->gfc", x, y), (y * y).sum()]
        old = self.parts.get(held_out)
        self.parts[held_out] = new if old is None else [a + b for a, b in zip(old, new)]


def _current(target: Target) -> torch.Tensor:
    """W0 as (groups, features + 1 bias row, channels per group)."""
    w = target.layer.weight.detach().double().cpu()
    out = w.shape[0]
    w = w.reshape(target.groups, out // target.groups, -1).transpose(1, 2)
    b = target.layer.bias
    b = torch.zeros(out, dtype=torch.float64) if b is None else b.detach().double().cpu().reshape(-1)
    return torch.cat([w, b.reshape(target.groups, 1, -1)], dim=1)


def _solve(stats: list[torch.Tensor], w0: torch.Tensor, lam: float) -> torch.Tensor:
    a, b = stats[0], stats[1]
    features = a.shape[1] - 1
    energy = torch.diagonal(a, dim1=1, dim2=2)[:, :features].mean(1).clamp_min(1e-12)
    penalty = torch.ones(a.shape[1], dtype=a.dtype)
    penalty[-1] = 1e-9  # the bias is left free (a tiny ridge keeps the system regular)
    reg = (lam * energy)[:, None, None] * torch.diag(penalty)[None]
    return torch.linalg.solve(a + reg, b + reg @ w0)


def _error(stats: list[torch.Tensor], w: torch.Tensor) -> float:
    a, b, yy = stats
    return float(torch.einsum("gfc,gfh,ghc->", w, a, w) - 2 * (w * b).sum() + yy)


def _write(target: Target, w: torch.Tensor) -> None:
    layer = target.layer
    weight = layer.weight
    bias_row, w = w[:, -1, :].reshape(-1), w[:, :-1, :]
    new = w.transpose(1, 2).reshape(weight.shape[0], *weight.shape[1:])
    weight.copy_(new.to(weight.dtype).to(weight.device))
    if layer.bias is None:  # a conv or Gemm without one gets a bias (writeback adds the input)
        _give_zero_bias(layer)
    layer.bias.copy_(bias_row.reshape(layer.bias.shape).to(weight.dtype).to(weight.device))


def _fit_one(pair, target: Target, chunks: list[torch.Tensor], teacher_rows, positions) -> dict | None:
    """Accumulate the layer's rows over the chunks, choose lam on the held-out chunks, write if better.
    Returns the layer's record (held-out residual as it was and as refitted, relative to the teacher's)."""
    captured: list[torch.Tensor] = []

    def hook(_layer, inputs):
        captured.append(inputs[0].detach())
        raise _Stop

    stats = _Stats()
    handle = target.layer.register_forward_pre_hook(hook)
    try:
        for k, chunk in enumerate(chunks):
            captured.clear()
            try:
                pair.student.fn(chunk)
            except _Stop:
                pass
            if not captured:
                return None
            x = captured[0]
            if target.kind == "conv":
                rows = _conv_rows(target.layer, x, positions[k])
            else:
                rows = x.reshape(-1, x.shape[-1])[positions[k].reshape(-1).to(x.device)].double()
            stats.add(rows.cpu(), teacher_rows[k], target.groups, held_out=len(chunks) > 1 and k % 4 == 3)
    finally:
        handle.remove()
    fit, held = stats.parts.get(False), stats.parts.get(True)
    if fit is None:
        return None
    w0 = _current(target)
    record = {"tensor": target.tensor, "channels": int(target.kept.numel()), "lambda": None}
    energy = max(float(held[2]), 1e-30) if held is not None else None
    best, best_error = None, _error(held, w0) if held is not None else None
    if held is not None:
        record.update(residual_before=best_error / energy, residual_after=best_error / energy)
        if best_error <= EXACT * energy:
            return record  # it computes its teacher's tensor already
    for lam in LAMBDAS:
        try:
            w = _solve(fit, w0, lam)
        except RuntimeError:  # singular even with the ridge: keep W0
            continue
        if held is None:  # one chunk only: nothing to choose on, the lightest ridge
            best = lam
            break
        error = _error(held, w)
        if error < best_error * (1 - 1e-6):
            best, best_error = lam, error
    if best is None:
        return record
    whole = fit if held is None else [a + b for a, b in zip(fit, held)]
    _write(target, _solve(whole, w0, best))
    record["lambda"] = best
    if held is not None:
        record["residual_after"] = best_error / energy
    return record


def _give_zero_bias(layer: nn.Module) -> None:
    weight = layer.weight
    layer.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device))


def add_refit_biases(module, weights: dict) -> None:
    """Give every layer the refit gave a bias (a key of the saved `weights` the module lacks) a zero one,
    as _write did, so that a checkpoint of a refitted student loads, and its optimizer state matches,
    without a refit."""
    have = module.state_dict()
    for key in weights:
        if key.endswith(".bias") and key not in have:
            layer = module.get_submodule(key.removesuffix(".bias"))
            if getattr(layer, "bias", False) is None:
                _give_zero_bias(layer)


def recalibrate(module, pair, teacher, batches, images: int = IMAGES, seed: int = 0, on_layer=None) -> list[dict]:
    """Refit the student's layers in place (module docstring). Returns one record per layer read: its
    tensor, `lambda` (None: left as it was) and the held-out squared residual relative to the teacher's
    tensor before and after (`residual_before`, `residual_after`). `on_layer(done, total)` is called
    after each layer (the refit of a large detector takes minutes: the caller shows how far it is)."""
    chunk_size = min(c for c in (pair.student.chunk, pair.teacher.chunk, 8) if c)  # 1 for a batch-1 graph
    xs, seen = [], 0
    for xb, _yb in batches:
        xs.append(xb)
        seen += xb.shape[0]
        if seen >= images:
            break
    x = torch.cat(xs)[:images]
    chunks = [x[i : i + chunk_size] for i in range(0, x.shape[0], chunk_size)]
    was = module.training
    module.eval()
    records: list[dict] = []
    try:
        with torch.no_grad():
            targets = _targets(module, pair, teacher, chunks[0])
            if not targets:
                return records
            rng = np.random.default_rng(seed)
            teacher_rows: list[list[torch.Tensor]] = [[] for _ in targets]
            positions: list[list[torch.Tensor]] = [[] for _ in targets]
            per_chunk = max(1, -(-ROWS // len(chunks)))  # rows per chunk, ROWS in all
            for chunk in chunks:
                t_taps = pair.teacher.fn(chunk)[1]
                for j, target in enumerate(targets):
                    y = t_taps[target.tensor]
                    per_image = y[0].flatten(1).shape[1] if target.kind == "conv" else y.numel() // y.shape[-1]
                    if target.kind == "conv":
                        pos = _positions(rng, per_image, max(1, per_chunk // chunk.shape[0]), y.shape[0])
                    else:
                        pos = torch.from_numpy(rng.choice(per_image, min(per_chunk, per_image), replace=False))
                    positions[j].append(pos)
                    teacher_rows[j].append(_out_rows(target.kind, y, target.kept, pos).cpu())
                del t_taps
            for j, target in enumerate(targets):
                record = _fit_one(pair, target, chunks, teacher_rows[j], positions[j])
                if record is not None:
                    records.append(record)
                teacher_rows[j] = positions[j] = None
                if on_layer is not None:
                    on_layer(j + 1, len(targets))
    finally:
        module.taps = frozenset(pair.taps)
        teacher.set_taps(pair.taps)
        module.train(was)
    return records
