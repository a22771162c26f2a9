"""Mode LA: measured per-node latency drives the draw; profiles from another device load."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onnxprune
from onnxprune.analysis.complexity import build_layers
from onnxprune.analysis.groups import channel_groups
from onnxprune.analysis.latency import latency_terms, measure_node_latency
from onnxprune.cli import main
from onnxprune.prune.shrink import Bookkeeper


@pytest.fixture(scope="module")
def mobilenet(zoo_model):
    return zoo_model("mobilenetv2_cifar", "legacy", "folded")


def test_every_node_is_timed(mobilenet):
    deps = channel_groups(mobilenet)
    times = measure_node_latency(deps.mg.model, runs=3)
    assert {n.name for n in deps.mg.nodes if n.op != "Constant"} <= set(times) | {""}
    assert all(t >= 0 for t in times.values()) and sum(times.values()) > 0


def test_terms_scale_with_channels(mobilenet):
    deps = channel_groups(mobilenet)
    layers = build_layers(deps.mg)
    times = {n.name: 100.0 for n in deps.mg.nodes}
    book = Bookkeeper(deps, latency_terms(deps, layers, times))
    before = book.total(0)
    group = deps.prunable[0]
    book.remove(group.id, np.arange(group.size // 2))
    assert book.total(0) < before
    book.reset()
    assert book.total(0) == pytest.approx(before)


def test_la_shrink_from_a_device_profile(mobilenet, tmp_path, capsys):
    profile_path = tmp_path / "board.json"
    assert main(["latency", str(mobilenet), "--runs", "3", "-o", str(profile_path)]) == 0
    capsys.readouterr()
    # pretend the board is slow on one layer: LA must prune where the time is
    payload = json.loads(profile_path.read_text())
    slow = max(payload["nodes"], key=lambda n: payload["nodes"][n] if n.endswith("Conv") else 0)
    payload["nodes"][slow] *= 50
    profile_path.write_text(json.dumps(payload))
    out = tmp_path / "la.onnx"
    assert (
        main(
            [
                "shrink",
                str(mobilenet),
                "--mode",
                "LA",
                "--target",
                "0.5",
                "--latency-profile",
                str(profile_path),
                "-o",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    latency = report["latency_us"]
    assert latency["after_estimated"] <= 0.5 * latency["before_measured"]
    assert any(row["node"] == slow for row in report["layers"])


def test_bad_latency_profile_exit_2(mobilenet, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert (
        main(
            [
                "shrink",
                str(mobilenet),
                "--mode",
                "LA",
                "--target",
                "0.5",
                "--latency-profile",
                str(bad),
                "-o",
                str(tmp_path / "x.onnx"),
            ]
        )
        == 2
    )
    assert "latency profile" in capsys.readouterr().err
    assert (
        main(
            [
                "shrink",
                str(mobilenet),
                "--mode",
                "PA",
                "--target",
                "0.5",
                "--latency-profile",
                str(bad),
                "-o",
                str(tmp_path / "x.onnx"),
            ]
        )
        == 2
    )


def test_la_api_measures_on_this_machine(mobilenet):
    _, report = onnxprune.shrink(mobilenet, mode="LA", target=0.6, init="keep")
    assert report["latency_us"]["after_estimated"] <= 0.6 * report["latency_us"]["before_measured"]


# ------------------------------------------------------------------ issue 16 item 9: the latency verb


def _save(model, path):
    import onnx

    onnx.save(model, str(path))
    return path


def _one_line(rc, err, *needles):
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_latency_refuses_symbolic_spatial_dims_without_input_shape(tmp_path, capsys):
    from benchmarks.fuzz import symbolic_net

    path = _save(symbolic_net(), tmp_path / "sym.onnx")
    rc = main(["latency", str(path), "--json"])
    _, err = capsys.readouterr()
    _one_line(rc, err, "symbolic dimension 2", "--input-shape input=1x3xHxW")
    rc = main(["latency", str(path), "--json", "--runs", "2", "--input-shape", "input=1x3x12x12"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert json.loads(out)["nodes"]


def _int_input_net():
    """An int32 token input gathered into float features, then a Conv: a float feed would not run."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((16, 3 * 4 * 4)).astype(np.float32), "table"
    )
    shape = numpy_helper.from_array(np.array([1, 3, 4, 4], np.int64), "shape")
    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["rows"], name="embed"),
        helper.make_node("Reshape", ["rows", "shape"], ["x"], name="reshape"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    graph = helper.make_graph(
        nodes,
        "ints",
        [helper.make_tensor_value_info("ids", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [table, shape, weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def test_latency_feeds_each_input_its_own_dtype(tmp_path, capsys):
    path = _save(_int_input_net(), tmp_path / "ints.onnx")
    rc = main(["latency", str(path), "--runs", "2", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert {"embed", "conv"} <= set(json.loads(out)["nodes"])


def _concat_net():
    """Concat of the input with a fixed 8x8 constant: runs only at 8x8 (YOLO-style failure)."""
    from onnx import TensorProto, helper, numpy_helper

    grid = numpy_helper.from_array(np.zeros((1, 1, 8, 8), np.float32), "grid")
    graph = helper.make_graph(
        [helper.make_node("Concat", ["input", "grid"], ["y"], name="head/cat", axis=1)],
        "cat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, "H", "W"])],
        [grid],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_latency_turns_an_onnxruntime_failure_into_one_line(tmp_path, capsys):
    path = _save(_concat_net(), tmp_path / "cat.onnx")
    rc = main(["latency", str(path), "--input-shape", "input=1x3x16x16"])
    _, err = capsys.readouterr()
    _one_line(rc, err, "'head/cat'", "Concat", "input 1x3x16x16")
    rc = main(["latency", str(path), "--input-shape", "input=1x3x8x8", "--runs", "1", "--json"])
    assert rc == 0, capsys.readouterr().err


def test_unnamed_nodes_are_timed_apart_and_drive_la():
    """onnxruntime's profiler keys by node name: unnamed nodes (paddle2onnx) are timed as op#index,
    each on its own, and mode LA finds the unnamed conv's time again."""
    from tests.synthetic_graphs import constant_weight_cnn

    model = constant_weight_cnn()
    deps = channel_groups(model)
    times = measure_node_latency(model, runs=2)
    assert "Conv#6" in times and "" not in times
    terms = latency_terms(deps, build_layers(deps.mg), times)
    assert any(t.node == "Conv#6" and t.layer is not None and t.time_us > 0 for t in terms)
    assert [n.name for n in model.graph.node].count("") > 1  # the user's graph keeps its empty names
