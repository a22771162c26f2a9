"""The distillation verbs: `train --teacher`, `pipeline distill`, `sweep --teacher` -- exit codes, JSON,
one-line refusals, and `--input-shape` for a teacher whose height and width are symbolic."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

torch = pytest.importorskip("torch")

from onnxprune.cli import main  # noqa: E402
from tests.trainers.distill_graphs import teacher_and_student, texture_images  # noqa: E402
from tests.trainers.test_cli import one_line_error  # noqa: E402

QUICK = ["--epochs", "2", "--batch-size", "8", "--lr", "0.003", "--threads", "1", "-q"]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    teacher, student, report = teacher_and_student("two_heads", folder)
    return teacher, student, report, texture_images(folder / "images", count=40)


def test_train_teacher_writes_the_distilled_model_and_its_json(graphs, tmp_path, capsys):
    teacher, student, report, images = graphs
    out = tmp_path / "d.onnx"
    rc = main(
        ["train", str(student), "--teacher", str(teacher), "--data", f"images={images}", "-o", str(out)]
        + ["--shrink-report", str(report), "--temperature", "3", "--mean", "0.5", "--std", "0.25", "--json", *QUICK]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    payload = json.loads(captured.out)
    assert payload["relative_error"] < payload["relative_error_before"]
    assert payload["config"]["temperature"] == 3.0 and payload["input"]["mean"] == [0.5] * 3
    assert payload["input"]["from"] == "--mean/--std" and payload["config"]["recipe"] == "distill"
    assert payload["config"]["augment"] is False  # distillation's default: the images as they are
    assert {h["from"] for h in payload["hints"]} == {"report"}
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert json.loads(meta["onnxprune.mean"]) == [0.5] * 3  # a later distillation from it is fed alike
    lines = [json.loads(line) for line in out.with_suffix(".train.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and "relative_error" in lines[0]


def test_train_teacher_prints_a_summary(graphs, tmp_path, capsys):
    teacher, student, _report, images = graphs
    rc = main(["train", str(student), "--teacher", str(teacher), "--data", f"images={images}", "-o", str(tmp_path / "d.onnx"), *QUICK])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "held-out error" in captured.out and "ONNX check" in captured.out
    assert "exported" in captured.out  # which student: the refit or an epoch


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--alpha", "0.5"], ["--alpha", "--teacher"]),
        (["--hints", "none"], ["--hints", "--teacher"]),
    ],
)
def test_distillation_flags_need_a_teacher(graphs, tmp_path, capsys, extra, needles):
    _teacher, student, _report, images = graphs
    rc = main(["train", str(student), "--data", f"images={images}", "-o", str(tmp_path / "x.onnx"), *extra])
    one_line_error(rc, capsys, *needles)


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--hints", "some"], ["--hints 'some'"]),
        (["--temperature", "0"], ["--temperature 0"]),
        (["--mean", "a,b"], ["--mean 'a,b'"]),
        (["--std", "0.5,0.5"], ["--std: 2 values"]),
        (["--output-loss", "nope=kl"], ["no output 'nope'"]),
        (["--output-loss", "boxes=l2"], ["boxes=l2", "kl or mse"]),
        (["--teacher-runtime", "tf"], ["--teacher-runtime 'tf'"]),
    ],
)
def test_bad_distillation_flags_are_one_line(graphs, tmp_path, capsys, extra, needles):
    teacher, student, _report, images = graphs
    rc = main(["train", str(student), "--teacher", str(teacher), "--data", f"images={images}", "-o", str(tmp_path / "x.onnx"), *extra, *QUICK])  # fmt: skip
    one_line_error(rc, capsys, *needles)


def test_the_output_may_not_overwrite_the_teacher(graphs, capsys):
    teacher, student, _report, images = graphs
    rc = main(["train", str(student), "--teacher", str(teacher), "--data", f"images={images}", "-o", str(teacher)])
    one_line_error(rc, capsys, "is the input model")


def test_pipeline_distill_writes_its_run_folder(graphs, tmp_path, capsys):
    teacher, _student, _report, images = graphs
    run = tmp_path / "run"
    rc = main(
        ["pipeline", "distill", str(teacher), "--mode", "FA", "--target", "0.5", "--data", f"images={images}"]
        + ["--bench-runs", "2", "-o", str(run), "--json", *QUICK]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    payload = json.loads(captured.out)
    assert payload["pipeline"] == "distill" and payload["shrink"]["init"] == "keep"
    assert payload["relative_error"] < payload["relative_error_before"]
    assert payload["bench"]["speedup"] > 0 and payload["complexity"]["flops"]["ratio"] <= 0.5
    for name in ("pruned.onnx", "shrink.json", "distilled.onnx", "distill.jsonl", "pipeline.json"):
        assert (run / name).is_file(), name
    assert {h["from"] for h in payload["distill"]["hints"]} == {"report"}


def test_sweep_teacher_plots_agreement_without_labels(graphs, tmp_path, capsys):
    teacher, _student, _report, images = graphs
    run = tmp_path / "sweep"
    rc = main(
        ["sweep", str(teacher), "--teacher", str(teacher), "--init", "keep", "--modes", "FA", "--targets", "0.5"]
        + [
            "--data",
            f"images={images}",
            "--epochs",
            "1",
            "--bench-runs",
            "2",
            "--threads",
            "1",
            "-q",
            "-o",
            str(run),
            "--json",
        ]  # fmt: skip
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = json.loads(captured.out)["runs"]
    assert [r["name"] for r in rows] == ["baseline", "FA-0.5"]
    assert {r["metric"] for r in rows} == {"top-1 agreement with the teacher"}
    assert rows[0]["accuracy"] == 1.0  # the unpruned model, its weights kept, is its teacher
    assert (run / "tradeoffs.png").is_file()
    settings = json.loads((run / "FA-0.5" / "result.json").read_text())["settings"]
    assert settings["augment"] is False  # what the distillation ran with, not the labelled default


def test_train_teacher_augments_when_asked(graphs, tmp_path, capsys):
    teacher, student, _report, images = graphs
    rc = main(["train", str(student), "--teacher", str(teacher), "--data", f"images={images}", "--augment", "-o", str(tmp_path / "d.onnx"), "--json", *QUICK])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert json.loads(captured.out)["config"]["augment"] is True


def test_sweep_refuses_images_without_a_teacher(graphs, tmp_path, capsys):
    teacher, _student, _report, images = graphs
    rc = main(["sweep", str(teacher), "--data", f"images={images}", "-o", str(tmp_path / "s")])
    one_line_error(rc, capsys, "no labels", "--teacher")


def test_symbolic_height_and_width_take_input_shape(tmp_path, capsys):
    from tests.trainers.test_cli import symbolic_hw_model

    teacher = symbolic_hw_model(tmp_path / "sym.onnx")
    images = texture_images(tmp_path / "images", count=24, size=32)
    out = tmp_path / "d.onnx"
    rc = main(["train", str(teacher), "--teacher", str(teacher), "--data", f"images={images}", "-o", str(out), *QUICK])
    one_line_error(rc, capsys, "--input-shape")
    name = onnx.load(teacher).graph.input[0].name
    rc = main(
        ["train", str(teacher), "--teacher", str(teacher), "--data", f"images={images}", "-o", str(out)]
        + ["--input-shape", f"{name}=1x3x32x32", *QUICK]
    )
    assert rc == 0, capsys.readouterr().err
    assert Path(out).is_file()
