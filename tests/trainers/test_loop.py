"""Training loop, checkpoints/resume, the `train` and `pipeline` verbs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from onnxprune.cli import main  # noqa: E402
from onnxprune.errors import UserError  # noqa: E402
from trainers import loop, runstate  # noqa: E402
from trainers.convert import convert  # noqa: E402
from trainers.data import DEFAULT_CIFAR10, load_dataset  # noqa: E402
from trainers.loop import RECIPES, lr_at, resolve_config, train  # noqa: E402
from trainers.testing import dropout_model, export_torch, synthetic_dataset, tiny_classifier, write_cifar_pickles  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.onnx"
    onnx.save(export_torch(tiny_classifier(width=8), "legacy", keep_bn=True), path)
    return path


@pytest.fixture
def pickles(tmp_path) -> Path:
    return write_cifar_pickles(tmp_path / "data", per_batch=8, n_test=10)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("onnxprune: error:") and "\n" not in err and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not DEFAULT_CIFAR10.is_file(), reason="the shared CIFAR-10 zip is not here")
def test_tiny_net_learns_real_cifar_and_onnx_agrees(tiny_model, tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "small.onnx"
    onnx.save(export_torch(tiny_classifier(width=16), "legacy", keep_bn=True), model)
    out = tmp_path / "trained.onnx"
    result = train(
        model,
        "cifar10",
        epochs=2,
        limit_train=512,
        limit_test=500,
        batch_size=16,
        lr=0.05,
        augment=False,
        seed=0,
        threads=1,
        progress=False,
        output=out,
    )
    first, last = result.history
    assert last["train_loss"] < first["train_loss"] < np.log(10) + 0.05
    assert result.accuracy >= 0.20, result.history  # chance is 0.10
    assert result.onnx_agreement == 1.0
    lines = [json.loads(line) for line in Path(result.log_path).read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds", "images_per_s"} <= set(
        lines[0]
    )
    # the trained ONNX, fed as its metadata says, predicts what the torch module predicts
    trained = onnx.load(str(out))
    meta = {p.key: p.value for p in trained.metadata_props}
    mean, std = np.array(json.loads(meta["onnxprune.mean"])), np.array(json.loads(meta["onnxprune.std"]))
    data = load_dataset("cifar10", train_per_class=1, test_per_class=10)
    x = ((data.test_x.numpy() / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    session = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    ort_pred = session.run(None, {"input": x})[0].argmax(1)
    with torch.no_grad():
        torch_pred = convert(out).eval()(torch.from_numpy(x)).numpy().argmax(1)
    assert np.array_equal(ort_pred, torch_pred)
    assert (ort_pred == data.test_y.numpy()).mean() > 0.12


# -------------------------------------------------------------------------------- resume


class _Stop(Exception):
    pass


def test_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    source = tmp_path / "drop.onnx"
    onnx.save(dropout_model(), source)  # has Dropout: the global torch RNG must be restored too
    data = synthetic_dataset(n_train=40, n_test=20)
    common = dict(epochs=3, batch_size=8, lr=0.05, seed=3, threads=1, progress=False)

    whole = train(source, data, checkpoint=tmp_path / "a", log=tmp_path / "a.jsonl", **common)

    real_save = runstate.save_checkpoint

    def save_then_die(folder, state):
        real_save(folder, state)
        raise _Stop

    monkeypatch.setattr(runstate, "save_checkpoint", save_then_die)
    with pytest.raises(_Stop):
        train(source, data, checkpoint=tmp_path / "b", log=tmp_path / "b.jsonl", **common)
    monkeypatch.setattr(runstate, "save_checkpoint", real_save)
    resumed = train(
        source,
        data,
        checkpoint=tmp_path / "b",
        log=tmp_path / "b.jsonl",
        resume=True,
        output=tmp_path / "b.onnx",
        **common,
    )
    assert resumed.resumed_from_epoch == 1

    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 3
    assert resumed.accuracy == whole.accuracy


def test_resume_with_other_settings_is_refused(tmp_path):
    source = tmp_path / "drop.onnx"
    onnx.save(dropout_model(), source)
    data = synthetic_dataset(n_train=16, n_test=8)
    train(source, data, epochs=1, batch_size=8, threads=1, progress=False, checkpoint=tmp_path / "c")
    with pytest.raises(UserError, match="made with epochs=1"):
        train(source, data, epochs=2, batch_size=8, threads=1, progress=False, checkpoint=tmp_path / "c", resume=True)


# ------------------------------------------------------------------------------------ the CLI


def test_cli_train_json_on_pickled_cifar(tiny_model, pickles, tmp_path, capsys):
    out = tmp_path / "trained.onnx"
    rc = main(
        [
            "train",
            str(tiny_model),
            "--data",
            f"cifar10={pickles}",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "--optimizer",
            "adam",
            "--lr",
            "0.001",
            "--schedule",
            "cosine",
            "--quiet",
            "--json",
            "-o",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads(captured.out)  # stdout holds the JSON alone
    assert summary["config"]["optimizer"] == "adam" and summary["config"]["schedule"] == "cosine"
    assert summary["config"]["recipe"] == "cpu" and summary["epochs"] == 1
    assert 0.0 <= summary["accuracy"] <= 1.0 and summary["output_path"] == str(out)
    assert out.is_file() and Path(summary["log_path"]).is_file()
    assert onnx.load(str(out)).graph.output[0].name == "logits"


def test_cli_corrupt_checkpoint_is_one_line(tiny_model, pickles, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "last.pt").write_bytes(b"\x00garbage" * 10)
    rc = main(
        [
            "train",
            str(tiny_model),
            "--data",
            f"cifar10={pickles}",
            "--checkpoint",
            str(ckpt),
            "--resume",
            "-o",
            str(tmp_path / "t.onnx"),
        ]
    )
    assert rc == 2
    assert "checkpoint is unreadable" in one_line_error(capsys)
    assert not (tmp_path / "t.onnx").exists()


def test_cli_missing_dataset_is_one_line(tiny_model, tmp_path, capsys):
    missing = tmp_path / "no" / "cifar"
    rc = main(["train", str(tiny_model), "--data", f"cifar10={missing}", "-o", str(tmp_path / "t.onnx")])
    assert rc == 2
    assert str(missing) in one_line_error(capsys)


def test_cli_bad_flags_and_shapes(tiny_model, tmp_path, capsys):
    assert main(["train", str(tiny_model), "--optimizer", "lion", "-o", str(tmp_path / "t.onnx")]) == 2
    assert "--optimizer" in one_line_error(capsys)
    assert main(["train", str(tiny_model), "-o", str(tiny_model)]) == 2
    assert "input model" in one_line_error(capsys)
    small = tmp_path / "drop.onnx"
    onnx.save(dropout_model(size=8), small)  # takes 8x8 images; CIFAR has 32x32
    pickles = write_cifar_pickles(tmp_path / "p")
    assert main(["train", str(small), "--data", f"cifar10={pickles}", "-o", str(tmp_path / "t.onnx")]) == 2
    assert "3x8x8" in one_line_error(capsys)


def test_cli_without_torch_says_what_to_install(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["train", str(tiny_model), "-o", str(tmp_path / "t.onnx")]) == 2
    assert "onnxprune[train]" in one_line_error(capsys)


def test_core_cli_does_not_import_torch():
    code = (
        "import sys; from onnxprune.cli import main; rc = main(['--help']); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("0")


# ------------------------------------------------------------------------------ configuration


def test_recipes_and_overrides():
    paper = resolve_config("paper")
    assert (paper["optimizer"], paper["lr"], paper["batch_size"], paper["epochs"]) == ("rmsprop", 1e-3, 128, 150)
    cpu = resolve_config("cpu", epochs=1, lr=0.2, limit_train=0)
    assert cpu["epochs"] == 1 and cpu["lr"] == 0.2 and cpu["limit_train"] is None
    assert cpu["optimizer"] == RECIPES["cpu"]["optimizer"]
    for bad in (
        dict(recipe="fast"),
        dict(optimizer="lion"),
        dict(schedule="step"),
        dict(epochs=0),
        dict(lr=-1.0),
        dict(batch_size=0),
        dict(limit_test=-5),
    ):
        recipe = bad.pop("recipe", "cpu")
        with pytest.raises(UserError):
            resolve_config(recipe, **bad)


def test_learning_rate_schedules():
    total = 100
    assert lr_at(0, total, 0.1, "none") == lr_at(99, total, 0.1, "none") == 0.1
    cosine = [lr_at(s, total, 0.1, "cosine") for s in range(total)]
    assert cosine[0] == pytest.approx(0.1) and all(a >= b for a, b in zip(cosine, cosine[1:])) and cosine[-1] < 1e-3
    one = [lr_at(s, total, 0.1, "onecycle") for s in range(total)]
    peak = int(np.argmax(one))
    assert 20 <= peak <= 30 and one[0] < 0.01 and one[-1] < 1e-3 and max(one) == pytest.approx(0.1, rel=0.05)


def test_training_is_deterministic_given_a_seed(tmp_path):
    source = tmp_path / "drop.onnx"
    onnx.save(dropout_model(), source)
    data = synthetic_dataset(n_train=24, n_test=8)
    runs = [train(source, data, epochs=1, batch_size=8, seed=7, threads=1, progress=False).history[0] for _ in range(2)]
    other = train(source, data, epochs=1, batch_size=8, seed=8, threads=1, progress=False).history[0]
    assert runs[0]["train_loss"] == runs[1]["train_loss"]
    assert other["train_loss"] != runs[0]["train_loss"]


# ------------------------------------------------------------------------------- the pipeline

try:
    from onnxprune import shrink as _shrink  # noqa: F401

    HAVE_SHRINK = callable(_shrink)
except ImportError:
    HAVE_SHRINK = False


@pytest.mark.skipif(not HAVE_SHRINK, reason="onnxprune.shrink is not there yet")
def test_pipeline_scratch_cli(tiny_model, pickles, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(
        [
            "pipeline",
            "scratch",
            str(tiny_model),
            "--mode",
            "PA",
            "--target",
            "0.5",
            "--data",
            f"cifar10={pickles}",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "-q",
            "--json",
            "-o",
            str(run),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    payload = json.loads(captured.out)
    saved = json.loads((run / "pipeline.json").read_text())
    assert saved["pipeline"] == "scratch" and saved["mode"] == "PA"
    assert saved["complexity"]["params"]["after"] <= 0.5 * saved["complexity"]["params"]["before"]
    assert set(saved["seconds"]) == {"shrink", "train", "total"} and 0 <= saved["accuracy"] <= 1
    assert payload["accuracy"] == saved["accuracy"]
    for name in ("pruned.onnx", "trained.onnx", "train.jsonl"):
        assert (run / name).is_file()


@pytest.mark.skipif(not HAVE_SHRINK, reason="onnxprune.shrink is not there yet")
def test_pipeline_finetune(tiny_model, pickles, tmp_path):
    from onnxprune.cli.commands.pipeline import run_finetune

    payload = run_finetune(
        str(tiny_model),
        str(tmp_path / "ft"),
        mode="FA",
        target=0.5,
        finetune_epochs=1,
        progress=False,
        data=f"cifar10={pickles}",
        epochs=1,
        batch_size=8,
        threads=1,
    )
    saved = json.loads((tmp_path / "ft" / "pipeline.json").read_text())
    assert saved == {k: v for k, v in payload.items() if k != "result_path"}
    assert saved["complexity"]["flops"]["after"] <= 0.5 * saved["complexity"]["flops"]["before"]
    assert set(saved["seconds"]) == {"train_baseline", "shrink", "evaluate_pruned", "finetune", "total"}
    assert saved["finetune"]["config"]["lr"] == pytest.approx(RECIPES["cpu"]["lr"] / 10)
    assert {"baseline_accuracy", "pruned_accuracy_before_finetune", "accuracy"} <= set(saved)
    baseline = onnx.load(str(tmp_path / "ft" / "baseline.onnx"))
    assert "BatchNormalization" in {n.op_type for n in baseline.graph.node}  # kept for the fine-tune


def test_pipeline_bad_data_fails_before_any_stage(tiny_model, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(
        [
            "pipeline",
            "scratch",
            str(tiny_model),
            "--mode",
            "PA",
            "--target",
            "0.5",
            "--data",
            f"cifar10={tmp_path / 'missing'}",
            "-o",
            str(run),
        ]
    )
    assert rc == 2 and "does not exist" in one_line_error(capsys)
    assert not run.exists()


# ------------------------------------------------------------------ the model is checked before the data


def _no_data(*_args, **_kwargs):
    raise AssertionError("the dataset was decoded before the model was checked")


def test_model_checked_before_decoding_data(tmp_path, pickles, monkeypatch, capsys):
    monkeypatch.setattr(loop, "_load_data", _no_data)
    hundred = tmp_path / "hundred.onnx"
    onnx.save(export_torch(tiny_classifier(width=8, classes=100), "legacy", keep_bn=True), hundred)
    rc = main(["train", str(hundred), "-o", str(tmp_path / "t.onnx"), "--data", f"cifar10={pickles}", "--quiet"])
    assert rc == 2 and "100 outputs, the dataset 10 classes" in one_line_error(capsys)
    exotic = dropout_model(size=32)
    exotic.graph.node[2].op_type = "Shrink"  # an op the converter lacks (onnxruntime runs it)
    bad = tmp_path / "exotic.onnx"
    onnx.save(exotic, bad)
    rc = main(["train", str(bad), "-o", str(tmp_path / "t.onnx"), "--data", f"cifar10={pickles}", "--quiet"])
    err = one_line_error(capsys)
    assert rc == 2 and "'relu' (op Shrink) is not supported" in err
    assert not (tmp_path / "t.onnx").exists() and not (tmp_path / "t.train.jsonl").exists()


def test_interrupted_train_leaves_no_empty_log(tiny_model, pickles, tmp_path, monkeypatch):
    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "evaluate", interrupt)  # stopped in epoch 1, after the training pass
    out = tmp_path / "trained.onnx"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model, f"cifar10={pickles}", epochs=2, batch_size=8, threads=1, progress=False, output=out)
    assert not out.exists() and not out.with_suffix(".train.jsonl").exists()
