"""Dependency analysis: coupling through residuals, SE gates, concat; barriers and the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from onnxprune.analysis.groups import channel_groups
from onnxprune.cli import main
from onnxprune.measure.verify import max_relative_error, run, zero_mask
from onnxprune.prune.surgery import prune_channels


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


def test_channel_shuffle_prunes_keeping_rows_equal(tmp_path, capsys):
    """Reshape [c] -> [2, c/2], Transpose, Reshape back: both rows keep the same offsets (issue 12.3)."""
    path = export(Shuffle(), tmp_path / "shuffle.onnx")
    deps = channel_groups(path)
    shuffled = deps.group_of("/b/Conv")
    assert shuffled.prunable and shuffled.size == 4  # 8 channels in 2 rows: 4 classes of 2
    assert any("Reshape" in why and "2 rows" in why for why in shuffled.coupled_by)
    assert main(["groups", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prunable"] == 2
    keep = {shuffled.id: np.array([1, 3])}
    pruned = prune_channels(deps, keep)
    assert max_relative_error(run(pruned)[0], run(zero_mask(deps, keep))[0]) < 1e-5


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
    model.graph.value_info.append(
        onnx.helper.make_tensor_value_info(stem_relu.output[0], onnx.TensorProto.FLOAT, [1, 8, 16, 16])
    )
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


# ---- channel-level groups (issue 12): sizes need not match, only the coupled channels go together ----
def cbr(cin, cout, k=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class C2f(nn.Module):
    """YOLOv8's C2f: cv1 split in halves, bottlenecks with residuals on the second half, concat, cv2."""

    def __init__(self, c=8, n=2):
        super().__init__()
        self.c = c
        self.stem, self.cv1 = cbr(3, 12, 3), cbr(12, 2 * c)
        self.m = nn.ModuleList(nn.Sequential(cbr(c, c, 3), cbr(c, c, 3)) for _ in range(n))
        self.cv2 = cbr((2 + n) * c, 6)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        y = list(self.cv1(self.stem(x)).split((self.c, self.c), 1))
        for m in self.m:
            y.append(y[-1] + m(y[-1]))
        return self.head(self.cv2(torch.cat(y, 1)))


class DenseResidual(nn.Module):
    """A dense block (concat of growing features) whose new features are added to the block input."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b = cbr(3, 8, 3), cbr(8, 4, 3), cbr(12, 4, 3)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        a = self.a(x)
        b = self.b(torch.cat([x, a], 1))
        return self.head(torch.cat([a, b], 1) + x)


class ResNeXtBlock(nn.Module):
    def __init__(self, width=64, groups=32):
        super().__init__()
        self.stem = cbr(3, 16, 3)
        self.conv1, self.conv2 = cbr(16, width), cbr(width, width, 3, groups)
        self.conv3 = nn.Sequential(nn.Conv2d(width, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.relu(self.conv3(self.conv2(self.conv1(x))) + x))


class NestedSplitConcat(nn.Module):
    """A split of a concat of a split, with the pieces added back to each other."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b = cbr(3, 12, 3), cbr(12, 8), cbr(12, 6)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        s0, s1 = self.stem(x).split([4, 8], 1)  # 4 + 8
        cat = torch.cat([s1, self.a(self.stem(x))], 1)  # 8 + 8 = 16
        u, v = cat.split([6, 10], 1)
        return self.head(u + self.b(torch.cat([s0, v[:, 2:]], 1)))


def check_oracle(module, exporter):
    from tests.analysis.test_property_graphs import check_pruning, export

    proto = export(module.eval(), exporter)
    deps = channel_groups(proto)
    for seed in range(3):
        check_pruning(proto, seed, deps)
    return deps


@pytest.mark.parametrize("exporter", ["legacy-fold", "dynamo"])
def test_c2f_split_add_prunes(exporter):
    deps = check_oracle(C2f(), exporter)
    assert len(deps.prunable) == len(deps.groups) - 1  # every residual prunes; only the head stays
    cv1 = next(r.label for g in deps.groups for r in g.roots if r.op == "Conv" and r.size == 16)
    halves = [g for g in deps.groups if cv1 in g.producers]
    assert [g.size for g in halves] == [8, 8]  # the first half alone; the second with both residual branches
    spans = {root.label: ranges for root, ranges in deps.ranges(halves[1])}
    assert spans[cv1] == [(8, 16)] and len(spans) == 3 and all(r == [(0, 8)] for n, r in spans.items() if n != cv1)
    assert len(halves[1].coupled_by) == 2  # the two residual Adds


@pytest.mark.parametrize("exporter", ["legacy-fold", "dynamo"])
def test_dense_block_with_identity_residual_prunes(exporter):
    deps = check_oracle(DenseResidual(), exporter)
    assert len(deps.prunable) == len(deps.groups) - 1  # only the head (graph output) stays
    # the block input's first 4 channels go with `a`, the last 4 with `b`: two groups, each of two layers
    assert sorted(len(g.roots) for g in deps.prunable) == [2, 2] and all(g.size == 4 for g in deps.prunable)


