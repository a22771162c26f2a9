"""Dependency analysis: coupling through residuals, SE gates, concat; barriers and the CLI."""
from __future__ import annotations

import json

import numpy as np
import onnx
import torch
from torch import nn

from onnxprune.cli import main
from onnxprune.groups import channel_groups


def export(module: nn.Module, path, shape=(1, 3, 16, 16)) -> str:
    torch.onnx.export(module.eval(), (torch.randn(*shape),), str(path), dynamo=False, input_names=["x"])
    return str(path)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.a(x)) + x
        y = torch.relu(self.b(y)) + y
        return self.head(y.mean(dim=(2, 3)))


def test_residual_adds_merge_groups(tmp_path):
    deps = channel_groups(export(Residual(), tmp_path / "res.onnx"))
    merged = [g for g in deps.prunable if len(g.roots) == 3]
    assert len(merged) == 1 and merged[0].size == 8


class Shuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 6, 1)

    def forward(self, x):
        x = torch.relu(self.a(x))
        y = torch.relu(self.b(x))
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        return self.c(y)


def test_channel_shuffle_is_a_barrier_with_reason(tmp_path, capsys):
    path = export(Shuffle(), tmp_path / "shuffle.onnx")
    deps = channel_groups(path)
    blocked = deps.group_of("/b/Conv")
    assert not blocked.prunable and any("Reshape" in r for r in blocked.reasons)
    assert deps.group_of("/a/Conv").prunable
    assert main(["groups", path, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["prunable"] == 1
    reasons = [r for g in payload["groups"] for r in g["reasons"]]
    assert any("channel shuffle" in r for r in reasons)


def test_groups_table(tmp_path, capsys):
    assert main(["groups", export(Residual(), tmp_path / "res.onnx")]) == 0
    out = capsys.readouterr().out
    assert "prunable" in out and "graph output" in out


def test_unknown_op_blocks_only_what_it_touches(tmp_path):
    """An op with no rule (here a custom-domain Relu stand-in) freezes the channels it reads."""
    path = export(Residual(), tmp_path / "res.onnx")
    model = onnx.load(path)
    stem_relu = next(n for n in model.graph.node if n.op_type == "Relu")
    stem_relu.op_type, stem_relu.domain = "Mystery", "custom.domain"
    model.opset_import.append(onnx.helper.make_opsetid("custom.domain", 1))
    # custom ops get no inferred shape: declare the output like an exporter would
    model.graph.value_info.append(onnx.helper.make_tensor_value_info(stem_relu.output[0], onnx.TensorProto.FLOAT,
                                                                     [1, 8, 16, 16]))
    deps = channel_groups(model)
    stem = deps.group_of("/stem/Conv")
    assert not stem.prunable and any("no channel rule" in r and "Mystery" in r for r in stem.reasons)
    assert len(deps.prunable) == 0 or all("/stem/Conv" not in g.producers for g in deps.prunable)


def test_unnamed_constant_node_weights_are_not_one_node():
    """paddle2onnx writes weight Constant nodes without names: each is its own constant, not one shared."""
    from tests.synthetic_graphs import constant_weight_cnn

    deps = channel_groups(constant_weight_cnn())
    assert len(deps.prunable) == 2 and not any("shared" in r for g in deps.groups for r in g.reasons)
    assert deps.group_of("conv1").prunable
    unnamed = deps.group_of("Conv#6")  # no name: reported by op and graph index
    assert unnamed.prunable and unnamed.producers == ["Conv#6"] and unnamed.roots[0].node == ""


def test_messages_name_unnamed_nodes_by_op_and_index(capsys):
    from tests.synthetic_graphs import GraphBuilder

    b = GraphBuilder()
    h = b.conv("x", 3, 8, "conv1", k=3)
    h = b.node("LRN", [h], size=3)[0]  # unnamed, mixes channels: blocks conv1
    model = b.model(b.conv(h, 8, 4, "head"))
    deps = channel_groups(model)
    assert any("node 'LRN#1' (LRN)" in r for r in deps.group_of("conv1").reasons)
