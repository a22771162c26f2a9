"""`--round-to auto`, the default: kernel-friendly channel multiples per layer kind; the budget still
holds; `--round-to 1` keeps the paper's exact counts; an unreachable target falls back to exact."""

from __future__ import annotations

import importlib
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.analysis.complexity import build_layers
from onnxprune.analysis.groups import Tracer
from onnxprune.cli import main
from onnxprune.errors import UserError
from onnxprune.prune.rounding import AUTO, KIND_MULTIPLES, group_multiples, parse_round_to, unbiased_count
from onnxprune.read.graph import load_graph

FIGURE = {"PA": "params", "FA": "flops", "MA": "memory_bytes"}


def two_convs(path, mid: int = 32) -> str:
    """Conv 3->mid 3x3, Relu, Conv mid->4 3x3 on 1x3x8x8: one prunable group of `mid` channels."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
        for n, s in (("w1", (mid, 3, 3, 3)), ("w2", (4, mid, 3, 3)))
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1] * 4),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", pads=[1] * 4),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def small_and_large(path) -> str:
    """A 32-channel group at 32x32 ("small") feeding a 256-channel group at 8x8 ("large")."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
        for n, s in (("w1", (32, 3, 3, 3)), ("w2", (256, 32, 3, 3)), ("w3", (4, 256, 3, 3)))
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="small", pads=[1] * 4),
        helper.make_node("Conv", ["a", "w2"], ["b"], name="large", pads=[1] * 4, strides=[4, 4]),
        helper.make_node("Conv", ["b", "w3"], ["y"], name="head", pads=[1] * 4),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def multiples_of(path) -> tuple:
    mg = load_graph(str(path))
    deps = Tracer(mg).run()
    return deps, group_multiples(deps, build_layers(mg), AUTO)


def test_auto_is_the_default_and_keeps_kernel_multiples(zoo_model):
    path = zoo_model("mobilenetv2_cifar", "legacy", "folded")
    _, report = onnxprune.shrink(path, mode="FA", target=0.5, init="keep")
    assert report["round_to"] == report["round_to_used"] == "auto"
    convs = [r for r in report["layers"] if r["op"] == "Conv" and r["out_channels_before"] >= 32]
    assert convs and all(r["out_channels_after"] % KIND_MULTIPLES["conv"] == 0 for r in convs)


def test_round_to_1_keeps_the_papers_exact_counts(zoo_model):
    path = zoo_model("mobilenetv2_cifar", "legacy", "folded")
    _, exact = onnxprune.shrink(path, mode="FA", target=0.5, init="keep", round_to=1)
    assert exact["round_to_used"] == 1
    assert any(r["out_channels_after"] % 2 for r in exact["layers"])  # free counts: some are odd
    _, from_text = onnxprune.shrink(path, mode="FA", target=0.5, init="keep", round_to="1")
    assert from_text["layers"] == exact["layers"]


@pytest.mark.parametrize("name", ["vgg16_cifar", "resnet50_cifar", "mobilenetv2_cifar"])
@pytest.mark.parametrize("mode", ["PA", "FA", "MA"])
def test_auto_rounding_never_overshoots_the_target(zoo_model, name, mode):
    path = zoo_model(name, "legacy", "folded")
    for target in (0.7, 0.3):
        _, report = onnxprune.shrink(path, mode=mode, target=target, init="keep")
        assert report["after"][FIGURE[mode]] <= target * report["before"][FIGURE[mode]]


def test_uniform_strategy_rounds_too(zoo_model):
    path = zoo_model("vgg16_cifar", "legacy", "folded")
    _, report = onnxprune.shrink(path, mode="FA", target=0.5, strategy="uniform", init="keep")
    assert report["after"]["flops"] <= 0.5 * report["before"]["flops"]
    assert all(r["out_channels_after"] % 16 == 0 for r in report["layers"] if r["op"] == "Conv")


def test_group_multiples_by_kind_and_size(tmp_path):
    deps, multiples = multiples_of(two_convs(tmp_path / "m32.onnx", 32))
    assert list(multiples.values()) == [16]
    # a group holding one multiple keeps it (24 -> 16 only; 16 stays whole): 8 channels ran slower per MAC
    for mid in (24, 16):
        _, multiples = multiples_of(two_convs(tmp_path / f"m{mid}.onnx", mid))
        assert list(multiples.values()) == [16]
    _, multiples = multiples_of(two_convs(tmp_path / "m12.onnx", 12))  # smaller than 16: halves until it holds one
    assert list(multiples.values()) == [8]
    _, multiples = multiples_of(two_convs(tmp_path / "m3.onnx", 3))
    assert list(multiples.values()) == [2]
    assert group_multiples(deps, [], 4) == {g.id: 4 for g in deps.prunable}


def test_a_16_channel_group_stays_whole_under_auto(tmp_path):
    path = two_convs(tmp_path / "m16.onnx", 16)
    _, report = onnxprune.shrink(path, mode="FA", target=0.9, init="keep")
    assert report["round_to_used"] == 1  # unreachable at 16: the fallback to exact counts, said in the report
    _, report = onnxprune.shrink(two_convs(tmp_path / "m24.onnx", 24), mode="FA", target=0.9, init="keep")
    assert report["round_to_used"] == "auto" and report["layers"][0]["out_channels_after"] == 16


