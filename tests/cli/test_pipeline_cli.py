"""`pipeline scratch|finetune`: --input-shape, --seed, the run folder checked first, file modes,
literal names in the printed tables."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import onnx
import pytest

torch = pytest.importorskip("torch")

from onnxprune.cli import main  # noqa: E402
from onnxprune.read.shapes import input_shape_hint  # noqa: E402
from tests.trainers.test_cli import one_line_error, symbolic_hw_model  # noqa: E402
from trainers.testing import export_torch, tiny_classifier  # noqa: E402


@pytest.fixture
def model(tmp_path) -> Path:
    return symbolic_hw_model(tmp_path / "sym.onnx")


def _scratch(model, out, *extra):
    return main(
        [
            "pipeline",
            "scratch",
            str(model),
            "--mode",
            "PA",
            "--target",
            "0.5",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "-q",
            "-o",
            str(out),
            *map(str, extra),
        ]
    )


def test_scratch_with_input_shape_on_symbolic_hw(model, pickles, tmp_path, capsys):
    name = onnx.load(str(model)).graph.input[0].name
    rc = _scratch(
        model, tmp_path / "run", "--data", f"cifar10={pickles}", "--input-shape", f"{name}=1x3x32x32", "--json"
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    saved = json.loads((tmp_path / "run" / "pipeline.json").read_text())
    assert saved["complexity"]["params"]["after"] <= 0.5 * saved["complexity"]["params"]["before"]
    assert (tmp_path / "run" / "trained.onnx").is_file()
    assert saved["shrink"]["round_to"] == "auto"


def test_round_to_reaches_the_pipelines_shrink(model, pickles, tmp_path, capsys):
    """shrink's --round-to in a pipeline: the report echoes what shrink itself parsed and used."""
    name = onnx.load(str(model)).graph.input[0].name
    shape = f"{name}=1x3x32x32"
    rc = _scratch(model, tmp_path / "run", "--data", f"cifar10={pickles}", "--input-shape", shape, "--round-to", "1")
    assert rc == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "run" / "pipeline.json").read_text())
    assert saved["shrink"]["round_to"] == saved["shrink"]["round_to_used"] == 1


@pytest.mark.parametrize("verb", ["scratch", "finetune"])
def test_symbolic_hw_without_input_shape_names_the_hint(verb, model, pickles, tmp_path, capsys):
    hint = input_shape_hint(onnx.load(str(model)).graph.input[0])
    rc = main(
        [
            "pipeline",
            verb,
            str(model),
            "--mode",
            "PA",
            "--target",
            "0.5",
            "--data",
            f"cifar10={pickles}",
            "-q",
            "-o",
            str(tmp_path / "run"),
        ]
        + (["--finetune-epochs", "1"] if verb == "finetune" else [])
    )
    one_line_error(rc, capsys, f"--input-shape {hint}")
    assert not (tmp_path / "run").exists()


def test_negative_seed_is_a_usage_error(model, tmp_path, capsys):
    rc = _scratch(model, tmp_path / "run", "--seed", "-3")
    assert rc == 2 and "--seed" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("verb", ["scratch", "finetune", "distill"])
def test_bad_round_to_is_a_usage_error_before_any_work(verb, model, tmp_path, capsys):
    extra = ["--finetune-epochs", "1"] if verb == "finetune" else []
    args = ["pipeline", verb, str(model), "--mode", "PA", "--target", "0.5", "--round-to", "x", *extra]
    assert main([*args, "-o", str(tmp_path / "run")]) == 2
    assert "--round-to" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["new-in-read-only", "existing-read-only", "missing", "dash"])
def test_run_folder_checked_before_torch(where, model, read_only, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # would say "install onnxprune[train]" if reached
    monkeypatch.chdir(tmp_path)
    out = {
        "new-in-read-only": read_only / "run",
        "existing-read-only": read_only,
        "missing": tmp_path / "no" / "run",
        "dash": "-",
    }[where]
    one_line_error(_scratch(model, out), capsys, "-o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "sym.onnx"]
    assert list(read_only.iterdir()) == []


def test_pipeline_json_gets_the_umask_mode(pickles, tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    plain = tmp_path / "m[red]x.onnx"
    onnx.save(export_torch(tiny_classifier(width=8), "legacy", keep_bn=True), str(plain))
    monkeypatch.chdir(tmp_path)  # short relative names: the table title is not wrapped
    old = os.umask(0o027)
    try:
        rc = _scratch(plain.name, "run", "--data", f"cifar10={pickles}")
    finally:
        os.umask(old)
    out = capsys.readouterr().out
    assert rc == 0
    assert stat.S_IMODE((tmp_path / "run" / "pipeline.json").stat().st_mode) == 0o640
    assert "m[red]x.onnx" in out  # a file name with rich markup shows as given


# ------------------------------------------------------------------ pipeline scratch --quantize


@pytest.fixture
def plain_model(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.onnx"
    onnx.save(export_torch(tiny_classifier(width=8), "legacy", keep_bn=True), str(path))
    return path


@pytest.mark.parametrize("fmt, op", [("qdq", "QuantizeLinear"), ("qoperator", "QLinearConv")])
def test_scratch_quantize_writes_the_int8_model(fmt, op, plain_model, tmp_path, capsys):
    from trainers.testing import write_cifar_pickles

    data = write_cifar_pickles(tmp_path / "many", per_batch=40, n_test=20)  # 200 training images
    run = tmp_path / "run"
    rc = _scratch(
        plain_model,
        run,
        "--data",
        f"cifar10={data}",
        "--quantize",
        "--quantize-format",
        fmt,
        "--calibration-images",
        "32",
        "--no-guard",
        "--json",
    )  # random pixels: nothing to learn
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    saved = json.loads((run / "pipeline.json").read_text())
    assert saved["files"]["int8"] == str(run / "trained.int8.onnx") and "quantize" in saved["seconds"]
    assert saved["quantize"]["format"] == fmt and saved["quantize"]["calibration_images"] == 32
    int8 = onnx.load(str(run / "trained.int8.onnx"))
    assert op in {n.op_type for n in int8.graph.node}
    assert (run / "trained.onnx").is_file()  # the float model is kept too


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--calibration-images", "4"], "--calibration-images 4"),
        (["--quantize-format", "int4"], "--quantize-format 'int4'"),
    ],
)
def test_bad_quantize_settings_fail_before_training(extra, needle, plain_model, pickles, tmp_path, capsys, monkeypatch):
    from trainers import loop

    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("trained before the quantize check"))
    rc = _scratch(plain_model, tmp_path / "run", "--data", f"cifar10={pickles}", "--quantize", *extra)
    one_line_error(rc, capsys, needle)
    assert not (tmp_path / "run").exists()


def test_read_only_int8_file_is_refused_first(plain_model, pickles, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    int8 = run / "trained.int8.onnx"
    int8.write_bytes(b"old")
    real_access = os.access
    monkeypatch.setattr(
        "onnxprune.read.save.os.access",
        lambda p, m, *a, **k: False if Path(p) == int8 and m & os.W_OK else real_access(p, m, *a, **k),
    )
    rc = _scratch(plain_model, run, "--data", f"cifar10={pickles}", "--quantize")
    one_line_error(rc, capsys, "trained.int8.onnx", "cannot write")
    assert sorted(p.name for p in run.iterdir()) == ["trained.int8.onnx"]
