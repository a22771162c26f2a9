"""Mode LA: measured per-node latency drives the draw; profiles from another device load."""
from __future__ import annotations

import json

import numpy as np
import pytest

import onnxprune
from onnxprune.cli import main
from onnxprune.complexity import build_layers
from onnxprune.groups import channel_groups
from onnxprune.latency import latency_terms, measure_node_latency
from onnxprune.shrink import Bookkeeper


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
    assert main(["shrink", str(mobilenet), "--mode", "LA", "--target", "0.5", "--latency-profile",
                 str(profile_path), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    latency = report["latency_us"]
    assert latency["after_estimated"] <= 0.5 * latency["before_measured"]
    assert any(row["node"] == slow for row in report["layers"])


def test_bad_latency_profile_exit_2(mobilenet, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["shrink", str(mobilenet), "--mode", "LA", "--target", "0.5", "--latency-profile", str(bad),
                 "-o", str(tmp_path / "x.onnx")]) == 2
    assert "latency profile" in capsys.readouterr().err
    assert main(["shrink", str(mobilenet), "--mode", "PA", "--target", "0.5", "--latency-profile", str(bad),
                 "-o", str(tmp_path / "x.onnx")]) == 2


def test_la_api_measures_on_this_machine(mobilenet):
    _, report = onnxprune.shrink(mobilenet, mode="LA", target=0.6, init="keep")
    assert report["latency_us"]["after_estimated"] <= 0.6 * report["latency_us"]["before_measured"]
