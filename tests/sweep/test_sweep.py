"""`onnxprune sweep`: baseline + modes x targets, trained on a real CIFAR-10 slice, resumable, plotted."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from onnxprune.cli import main  # noqa: E402
from onnxprune.sweep.grid import COLUMNS, PLOTS, parse_modes, parse_targets, run_name  # noqa: E402
from trainers.data import DEFAULT_CIFAR10  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_cifar = pytest.mark.skipif(not DEFAULT_CIFAR10.is_file(), reason="the shared CIFAR-10 zip is not here")


def _args(model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "sweep",
        str(model),
        "--modes",
        "PA,FA",
        "--targets",
        "0.5",
        "--epochs",
        "1",
        "--limit-train",
        "256",
        "--limit-test",
        "256",
        "--bench-runs",
        "5",
        "--threads",
        "2",
        "-o",
        str(out),
        *extra,
    ]


@needs_cifar
def test_sweep_writes_results_plots_and_resumes(tiny_cnn, tmp_path, capsys):
    out = tmp_path / "run"
    started = time.perf_counter()
    assert main(_args(tiny_cnn, out, "--json")) == 0
    first_s = time.perf_counter() - started
    payload = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in payload["runs"]]
    assert names == ["baseline", "PA-0.5", "FA-0.5"]

    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == names
    assert set(COLUMNS) <= set(rows[0])
    for row in rows:
        assert 0.0 <= float(row["accuracy"]) <= 1.0
        for key in (
            "params",
            "flops",
            "memory_bytes",
            "latency_ms",
            "energy_uj_per_image",
            "train_wall_seconds",
            "images_per_s",
        ):
            assert float(row[key]) > 0, key
    base, pa, fa = rows
    assert base["mode"] == "" and pa["mode"] == "PA" and fa["mode"] == "FA"
    assert int(pa["params"]) < int(base["params"]) and int(fa["flops"]) < int(base["flops"])

    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["runs"]] == names
    assert results["settings"]["epochs"] == 1 and results["settings"]["limit_train"] == 256

    for name, start in (("baseline", "unpruned.onnx"), ("PA-0.5", "pruned.onnx"), ("FA-0.5", "pruned.onnx")):
        for file in (start, "trained.onnx", "result.json"):
            assert (out / name / file).stat().st_size > 0, (name, file)
    pngs = [out / "tradeoffs.png"] + [out / f"accuracy_vs_{stem}.png" for stem in PLOTS]
    for png in pngs:
        data = png.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC), png
    assert not list(out.rglob("*.tmp"))

    # resume: every run is skipped, nothing retrained or rewritten
    mtimes = {name: (out / name / "result.json").stat().st_mtime_ns for name in names}
    trained = {name: (out / name / "trained.onnx").stat().st_mtime_ns for name in names}
    started = time.perf_counter()
    assert main(_args(tiny_cnn, out)) == 0
    second_s = time.perf_counter() - started
    captured = capsys.readouterr()
    assert captured.err.count("skipped") == 3
    assert {n: (out / n / "result.json").stat().st_mtime_ns for n in names} == mtimes
    assert {n: (out / n / "trained.onnx").stat().st_mtime_ns for n in names} == trained
    assert second_s < first_s / 2

    # a half-finished run (no result.json) is redone, the others are kept
    (out / "FA-0.5" / "result.json").unlink()
    assert main(_args(tiny_cnn, out, "-q")) == 0
    assert (out / "FA-0.5" / "result.json").is_file()
    assert (out / "PA-0.5" / "result.json").stat().st_mtime_ns == mtimes["PA-0.5"]
    with open(out / "results.csv") as handle:
        assert [r["name"] for r in csv.DictReader(handle)] == names

    # other settings are refused rather than mixed into the same results
    assert main(_args(tiny_cnn, out, "-q", "--seed", "1")) == 2
    assert "seed" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--modes", "PA,XX"], "unknown mode"),
        (["--targets", "0.5,1.0"], "outside (0, 1)"),
        (["--targets", "0"], "outside (0, 1)"),
        (["--targets", "abc"], "not a number"),
        (["--bench-runs", "0"], "--bench-runs"),
        (["--data", "cifar10=/nonexistent/zip"], "does not exist"),
        (["--epochs", "0"], "--epochs"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--norm", "maybe"], "--norm 'maybe'"),
    ],
)
def test_bad_input_exits_2_before_any_work(tiny_cnn, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    argv = ["sweep", str(tiny_cnn), "-o", str(out), "--modes", "PA", "--targets", "0.5", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_model_and_bad_output(tmp_path, tiny_cnn, capsys):
    assert main(["sweep", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "run")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["sweep", str(tiny_cnn), "-o", str(tmp_path / "missing" / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["sweep", str(tiny_cnn), "-o", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_parsers():
    assert parse_modes("pa, FA,PA") == ["PA", "FA"]
    assert parse_targets("0.8,0.6") == [0.8, 0.6]
    assert run_name(None, None) == "baseline" and run_name("MA", 0.25) == "MA-0.25"


# ------------------------------------------------------------ --input-shape, file modes (issue 16 item 10)


@pytest.fixture
def symbolic_cnn(tmp_path) -> Path:
    from tests.trainers.test_cli import symbolic_hw_model

    return symbolic_hw_model(tmp_path / "sym.onnx")


def test_input_shape_reaches_every_run_and_files_get_the_umask_mode(symbolic_cnn, tmp_path, capsys):
    import os
    import stat

    import onnx

    from trainers.testing import write_cifar_pickles

    pickles = write_cifar_pickles(tmp_path / "data", per_batch=8, n_test=10)
    name = onnx.load(str(symbolic_cnn)).graph.input[0].name
    out = tmp_path / "run"
    old = os.umask(0o027)
    try:
        rc = main(
            [
                "sweep",
                str(symbolic_cnn),
                "--modes",
                "PA",
                "--targets",
                "0.5",
                "--epochs",
                "1",
                "--bench-runs",
                "2",
                "--threads",
                "1",
                "--data",
                f"cifar10={pickles}",
                "-q",
                "--json",
                "--input-shape",
                f"{name}=1x3x32x32",
                "-o",
                str(out),
            ]
        )
    finally:
        os.umask(old)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    runs = json.loads(captured.out)["runs"]
    assert [r["name"] for r in runs] == ["baseline", "PA-0.5"]
    assert runs[0]["settings"]["input_shapes"] == {name: [1, 3, 32, 32]}
    assert runs[1]["params"] < runs[0]["params"]
    for path in (out / "results.json", out / "results.csv", out / "tradeoffs.png", out / "PA-0.5" / "result.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_symbolic_hw_without_input_shape_names_the_hint(symbolic_cnn, tmp_path, capsys):
    import onnx

    from onnxprune.read.shapes import input_shape_hint

    hint = input_shape_hint(onnx.load(str(symbolic_cnn)).graph.input[0])
    out = tmp_path / "run"
    assert main(["sweep", str(symbolic_cnn), "--modes", "PA", "--targets", "0.5", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--input-shape {hint}" in err and "\n" not in err
    assert not out.exists()