@pytest.mark.parametrize("groups", [4, 32])
@pytest.mark.parametrize("exporter", ["legacy-fold", "dynamo"])
def test_resnext_grouped_bottleneck_prunes(exporter, groups):
    deps = check_oracle(ResNeXtBlock(64, groups), exporter)
    assert len(deps.prunable) == len(deps.groups) - 1
    per_group = 64 // groups
    assert {g.size for g in deps.prunable} >= {per_group}  # conv1's and conv2's outputs: one class per offset


@pytest.mark.parametrize("exporter", ["legacy-fold", "dynamo"])
def test_nested_split_concat_split_prunes(exporter):
    deps = check_oracle(NestedSplitConcat(), exporter)
    assert len(deps.prunable) >= 2


class ShuffleV2Unit(nn.Module):
    """ShuffleNetV2's basic unit: split in halves, a branch on one half, concat, channel shuffle (x2)."""

    def __init__(self, c=16):
        super().__init__()
        self.c = c
        self.stem = cbr(3, c, 3)
        self.branches = nn.ModuleList(
            nn.Sequential(cbr(c // 2, c // 2), cbr(c // 2, c // 2, 3, c // 2), cbr(c // 2, c // 2)) for _ in range(2)
        )
        self.head = nn.Conv2d(c, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        for branch in self.branches:
            x1, x2 = x.split((self.c // 2, self.c // 2), 1)
            x = torch.cat([x1, branch(x2)], 1)
            n, c, h, w = x.shape
            x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.head(x)


@pytest.mark.parametrize("exporter", ["legacy-fold", "dynamo"])
def test_shufflenet_v2_unit_prunes(exporter):
    deps = check_oracle(ShuffleV2Unit(), exporter)
    assert len(deps.prunable) == len(deps.groups) - 1
    assert not any("reorders" in r for g in deps.groups for r in g.reasons)


# ---- exact versus structural couplings (issue 12.6) ---------------------------------------------------
def layer_norm_over_channels(decomposed: bool) -> onnx.ModelProto:
    """conv -> LayerNorm over the channel axis (decomposed as tf2onnx/jax2tf write it, or one op) -> conv."""
    from tests.synthetic_graphs import GraphBuilder

    b = GraphBuilder()
    h = b.relu(b.conv("x", 3, 8, "conv1", k=3))
    if decomposed:
        mean = b.node("ReduceMean", [h], axes=[1], keepdims=1)[0]
        centred = b.node("Sub", [h, mean])[0]
        var = b.node("ReduceMean", [b.node("Mul", [centred, centred])[0]], axes=[1], keepdims=1)[0]
        std = b.node("Sqrt", [b.node("Add", [var, b.const(np.float32(1e-5), "eps")])[0]])[0]
        h = b.node("Div", [centred, std])[0]
        h = b.node(
            "Add",
            [
                b.node("Mul", [h, b.const(np.ones((8, 1, 1), np.float32), "gamma")])[0],
                b.const(np.zeros((8, 1, 1), np.float32), "beta"),
            ],
        )[0]
    else:
        h = b.node("Transpose", [h], perm=[0, 2, 3, 1])[0]
        h = b.node(
            "LayerNormalization",
            [h, b.const(np.ones(8, np.float32), "gamma"), b.const(np.zeros(8, np.float32), "beta")],
            axis=-1,
        )[0]
        h = b.node("Transpose", [h], perm=[0, 3, 1, 2])[0]
    return b.model(b.conv(h, 8, 4, "head"))


@pytest.mark.parametrize("decomposed", [True, False])
def test_layer_norm_over_channels_is_structural_only(decomposed):
    from onnxprune.measure.verify import run as ort_run

    model = layer_norm_over_channels(decomposed)
    exact = channel_groups(model).group_of("conv1")
    assert not exact.prunable and exact.structural_only
    assert exact.to_json()["structural_only"]
    reinit = channel_groups(model, exact=False)
    conv1 = reinit.group_of("conv1")
    assert conv1.prunable and conv1.structural
    pruned = prune_channels(reinit, {conv1.id: np.array([0, 2, 5])})
    onnx.checker.check_model(pruned, full_check=True)
    assert ort_run(pruned)[0].shape == ort_run(model)[0].shape


def test_shrink_reinit_prunes_through_a_softmax_over_channels_keep_refuses():
    import onnxprune
    from onnxprune.errors import UserError
    from tests.synthetic_graphs import GraphBuilder

    b = GraphBuilder()
    h = b.node("Softmax", [b.conv("x", 3, 8, "conv1", k=3)], axis=1)[0]
    model = b.model(b.conv(b.relu(b.conv(h, 8, 8, "conv2")), 8, 4, "head"))
    pruned, report = onnxprune.shrink(model, mode="FA", target=0.5, init="reinit")
    assert any(row["node"] == "conv1" for row in report["layers"])
    with pytest.raises(UserError, match="unreachable"):  # at keep, only conv2 may go: not enough
        onnxprune.shrink(model, mode="FA", target=0.3, init="keep")
