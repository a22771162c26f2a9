"""benchmarks/paper_latency.py: a run's network rebuilt exactly (or refused), and benched in turn."""

from __future__ import annotations

import pytest

from benchmarks.paper_latency import NotRebuilt, measure, rebuild
from onnxprune import shrink
from onnxprune.analysis.complexity import profile
from onnxprune.read.io import load_model
from onnxprune.sweep.grid import file_fingerprint
from tests.tiny_models import conv_model


@pytest.fixture(scope="module")
def vgg_run(zoo_dir):
    model = zoo_dir / "vgg16_cifar.legacy.kept.onnx"
    _, report = shrink(load_model(model), mode="FA", target=0.5, seed=3, step=0.1, init="reinit")
    row = {
        "name": "FA-0.5",
        "mode": "FA",
        "target": 0.5,
        "shrink": {"after": dict(report["after"])},
        "settings": {"model_sha": file_fingerprint(model), "seed": 3, "step": 0.1},
    }
    return model, row


def test_a_pruned_run_is_rebuilt_with_its_recorded_size(vgg_run, tmp_path):
    model, row = vgg_run
    rebuilt = rebuild(row, model, tmp_path)
    assert rebuilt.parent == tmp_path
    assert profile(rebuilt).totals["flops"] == row["shrink"]["after"]["flops"]
    assert rebuild({**row, "mode": None, "name": "baseline"}, model, tmp_path) == model


def test_a_run_that_does_not_rebuild_exactly_is_refused(vgg_run, tmp_path):
    model, row = vgg_run
    other_seed = {**row, "settings": {**row["settings"], "seed": 4}}
    with pytest.raises(NotRebuilt, match="recorded"):
        rebuild(other_seed, model, tmp_path)
    with pytest.raises(NotRebuilt, match="not the model the run started from"):
        rebuild({**row, "settings": {**row["settings"], "model_sha": "0" * 16}}, model, tmp_path)


def test_models_are_benched_in_turn_every_round(tmp_path):
    models = {"small": conv_model(tmp_path / "a.onnx", cout=4), "big": conv_model(tmp_path / "b.onnx", cout=64)}
    measured = measure(models, rounds=3, runs=5)
    assert set(measured) == {"small", "big"}
    for value in measured.values():
        assert len(value["round_medians_ms"]) == 3
        assert sorted(value["round_medians_ms"])[1] == value["latency_ms"] > 0


def test_no_runs_is_refused_in_one_line(tmp_path, capsys):
    from benchmarks.paper_latency import main

    assert main(["--runs", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "absent").exists()
