"""shrink: every zoo model x exporter x mode x target; reproducibility; report; CLI contract."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.analysis.groups import channel_groups
from onnxprune.cli import main
from onnxprune.measure.verify import max_relative_error, run, zero_mask
from tests.conftest import CIFAR_MODELS, EXPORTERS

FIGURE = {"PA": "params", "FA": "flops", "MA": "memory_bytes"}
REPORT_KEYS = {
    "mode",
    "target",
    "seed",
    "step",
    "init",
    "criterion",
    "strategy",
    "round_to",
    "round_to_used",
    "before",
    "after",
    "iterations",
    "layers",
    "input_shapes",
    "pruned",
    "weights",
}


def keep_from_report(deps, report) -> dict:
    return deps.keep_from_layers({row["node"]: row["kept"] for row in report["layers"]})


@pytest.mark.parametrize("name", CIFAR_MODELS)
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("mode", ["PA", "FA", "MA"])
def test_shrink_meets_targets_and_oracle(zoo_model, name, exporter, mode):
    deps = channel_groups(zoo_model(name, exporter, "kept"))
    original = deps.mg.model  # loaded once; shrink copies a ModelProto it is given
    reference = run(original)[0]
    for target in (0.8, 0.5, 0.2):
        model, report = onnxprune.shrink(original, mode=mode, target=target, seed=3, init="keep")
        assert set(report) == REPORT_KEYS
        figure = FIGURE[mode]
        assert report["after"][figure] <= target * report["before"][figure]
        assert report["after"] == onnxprune.profile(model).totals  # report consistent with profile
        onnx.checker.check_model(model, full_check=True)
        got = run(model)[0]
        assert got.shape == reference.shape
        keep = keep_from_report(deps, report)
        assert keep, "nothing was pruned"
        assert max_relative_error(got, run(zero_mask(deps, keep))[0]) < 1e-5


def test_same_seed_same_bytes_other_seed_differs(zoo_model, tmp_path):
    path = str(zoo_model("mobilenetv2_cifar", "dynamo", "folded"))
    outs = []
    for i, seed in enumerate((7, 7, 8)):
        out = tmp_path / f"out{i}.onnx"
        assert main(["shrink", path, "--mode", "FA", "--target", "0.5", "--seed", str(seed), "-o", str(out)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_cli_report_and_default_output(zoo_model, tmp_path, capsys):
    source = tmp_path / "vgg.onnx"
    source.write_bytes(zoo_model("vgg16_cifar", "legacy", "kept").read_bytes())
    original = source.read_bytes()
    report_path = tmp_path / "report.json"
    assert main(["shrink", str(source), "--mode", "PA", "--target", "0.2", "--report", str(report_path)]) == 0
    out = tmp_path / "vgg.PA-0.2.onnx"
    assert out.exists() and source.read_bytes() == original
    report = json.loads(report_path.read_text())
    assert report["after"] == onnxprune.profile(out).totals
    assert report["after"]["params"] <= 0.2 * report["before"]["params"]
    for row in report["layers"]:
        assert row["kept"] == sorted(row["kept"]) and len(row["kept"]) == row["out_channels_after"]
    text = capsys.readouterr().out
    assert "→" in text and "params" in text


def test_budget_with_si_suffix(zoo_model, capsys):
    path = str(zoo_model("vgg16_cifar", "dynamo", "kept"))
    assert main(["shrink", path, "--mode", "PA", "--budget", "2.5M", "--json", "-o", "/tmp/onnxprune-budget.onnx"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["after"]["params"] <= 2_500_000 < report["before"]["params"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--mode", "XA", "--target", "0.5"], "--mode"),
        (["--mode", "PA", "--target", "0"], "--target"),
        (["--mode", "PA", "--target", "1"], "--target"),
        (["--mode", "PA", "--target", "-0.5"], "--target"),
        (["--mode", "PA", "--budget", "lots"], "--budget"),
        (["--mode", "PA", "--target", "0.5", "--criterion", "magic"], "--criterion"),
    ],
)
def test_bad_flags_exit_2(zoo_model, capsys, args, needle):
    assert main(["shrink", str(zoo_model("alexnet_cifar", "legacy", "folded")), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_output_equal_to_input_is_refused(zoo_model, capsys):
    path = str(zoo_model("alexnet_cifar", "legacy", "folded"))
    before = open(path, "rb").read()
    assert main(["shrink", path, "--mode", "PA", "--target", "0.5", "-o", path]) == 2
    assert "input" in capsys.readouterr().err and open(path, "rb").read() == before


def test_unreachable_target_names_the_lowest_figure(zoo_model, capsys):
    path = str(zoo_model("vgg16_cifar", "legacy", "folded"))
    assert main(["shrink", path, "--mode", "PA", "--target", "0.0001", "--min-channels", "8", "-o", "/tmp/x.onnx"]) == 2
    err = capsys.readouterr().err
    assert "lowest reachable params" in err


def test_round_to_and_min_channels(zoo_model):
    path = zoo_model("vgg16_cifar", "legacy", "folded")
    _, report = onnxprune.shrink(path, mode="FA", target=0.3, round_to=8, min_channels=16, init="keep")
    for row in report["layers"]:
        assert row["out_channels_after"] % 8 == 0 and row["out_channels_after"] >= 16


def test_l1_criterion_removes_smallest_channels(zoo_model):
    path = zoo_model("vgg16_cifar", "legacy", "folded")  # BN folded: a channel's L1 is its weights + bias
    deps = channel_groups(path)
    _, report = onnxprune.shrink(path, mode="PA", target=0.5, criterion="l1", init="keep")
    values = {i.name: onnx.numpy_helper.to_array(i) for i in deps.mg.model.graph.initializer}
    nodes = {n.name: n for n in deps.mg.graph.nodes}
    checked = 0
    for row in report["layers"]:
        node = nodes[row["node"]]
        if node.op != "Conv":
            continue
        weight, bias = values[node.inputs[1].name], values[node.inputs[2].name]
        norms = np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1) + np.abs(bias)
        removed = np.setdiff1d(np.arange(row["out_channels_before"]), row["kept"])
        assert norms[removed].max() <= norms[row["kept"]].min()
        checked += 1
    assert checked >= 3


def test_uniform_strategy_prunes_every_group_alike(zoo_model):
    path = zoo_model("vgg16_cifar", "dynamo", "folded")
    # exact counts: auto's multiples of 16 would move a 64-channel layer's ratio by up to 0.25
    _, report = onnxprune.shrink(path, mode="FA", target=0.5, strategy="uniform", init="keep", round_to=1)
    ratios = [r["out_channels_after"] / r["out_channels_before"] for r in report["layers"]]
    assert len(report["layers"]) == 15 and max(ratios) - min(ratios) < 0.05
    assert report["after"]["flops"] <= 0.5 * report["before"]["flops"]


def test_reinit_is_paper_initialisation(zoo_model):
    path = zoo_model("resnet50_cifar", "legacy", "kept")
    model, _ = onnxprune.shrink(path, mode="PA", target=0.5, init="reinit")
    values = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    assert np.all(values[bn.input[1]] == 1) and np.all(values[bn.input[2]] == 0)
    assert np.all(values[bn.input[3]] == 0) and np.all(values[bn.input[4]] == 1)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight = values[conv.input[1]]
    fan_in = np.prod(weight.shape[1:])
    assert abs(weight.std() - np.sqrt(2 / fan_in)) / np.sqrt(2 / fan_in) < 0.15


def test_shrink_prunes_constant_node_weights_and_names_unnamed_layers():
    from tests.synthetic_graphs import constant_weight_cnn

    original = constant_weight_cnn()
    deps = channel_groups(original)
    model, report = onnxprune.shrink(original, mode="FA", target=0.5, init="keep", seed=1)
    assert report["after"]["flops"] <= 0.5 * report["before"]["flops"]
    kept = {row["node"]: row["kept"] for row in report["layers"]}
    assert set(kept) <= {"conv1", "Conv#6"} and kept
    keep = {g.id: kept[g.roots[0].label] for g in deps.prunable if g.roots[0].label in kept}
    assert max_relative_error(run(model)[0], run(zero_mask(deps, keep))[0]) < 1e-5
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in original.graph.node]


def test_shrink_unshares_deduplicated_biases_and_says_so(tmp_path, capsys):
    from tests.analysis.test_groups import Untrained, export_folded

    path = tmp_path / "untrained.onnx"
    onnx.save(export_folded(Untrained(), trained=False), str(path))
    deps = channel_groups(str(path))
    model, report = onnxprune.shrink(str(path), mode="FA", target=0.5, init="keep", seed=0)
    assert report["unshared_constants"][0]["versions"] >= 2
    kept = {row["node"]: row["kept"] for row in report["layers"]}
    keep = {g.id: kept[g.roots[0].label] for g in deps.prunable if g.roots[0].label in kept}
    assert max_relative_error(run(model)[0], run(zero_mask(deps, keep))[0]) < 1e-5
    _, tied = onnxprune.shrink(str(path), mode="FA", target=0.5, init="keep", seed=0, keep_tied=True)
    assert "unshared_constants" not in tied
    assert (
        main(
            ["shrink", str(path), "--mode", "FA", "--target", "0.5", "--init", "keep", "-o", str(tmp_path / "out.onnx")]
        )
        == 0
    )
    assert "got their own copy" in capsys.readouterr().out


def test_keep_sets_from_the_report_follow_channel_classes():
    """cv1 of a C2f block is in two groups (its halves): the report's kept channels map back to classes."""
    from tests.analysis.test_groups import C2f
    from tests.analysis.test_property_graphs import export

    original = export(C2f().eval(), "legacy-fold")
    deps = channel_groups(original)
    model, report = onnxprune.shrink(original, mode="FA", target=0.5, init="keep", seed=2)
    keep = keep_from_report(deps, report)
    assert keep
    assert max_relative_error(run(model)[0], run(zero_mask(deps, keep))[0]) < 1e-5


