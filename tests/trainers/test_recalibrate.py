"""The least-squares refit before distillation (trainers.recalibrate).

Oracle: a channel that is twice another one (after ReLU too) carries nothing new, so pruning it loses
nothing a consumer cannot get back: the refit must find the merged weights and bring the student to
its teacher exactly, through a plain conv, a depthwise conv and a Gemm head. On channels that do
carry information, the refit must lower every layer's held-out residual and the output error, and a
layer whose input the pruning left alone is left as it was.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

from tests.trainers.distill_graphs import texture_images  # noqa: E402
from trainers.distill_loop import distill  # noqa: E402

ONE_STEP = dict(epochs=1, lr=1e-9, batch_size=8, threads=1, progress=False, seed=0, hints="none")


def _weights(redundant: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """A: 3 -> 4 (channel 3 = 2 x channel 0 when `redundant`), D: depthwise 4, B: 4 -> 6 (1x1), G: 6 -> 5."""
    rng = np.random.default_rng(seed)
    w = {
        "A_w": rng.normal(0, 0.5, (4, 3, 3, 3)),
        "A_b": rng.normal(0, 0.1, 4),
        "D_w": rng.normal(0, 0.5, (4, 1, 3, 3)),
        "D_b": rng.normal(0, 0.1, 4),
        "B_w": rng.normal(0, 0.5, (6, 4, 1, 1)),
        "B_b": rng.normal(0, 0.1, 6),
        "G_w": rng.normal(0, 0.5, (5, 6)),
        "G_b": rng.normal(0, 0.1, 5),
    }
    if redundant:  # relu(2a) = 2 relu(a), and the depthwise kernel alike: D's channel 3 is twice its channel 0
        w["A_w"][3], w["A_b"][3] = 2 * w["A_w"][0], 2 * w["A_b"][0]
        w["D_w"][3], w["D_b"][3] = w["D_w"][0], 2 * w["D_b"][0]
        w["B_w"][5], w["B_b"][5] = 2 * w["B_w"][4], 2 * w["B_b"][4]  # G's input 5 = 2 x input 4 (4 is live)
    return {k: v.astype(np.float32) for k, v in w.items()}


def _graph(w: dict[str, np.ndarray], keep: list[int], keep_b: tuple[int, ...] = tuple(range(6))) -> onnx.ModelProto:
    """The network on A's channels `keep` (D's and B's input alike) and B's channels `keep_b` (G's input)."""
    cut = {
        "A_w": w["A_w"][keep],
        "A_b": w["A_b"][keep],
        "D_w": w["D_w"][keep],
        "D_b": w["D_b"][keep],
        "B_w": w["B_w"][list(keep_b)][:, keep],
        "B_b": w["B_b"][list(keep_b)],
        "G_w": w["G_w"][:, list(keep_b)],
        "G_b": w["G_b"],
    }
    nodes = [
        helper.make_node("Conv", ["x", "A_w", "A_b"], ["a"], name="A", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ar"], name="A_relu"),
        helper.make_node("Conv", ["ar", "D_w", "D_b"], ["d"], name="D", pads=[1, 1, 1, 1], group=len(keep)),
        helper.make_node("Relu", ["d"], ["dr"], name="D_relu"),
        helper.make_node("Conv", ["dr", "B_w", "B_b"], ["b"], name="B"),
        helper.make_node("Relu", ["b"], ["br"], name="B_relu"),
        helper.make_node("GlobalAveragePool", ["br"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "G_w", "G_b"], ["y"], name="G", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "refit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(v, k) for k, v in cut.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return texture_images(tmp_path_factory.mktemp("refit") / "images", count=96)


def _run(tmp_path, images, redundant: bool, keep: list[int], keep_b: list[int]):
    w = _weights(redundant)
    teacher, student = tmp_path / "teacher.onnx", tmp_path / "student.onnx"
    onnx.save(_graph(w, [0, 1, 2, 3]), teacher)
    onnx.save(_graph(w, keep, keep_b), student)
    report = tmp_path / "shrink.json"
    kept = [{"node": "A", "kept": keep}, {"node": "D", "kept": keep}, {"node": "B", "kept": keep_b}]
    report.write_text(json.dumps({"layers": kept}))
    return distill(student, teacher, f"images={images}", shrink_report=report, **ONE_STEP)


def test_a_pruned_copy_of_a_channel_is_recovered_exactly(tmp_path, images):
    result = _run(tmp_path, images, redundant=True, keep=[0, 1, 2], keep_b=[0, 1, 2, 3, 4])
    assert result.relative_error_before > 0.05  # pruning the copies did change the output ...
    assert result.heldout_recalibrated["relative_error"] < 1e-3  # ... and the refits of B and G take it back
    by_tensor = {r["tensor"]: r for r in result.refit}
    for tensor in ("b", "y"):  # a conv and the Gemm head
        assert by_tensor[tensor]["lambda"] is not None and by_tensor[tensor]["residual_after"] < 1e-6
    assert by_tensor["a"]["lambda"] is None and by_tensor["d"]["lambda"] is None  # inputs as the teacher's


def test_the_refit_lowers_every_residual_and_the_output_error(tmp_path, images):
    result = _run(tmp_path, images, redundant=False, keep=[1, 2, 3], keep_b=[0, 2, 3, 4, 5])
    records = [r for r in result.refit if r["lambda"] is not None]
    assert "b" in {r["tensor"] for r in records}
    for record in records:
        assert record["residual_after"] < record["residual_before"], record
    assert result.heldout_recalibrated["relative_error"] < result.relative_error_before


def test_no_refit_when_asked(tmp_path, images):
    w = _weights(True)
    teacher, student = tmp_path / "teacher.onnx", tmp_path / "student.onnx"
    onnx.save(_graph(w, [0, 1, 2, 3]), teacher)
    onnx.save(_graph(w, [0, 1, 2]), student)
    result = distill(student, teacher, f"images={images}", recalibration=False, **ONE_STEP)
    assert result.refit == [] and result.heldout_recalibrated is None


def test_the_student_closest_to_its_teacher_is_kept(tmp_path, images):
    """After an exact refit, steps at a high rate can only move the student away: the refit is exported."""
    w = _weights(True)
    teacher, student = tmp_path / "teacher.onnx", tmp_path / "student.onnx"
    onnx.save(_graph(w, [0, 1, 2, 3]), teacher)
    onnx.save(_graph(w, [0, 1, 2], [0, 1, 2, 3, 4]), student)
    report = tmp_path / "shrink.json"
    kept = [{"node": "A", "kept": [0, 1, 2]}, {"node": "D", "kept": [0, 1, 2]}, {"node": "B", "kept": [0, 1, 2, 3, 4]}]
    report.write_text(json.dumps({"layers": kept}))
    loud = dict(ONE_STEP, lr=3e-2, epochs=2, guard=False)
    kept_best = distill(student, teacher, f"images={images}", shrink_report=report, output=tmp_path / "a.onnx", **loud)
    moved = distill(
        student, teacher, f"images={images}", shrink_report=report, keep_best=False, output=tmp_path / "b.onnx", **loud
    )
    assert moved.relative_error > 1e-2  # the steps did move it away ...
    assert kept_best.selected["epoch"] == 0 and kept_best.relative_error < 1e-3  # ... and the refit was kept
    assert kept_best.history[-1]["relative_error"] > 1e-2  # the log still says what the epochs did
    assert not moved.selected["enabled"]