@pytest.mark.parametrize(
    "current,step,floor,multiple,values",
    [
        (64, 0.1, 1, 16, {48, 64}),  # exact 58: 48 with p 6/16, else the group stays whole this draw
        (512, 0.1, 1, 16, {448, 464}),  # exact 461
        (48, 0.5, 1, 16, {16, 32}),  # exact 24
        (32, 0.1, 16, 16, {16, 32}),  # the floor is a multiple
    ],
)
def test_unbiased_count_keeps_the_papers_expected_step(current, step, floor, multiple, values):
    rng = np.random.default_rng(0)
    counts = [unbiased_count(current, step, floor, multiple, rng) for _ in range(4000)]
    assert set(counts) == values
    exact = max(current - max(1, int(step * current)), floor)
    assert abs(np.mean(counts) - exact) < 1.6  # rounding down alone: 8-13 channels off


def test_unbiased_count_draws_nothing_on_exact_counts():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert unbiased_count(64, 0.1, 1, 1, rng) == 58  # --round-to 1: the paper's count
    assert unbiased_count(64, 0.25, 1, 16, rng) == 48  # already a multiple
    assert rng.bit_generator.state == state


def test_round_to_1_never_rounds_at_random(zoo_model, monkeypatch):
    """The paper's path draws exactly the random numbers it drew before rounding existed."""
    shrink_module = importlib.import_module("onnxprune.prune.shrink")  # the package's `shrink` is the function

    def refuse(*args):
        raise AssertionError("unbiased rounding on the exact path")

    monkeypatch.setattr(shrink_module, "unbiased_count", refuse)
    _, report = onnxprune.shrink(zoo_model("vgg16_cifar", "legacy", "folded"), mode="FA", target=0.5, round_to=1)
    assert report["round_to_used"] == 1 and report["after"]["flops"] <= 0.5 * report["before"]["flops"]


def test_auto_cuts_small_groups_as_much_as_the_paper(tmp_path):
    """Always rounding down took 16 of 32 channels whenever the small group was drawn (kept 0.59 on
    average over seeds against the paper's 0.85); unbiased rounding keeps the paper's share."""
    path = small_and_large(tmp_path / "sl.onnx")
    kept = {}
    for round_to in (AUTO, 1):
        fractions = []
        for seed in range(40):
            _, report = onnxprune.shrink(path, mode="FA", target=0.5, seed=seed, round_to=round_to, init="keep")
            rows = {row["node"]: row["out_channels_after"] for row in report["layers"]}
            fractions.append(rows.get("small", 32) / 32)
            assert report["after"]["flops"] <= 0.5 * report["before"]["flops"]
        kept[round_to] = np.mean(fractions)
    assert abs(kept[AUTO] - kept[1]) < 0.08, kept


def test_unreachable_with_multiples_falls_back_to_exact(tmp_path, capsys):
    path = two_convs(tmp_path / "m.onnx", 32)
    _, report = onnxprune.shrink(path, mode="FA", target=0.6, init="keep")
    assert report["round_to_used"] == "auto" and report["layers"][0]["out_channels_after"] == 16
    # at 16 channels FLOPs are half: 0.2 needs exact counts
    _, report = onnxprune.shrink(path, mode="FA", target=0.2, init="keep")
    assert report["round_to"] == "auto" and report["round_to_used"] == 1
    assert report["after"]["flops"] <= 0.2 * report["before"]["flops"]
    assert main(["shrink", path, "--mode", "FA", "--target", "0.2", "-o", str(tmp_path / "o.onnx")]) == 0
    assert "exact channel counts" in capsys.readouterr().out
    with pytest.raises(UserError, match="unreachable"):  # exact asked: no fallback, the usual refusal
        onnxprune.shrink(path, mode="FA", target=0.2, round_to=16)


def test_a_landing_far_under_the_target_is_said(tmp_path, capsys):
    """32 -> 16 channels is the only step auto allows: half the FLOPs where 0.6 was asked. The note
    names the flag that keeps the capacity; a landing near the target, or exact counts, say nothing."""
    path = two_convs(tmp_path / "m.onnx", 32)
    out = str(tmp_path / "o.onnx")
    assert main(["shrink", path, "--mode", "FA", "--target", "0.6", "-o", out]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "landed at 50.0% of the FLOPs for a target of 60.0%" in printed and "--round-to 1" in printed
    for args in (["--target", "0.52"], ["--target", "0.6", "--round-to", "1"]):
        assert main(["shrink", path, "--mode", "FA", *args, "-o", out]) == 0
        assert "landed at" not in capsys.readouterr().out


def test_round_to_cli_values(tmp_path, capsys):
    path = two_convs(tmp_path / "m.onnx", 32)
    out = tmp_path / "o.onnx"
    assert main(["shrink", path, "--mode", "FA", "--target", "0.5", "--round-to", "1", "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["round_to_used"] == 1
    for bad in ("0", "x", "-8"):
        assert main(["shrink", path, "--mode", "FA", "--target", "0.5", "--round-to", bad, "-o", str(out)]) == 2
        assert "--round-to" in capsys.readouterr().err


def test_parse_round_to():
    assert parse_round_to("AUTO") == AUTO and parse_round_to("8") == 8 and parse_round_to(4) == 4
    with pytest.raises(UserError):
        parse_round_to(0)
