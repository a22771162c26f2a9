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


class Untrained(nn.Module):
    """Conv+BN layers; untrained BN folds into all-zero biases, which torch's exporter stores once per width."""

    def __init__(self):
        super().__init__()

        def cbn(cin, cout, k=1):
            return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout))

        self.stem, self.a, self.b, self.c = cbn(3, 8, 3), cbn(8, 16), cbn(16, 16, 3), cbn(16, 8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.b(torch.relu(self.a(x))))
        return self.head(torch.relu(self.c(y) + x))


def export_folded(module: nn.Module, trained: bool) -> onnx.ModelProto:
    import io

    torch.manual_seed(0)
    if trained:  # BN statistics as after training: every folded bias differs
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.bias.data.uniform_(-0.5, 0.5)
    buffer = io.BytesIO()
    torch.onnx.export(module.eval(), (torch.randn(1, 3, 8, 8),), buffer, dynamo=False, do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def group_structure(deps) -> set:
    return {(frozenset(g.producers), g.prunable) for g in deps.groups}


def test_deduplicated_zero_biases_do_not_couple_layers():
    """Issue 16.4: an untrained folded export shows the same groups as a trained one."""
    untrained, trained = export_folded(Untrained(), False), export_folded(Untrained(), True)
    assert any(n.op_type == "Identity" for n in untrained.graph.node)  # the exporter did share the zero biases
    deps = channel_groups(untrained)
    assert group_structure(deps) == group_structure(channel_groups(trained))
    assert len(deps.prunable) == 3
    residual = deps.group_of("/stem/stem.0/Conv")
    assert set(residual.producers) == {"/stem/stem.0/Conv", "/c/c.0/Conv"}
    assert residual.coupled_by == ["node '/Add' (Add)"]  # why the two layers share a group
    assert deps.group_of("/a/a.0/Conv").coupled_by == []


def test_keep_tied_couples_readers_of_a_shared_constant(capsys):
    deps = channel_groups(export_folded(Untrained(), False), keep_tied=True)
    tied = deps.group_of("/a/a.0/Conv")
    assert "/b/b.0/Conv" in tied.producers and any("--keep-tied" in why for why in tied.coupled_by)


def test_groups_cli_says_why_layers_share_a_group(tmp_path, capsys):
    path = tmp_path / "untrained.onnx"
    onnx.save(export_folded(Untrained(), False), str(path))
    assert main(["groups", str(path), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert [g["coupled_by"] for g in groups if len(g["producers"]) == 2] == [["node '/Add' (Add)"]]
    assert main(["groups", str(path), "--keep-tied", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prunable"] == 2
    assert main(["groups", str(path)]) == 0
    assert "coupled by" in capsys.readouterr().out