def test_unreachable_advice_names_reinit_when_structural_groups_wait_for_it():
    """At --init keep, a group refused only for a structural coupling (a Softmax over channels) is
    prunable with --init reinit: the advice says so (probe finding 10); without one it does not."""
    from onnxprune.errors import UserError
    from tests.synthetic_graphs import GraphBuilder

    b = GraphBuilder()
    h = b.node("Softmax", [b.conv("x", 3, 8, "conv1", k=3)], axis=1)[0]
    model = b.model(b.conv(b.relu(b.conv(h, 8, 8, "conv2")), 8, 4, "head"))
    with pytest.raises(UserError, match=r"--init reinit \(1 group\(s\) are structural only"):
        onnxprune.shrink(model, mode="FA", target=0.3, init="keep")
    with pytest.raises(UserError, match="unreachable") as reinit:
        onnxprune.shrink(model, mode="FA", target=0.01, init="reinit")
    assert "--init reinit" not in str(reinit.value)
    plain = GraphBuilder()
    chain = plain.model(plain.conv(plain.relu(plain.conv("x", 3, 8, "conv1", k=3)), 8, 4, "head"))
    with pytest.raises(UserError, match="unreachable") as keep:
        onnxprune.shrink(chain, mode="FA", target=0.01, init="keep")
    assert "--init reinit" not in str(keep.value)


def test_unreachable_advice_names_only_flags_that_would_loosen():
    """--min-channels, --round-to and protection are advised only when set tighter than their loosest
    (probe round 2, F4: the advice told users already at 1 to lower them)."""
    from onnxprune.errors import UserError
    from tests.synthetic_graphs import GraphBuilder

    b = GraphBuilder()
    chain = b.model(b.conv(b.relu(b.conv("x", 3, 8, "conv1", k=3)), 8, 4, "head"))
    with pytest.raises(UserError, match="unreachable") as plain:
        onnxprune.shrink(chain, mode="FA", target=0.01, init="keep", round_to=1)
    assert "; raise --target" in str(plain.value) and "--min-channels" not in str(plain.value)
    assert "--round-to" not in str(plain.value) and "protect" not in str(plain.value)
    with pytest.raises(UserError, match="unreachable") as tight:
        onnxprune.shrink(chain, mode="FA", target=0.01, init="keep", min_channels=4, round_to=2, exclude=["conv1"])
    for flag in ("lower --min-channels", "lower --round-to", "protect fewer layers"):
        assert flag in str(tight.value)
