"""Distillation (`train --teacher`): the student's error against its teacher drops without labels on
tiny graphs of every shape the issue names (two outputs, NHWC input, 1-channel input, a
sequence-first output), in torch and with an onnxruntime teacher; the refusals come before any image
is decoded; unreadable images are skipped and counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from onnxprune.errors import UserError  # noqa: E402
from tests.trainers.distill_graphs import teacher_and_student, texture_images  # noqa: E402
from trainers import distill_setup, runstate  # noqa: E402
from trainers.distill_loop import distill  # noqa: E402
from trainers.hints import monotone_match  # noqa: E402

# seeds fixed: every figure below is reproducible; the margins are 2-8x what these runs show
FAST = dict(epochs=6, lr=3e-3, batch_size=8, threads=1, progress=False, seed=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("distill")


@pytest.fixture(scope="module")
def images(folder) -> Path:
    return texture_images(folder / "images", count=64, broken=1)


@pytest.fixture(scope="module")
def graphs(folder):
    return {kind: teacher_and_student(kind, folder) for kind in ("two_heads", "nhwc", "gray", "no_bias", "sequence")}


@pytest.mark.parametrize("kind", ["two_heads", "nhwc", "gray", "sequence"])
def test_the_students_error_against_its_teacher_drops_without_labels(kind, graphs, images, tmp_path):
    teacher, student, _report = graphs[kind]
    out = tmp_path / "distilled.onnx"
    result = distill(student, teacher, f"images={images}", output=out, **FAST)
    assert result.relative_error < 0.6 * result.relative_error_before, result.history
    assert result.verdict["status"] in ("learned", "not judged")
    # the export: the pruned graph's nodes and names, and onnxruntime equals torch on it
    written, pruned = onnx.load(out), onnx.load(student)
    assert [n.name for n in written.graph.node] == [n.name for n in pruned.graph.node]
    assert [o.name for o in written.graph.output] == [o.name for o in pruned.graph.output]
    assert max(result.onnx_check["max_relative_error"].values()) < 1e-4
    kinds = {o["output"]: o for o in result.outputs}
    if kind in ("two_heads", "gray"):
        assert kinds["scores"]["kind"] == "softmax" and kinds["scores"]["compared"] != "scores"  # on its logits
        assert kinds["boxes"]["kind"] == "regression"
        assert result.input["channels"] == (1 if kind == "gray" else 3)
    if kind == "nhwc":
        assert result.input["layout"] == "NHWC"
    if kind == "sequence":
        assert kinds["logits"]["batch_axis"] == 1 and kinds["logits"]["kind"] == "logits"
    assert result.hints and all(h["from"] == "matched" for h in result.hints)  # no report given


def test_a_teacher_in_onnxruntime_teaches_too(graphs, images):
    teacher, student, report = graphs["two_heads"]
    result = distill(student, teacher, f"images={images}", teacher_runtime="onnxruntime", shrink_report=report, **FAST)
    assert result.teacher["runtime"] == "onnxruntime"
    assert result.relative_error < 0.6 * result.relative_error_before
    assert result.hints and all(h["from"] == "report" for h in result.hints)


def test_unreadable_images_are_skipped_and_counted_in_the_log(graphs, images, tmp_path):
    teacher, student, _ = graphs["nhwc"]
    log = tmp_path / "log.jsonl"
    result = distill(student, teacher, f"images={images}", log=log, **{**FAST, "epochs": 1})
    assert result.skipped_images == 1
    assert [json.loads(line)["skipped_images"] for line in log.read_text().splitlines()] == [1]


@pytest.mark.parametrize("kind", ["gray", "no_bias"])
def test_resume_equals_the_uninterrupted_run_without_a_second_refit(kind, graphs, images, tmp_path, monkeypatch):
    teacher, student, _ = graphs[kind]
    settings = {**FAST, "epochs": 2}
    whole = distill(student, teacher, f"images={images}", checkpoint=tmp_path / "a", **settings)
    assert any(r["lambda"] is not None for r in whole.refit)  # the refit changed the student
    if kind == "no_bias":
        assert all(len(n.input) == 2 for n in onnx.load(student).graph.node if n.op_type == "Conv")
    real_save = runstate.save_checkpoint

    class Stop(Exception):
        pass

    def save_then_stop(folder, state):
        real_save(folder, state)
        raise Stop

    monkeypatch.setattr(runstate, "save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        distill(student, teacher, f"images={images}", checkpoint=tmp_path / "b", **settings)
    monkeypatch.setattr(runstate, "save_checkpoint", real_save)

    def no_refit(*_args, **_kwargs):
        raise AssertionError("refitted again on --resume")

    monkeypatch.setattr(distill_setup, "recalibrate", no_refit)
    resumed = distill(student, teacher, f"images={images}", checkpoint=tmp_path / "b", resume=True, **settings)
    assert resumed.resumed_from_epoch == 1
    assert [r["heldout_loss"] for r in resumed.history] == [r["heldout_loss"] for r in whole.history]
    assert resumed.refit == whole.refit and resumed.relative_error == whole.relative_error


def test_labels_mix_in_by_alpha(tmp_path):
    from trainers.testing import export_torch, synthetic_dataset, tiny_classifier

    torch.manual_seed(0)
    teacher = tmp_path / "t.onnx"
    onnx.save(export_torch(tiny_classifier(width=8), "legacy", keep_bn=False, shape=(1, 3, 8, 8)), teacher)
    data = synthetic_dataset(n_train=64, n_test=32)
    result = distill(teacher, teacher, data, alpha=0.5, **{**FAST, "epochs": 2})
    assert result.accuracy is not None and result.config["alpha"] == 0.5


# ------------------------------------------------------------------------------------------ refusals


@pytest.fixture
def no_decoding(monkeypatch):
    monkeypatch.setattr(distill_setup, "load_images", lambda *a, **k: pytest.fail("images decoded before the check"))
    monkeypatch.setattr(distill_setup, "load_data", lambda *a, **k: pytest.fail("images decoded before the check"))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_a_teacher_with_other_outputs_is_refused_before_any_image(graphs, images, no_decoding):
    with pytest.raises(UserError) as exc:
        distill(graphs["two_heads"][1], graphs["nhwc"][0], f"images={images}", **FAST)
    assert "--teacher" in _one_line(exc) and "outputs" in str(exc.value)


def test_a_teacher_with_other_output_names_is_refused(graphs, images, tmp_path, no_decoding):
    renamed = onnx.load(graphs["nhwc"][0])
    renamed.graph.output[0].name = "other"
    renamed.graph.node[-1].output[0] = "other"
    onnx.save(renamed, tmp_path / "renamed.onnx")
    with pytest.raises(UserError, match="outputs are"):
        distill(graphs["nhwc"][1], tmp_path / "renamed.onnx", f"images={images}", **FAST)


def test_a_teacher_whose_output_rank_differs_is_refused(graphs, images, tmp_path, no_decoding):
    from tests.trainers.distill_graphs import Nhwc, export

    export(Nhwc(rank3=True), (1, 16, 16, 3), tmp_path / "ranked.onnx")
    with pytest.raises(UserError, match="rank 3 in the teacher, 2 in the student"):
        distill(graphs["nhwc"][1], tmp_path / "ranked.onnx", f"images={images}", **FAST)


def test_a_folder_without_a_readable_image_is_refused_naming_it(graphs, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"no")
    (junk / "b.png").write_bytes(b"neither")
    with pytest.raises(UserError, match=f"none of the 2 image files.*{junk}"):
        distill(graphs["nhwc"][1], graphs["nhwc"][0], f"images={junk}", **FAST)
    (junk / "a.jpg").unlink()
    (junk / "b.png").unlink()
    (junk / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=f"no image files .* in {junk}"):
        distill(graphs["nhwc"][1], graphs["nhwc"][0], f"images={junk}", **FAST)


def test_images_without_labels_need_a_teacher(graphs, images):
    from trainers.loop import train

    with pytest.raises(UserError, match="no labels.*--teacher"):
        train(graphs["nhwc"][1], f"images={images}", epochs=1, progress=False)
    with pytest.raises(UserError, match="--alpha 0.5.*no labels"):
        distill(graphs["nhwc"][1], graphs["nhwc"][0], f"images={images}", alpha=0.5, **FAST)


# ------------------------------------------------------------------------------------------ pieces


def test_channels_are_recovered_by_an_increasing_match():
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((12, 40))
    kept = np.array([0, 3, 4, 8, 11])
    student = teacher[kept] + 0.1 * rng.standard_normal((5, 40))
    corr = np.corrcoef(student, teacher)[:5, 5:]
    assert monotone_match(corr).tolist() == kept.tolist()


def test_exported_student_runs_in_onnxruntime_at_any_batch(graphs, images, tmp_path):
    teacher, student, _ = graphs["sequence"]
    out = tmp_path / "seq.onnx"
    distill(student, teacher, f"images={images}", output=out, **{**FAST, "epochs": 1})
    # shrink's value_info holds batch-1 shapes, and onnxruntime's MatMul->Gemm fusion bakes them in:
    # the pruned graph itself runs at batch 3 only unoptimised (a shrink matter, not the export's)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 24)).astype(np.float32)
    assert session.run(None, {"input": x})[0].shape == (24, 3, 7)  # (time, batch, classes)


def test_a_sigmoid_output_is_compared_on_its_logits():
    from onnx import TensorProto, helper

    from trainers.distill import output_rules

    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["logits"], name="conv"),
            helper.make_node("Sigmoid", ["logits"], ["map"], name="sigmoid"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("map", TensorProto.FLOAT, [1, 1, 8, 8])],
        [onnx.numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "w")],
    )
    model = helper.make_model(graph)
    probe = [torch.rand(2, 1, 8, 8)]
    (rule,) = output_rules(model, probe, {"map": 0})
    assert (rule.kind, rule.tensor) == ("sigmoid", "logits")
    (rule,) = output_rules(model, probe, {"map": 0}, {"map": "kl"})
    assert (rule.kind, rule.tensor) == ("binary", "logits")
    (rule,) = output_rules(model, probe, {"map": 0}, {"map": "mse"})
    assert (rule.kind, rule.tensor) == ("regression", "logits")


def test_a_softmax_written_out_is_read_as_probabilities():
    from onnx import TensorProto, helper

    from trainers.distill import output_rules

    graph = helper.make_graph(
        [
            helper.make_node("Exp", ["x"], ["e"], name="exp"),
            helper.make_node("ReduceSum", ["e", "axes"], ["s"], name="sum", keepdims=1),
            helper.make_node("Div", ["e", "s"], ["p"], name="div"),
            helper.make_node("Mul", ["x", "two"], ["boxes"], name="boxes"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
        [
            helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 5]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 5]),
        ],
        [
            onnx.numpy_helper.from_array(np.array([1], np.int64), "axes"),
            onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        ],
    )
    x = torch.randn(3, 5)
    probe = [torch.softmax(x, 1), 2 * x]
    rules = output_rules(helper.make_model(graph), probe, {"p": 0, "boxes": 0})
    assert [r.kind for r in rules] == ["probabilities", "regression"]


def test_unnamed_layers_are_hinted_by_their_output_tensor(graphs, images, tmp_path):
    """torch 1.x exports name no node (CenterFace had 0 hints): the same output tensor and op pair them."""
    from trainers.hints import candidates

    teacher, student, _report = graphs["two_heads"]
    paths = {}
    for role, path in (("teacher", teacher), ("student", student)):
        proto = onnx.load(path)
        for node in proto.graph.node:
            node.name = ""
        paths[role] = tmp_path / f"{role}.onnx"
        onnx.save(proto, paths[role])
    named = candidates(onnx.load(student), onnx.load(teacher), _all_tensors(student), None)
    unnamed = candidates(onnx.load(paths["student"]), onnx.load(paths["teacher"]), _all_tensors(student), None)
    assert named and [tensor for _, tensor in unnamed] == [tensor for _, tensor in named]
    result = distill(paths["student"], paths["teacher"], f"images={images}", **{**FAST, "epochs": 1})
    assert result.hints and all(h["from"] == "matched" and "(" in h["node"] for h in result.hints)


def _all_tensors(path) -> set[str]:
    return {name for node in onnx.load(path).graph.node for name in node.output}
