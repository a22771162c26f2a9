"""Normalisation put back for training (`train --norm auto|insert|none`).

An ONNX file exported for inference has its BatchNorm folded into the convolutions; re-initialised
and trained without it, a deep plain network (VGG-16) does not learn at the learning rates that
train the BN version (loss stays at ln(classes)). So the converter can insert a trainable
BatchNorm after every convolution / linear layer that has no normalisation after it -- not after
the layers that feed a graph output directly (classifier, detector heads: their scale is the
output's) -- and `fold()` folds each inserted BN back into its layer's weight and bias at export,
so the trained ONNX keeps the pruned graph's structure (see writeback.py).
"""

from __future__ import annotations

from collections import defaultdict

import onnx
import torch
from torch import nn

from .modules import OnnxModule

NORM_MODES = ("auto", "insert", "none")
NORM_OPS = frozenset({"BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization"})
LAYER_KINDS = ("conv", "conv_transpose", "gemm", "matmul")


def graph_has_norm(proto: onnx.ModelProto) -> bool:
    return any(node.op_type in NORM_OPS for node in proto.graph.node)


def layer_of(op: nn.Module) -> nn.Module:
    """The layer inside a padding / cropping wrapper."""
    return getattr(op, "inner", op)


def _kind(op: nn.Module) -> str | None:
    return (getattr(layer_of(op), "onnx_source", None) or {}).get("kind")


def _output_ranks(module: OnnxModule) -> dict[str, int]:
    """Rank of every runtime tensor, from one eval run on a batch of 2."""
    ranks: dict[str, int] = {}
    env = dict(zip(module.input_names, [module.sample_input(2)]))
    was = module.training
    module.eval()
    with torch.no_grad():
        for (ins, outs, _free), op in zip(module.wiring, module.ops.values()):
            result = op(*[env[name] for name in ins])
            results = [result] if len(outs) == 1 else list(result)
            for name, value in zip(outs, results):
                if name and isinstance(value, torch.Tensor):
                    env[name] = value
                    ranks[name] = value.dim()
    module.train(was)
    return ranks


def _feeds_output_directly(proto: onnx.ModelProto, tensor: str, layer_nodes: set[int]) -> bool:
    """True when some path from `tensor` reaches a graph output without passing another layer."""
    consumers: dict[str, list[int]] = defaultdict(list)
    for index, node in enumerate(proto.graph.node):
        for name in node.input:
            consumers[name].append(index)
    outputs = {o.name for o in proto.graph.output}
    seen, stack = set(), [tensor]
    while stack:
        name = stack.pop()
        if name in outputs:
            return True
        if name in seen:
            continue
        seen.add(name)
        for index in consumers.get(name, []):
            if index not in layer_nodes:
                stack.extend(o for o in proto.graph.node[index].output if o)
    return False


def insert_norms(module: OnnxModule, proto: onnx.ModelProto, mode: str) -> list[dict]:
    """Insert BatchNorm after un-normalised layers (in place); returns what was inserted.

    `auto` inserts only when the graph has no normalisation at all, `insert` after every layer
    without one, `none` never. Each entry: {"layer": node name, "op": op type, "channels": C}.
    """
    if mode not in NORM_MODES:
        from onnxprune.errors import UserError

        raise UserError(f"--norm {mode!r}: expected one of {', '.join(NORM_MODES)}")
    module.inserted_norms = {}
    if mode == "none" or (mode == "auto" and graph_has_norm(proto)):
        return []
    graph = proto.graph
    layer_nodes = {op.onnx_node for op in module.ops.values() if _kind(op) in LAYER_KINDS}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    ranks = _output_ranks(module)
    chosen: dict[str, nn.Module] = {}
    report = []
    for (_ins, outs, _free), (key, op) in zip(module.wiring, module.ops.items()):
        kind = _kind(op)
        if kind not in LAYER_KINDS or len(outs) != 1:
            continue
        layer, out = layer_of(op), outs[0]
        node = graph.node[op.onnx_node]
        if any(c.op_type in NORM_OPS for c in consumers.get(out, [])) or any(
            c.op_type in NORM_OPS for c in consumers.get(node.output[0], [])
        ):
            continue
        if _feeds_output_directly(proto, out, layer_nodes - {op.onnx_node}):
            continue  # a classifier or a detector head: its output scale is the model's
        rank = ranks.get(out, 0)
        if kind in ("gemm", "matmul"):
            # a linear layer: only (batch, features) outputs, and a bias to fold the shift into
            # (MatMul has none unless a bias Add follows; a broadcast Gemm bias is left alone)
            if (
                rank != 2
                or (kind == "matmul" and layer.bias is None)
                or (layer.bias is not None and not layer._bias_in_linear)
            ):
                continue
            channels, cls = layer.weight.shape[0], nn.BatchNorm1d
        else:
            cls = {3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank)
            if cls is None:
                continue
            channels = layer.out_channels
        chosen[key] = cls(channels)
        report.append(
            {"layer": node.name or f"{node.op_type}#{op.onnx_node}", "op": node.op_type, "channels": int(channels)}
        )
    if not chosen:
        return []
    ops, wiring = nn.ModuleDict(), []
    for (ins, outs, free), (key, op) in zip(module.wiring, module.ops.items()):
        ops[key] = op
        if key not in chosen:
            wiring.append((ins, outs, free))
            continue
        raw = f"{outs[0]}::before_inserted_bn"
        wiring.append((ins, [raw], free))
        norm_key = f"{key}__inserted_bn"
        ops[norm_key] = chosen[key]
        wiring.append(([raw], list(outs), [raw]))
        module.inserted_norms[key] = norm_key
    module.ops = ops
    module.wiring = wiring
    return report


def fold(
    layer: nn.Module, kind: str, norm: nn.modules.batchnorm._BatchNorm | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of `layer` with the eval-mode `norm` after it folded in, in torch's layout."""
    weight = layer.weight.detach().clone()
    bias = None if layer.bias is None else layer.bias.detach().clone()
    if norm is None:
        return weight, bias
    scale = (norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)).to(weight.dtype)
    shift = norm.bias.detach() - norm.running_mean * scale
    if kind == "conv_transpose":  # (in, out/groups, k...): output channel o = g * out/groups + j
        groups = layer.groups
        view = weight.reshape(groups, weight.shape[0] // groups, weight.shape[1], *weight.shape[2:])
        per = scale.reshape(groups, 1, weight.shape[1], *([1] * (weight.dim() - 2)))
        weight = (view * per).reshape(weight.shape)
    else:  # conv (out, in/groups, k...) and linear (out, in)
        weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    base = bias if bias is not None else torch.zeros_like(scale)
    return weight, base * scale + shift
