"""The divergence guard (trainers/guard.py): a run that did not learn exits 2 and writes nothing."""

from __future__ import annotations

import json
import math

import onnx
import pytest

torch = pytest.importorskip("torch")

from onnxprune.cli import main  # noqa: E402
from trainers.guard import MIN_STEPS, uninformed, verdict  # noqa: E402
from trainers.testing import export_torch, folded_cnn, tiny_classifier, write_cifar_pickles, write_image_folder  # noqa: E402


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def setup(tmp_path):
    folder = write_image_folder(tmp_path / "images", per_class=60, n_test=10, size=16)
    model = tmp_path / "model.onnx"
    torch.manual_seed(0)
    onnx.save(
        export_torch(tiny_classifier(bn=True, width=8, classes=3), "legacy", keep_bn=True, shape=(1, 3, 16, 16)), model
    )
    return model, folder


def test_diverging_lr_exits_2_and_writes_nothing(setup, tmp_path, capsys):
    model, folder = setup
    out = tmp_path / "out" / "trained.onnx"
    out.parent.mkdir()
    argv = [
        "train",
        str(model),
        "-o",
        str(out),
        "--data",
        f"folder={folder}",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "1e6",
        "--schedule",
        "none",
        "--quiet",
        "--threads",
        "1",
        "--json",
    ]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("onnxprune: error: training diverged") and "\n" not in err and "--lr" in err
    assert json.loads(captured.out)["verdict"]["status"] == "diverged"
    assert list(out.parent.iterdir()) == []  # no model, no log


def test_uninformed_loss_exits_2_unless_no_guard(tmp_path, capsys):
    # random images with random labels: nothing to learn, so the first epoch ends at ln(10)
    pickles = write_cifar_pickles(tmp_path / "data", per_batch=40, n_test=40)
    model = tmp_path / "folded.onnx"
    onnx.save(folded_cnn(size=32), model)
    out = tmp_path / "trained.onnx"
    argv = [
        "train",
        str(model),
        "-o",
        str(out),
        "--data",
        f"cifar10={pickles}",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--norm",
        "none",
        "--quiet",
        "--threads",
        "1",
        "--json",
    ]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "did not learn" in captured.err and "--norm insert" in captured.err
    assert json.loads(captured.out)["verdict"]["status"] == "did not learn"
    assert not out.exists() and not out.with_suffix(".train.jsonl").exists()
    assert main(argv + ["--no-guard"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == {
        "status": "did not learn",
        "guard": False,
        "epoch": 1,
        "train_loss": result["history"][0]["train_loss_tail"],
        "uninformed_loss": round(math.log(10), 6),
    }
    assert onnx.load(str(out)).metadata_props  # written, and says so
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props}["onnxprune.verdict"] == "did not learn"


def test_uninformed_level_tolerance():
    level = math.log(10)
    assert uninformed(level, 0.10, 10) and uninformed(0.985 * level, 0.12, 10)
    assert not uninformed(0.97 * level, 0.10, 10)  # 3 % below ln(C): learning
    assert not uninformed(level, 0.20, 10)  # loss high but accuracy twice chance: learning
    short = [{"epoch": 1, "train_loss": level, "train_loss_tail": level, "test_acc": 0.1, "steps": MIN_STEPS - 1}]
    assert verdict(short, 10, True)["status"] == "not judged"
    assert verdict([dict(short[0], steps=MIN_STEPS)], 10, True)["status"] == "did not learn"


def test_bad_norm_refused_before_any_work(setup, tmp_path, capsys, monkeypatch):
    from trainers import loop

    monkeypatch.setattr(loop, "convert", lambda *a, **k: (_ for _ in ()).throw(AssertionError("converted")))
    model, folder = setup
    assert (
        main(["train", str(model), "-o", str(tmp_path / "t.onnx"), "--data", f"folder={folder}", "--norm", "maybe"])
        == 2
    )
    assert "--norm 'maybe': expected one of auto, insert, none" in capsys.readouterr().err
