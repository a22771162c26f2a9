"""The student's training mode in distillation (trainers.distill_setup.train_mode) and the augmentation default."""

from __future__ import annotations

import onnx
import pytest

torch = pytest.importorskip("torch")

from tests.trainers.distill_graphs import texture_images  # noqa: E402
from trainers import distill_setup  # noqa: E402
from trainers.distill_loop import distill  # noqa: E402
from trainers.testing import dropout_model  # noqa: E402

STEPS = dict(
    epochs=2, lr=1e-2, optimizer="sgd", batch_size=8, threads=1, progress=False, seed=0, hints="none", guard=False
)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return texture_images(tmp_path_factory.mktemp("dropout") / "images", count=48, size=8)


def test_a_student_equal_to_its_teacher_stays_equal_with_kept_weights(tmp_path, images):
    """The teacher runs without Dropout: with Dropout on, every step would chase the dropped channels'
    noise and move a student that is already exact."""
    model = tmp_path / "net.onnx"
    onnx.save(dropout_model(size=8), model)
    result = distill(
        model, model, f"images={images}", student_init="keep", keep_best=False, recalibration=False, **STEPS
    )
    assert result.relative_error < 1e-5
    assert result.norm["dropout"].startswith("off")
    assert result.config["augment"] is False  # kept weights: the images as they are


def test_from_reinitialised_weights_dropout_trains_as_in_the_graph(tmp_path, images):
    model = tmp_path / "net.onnx"
    onnx.save(dropout_model(size=8), model)
    result = distill(model, model, f"images={images}", student_init="reinit", keep_best=False, **STEPS)
    assert result.norm["dropout"] == "as in the graph"
    assert result.config["augment"] is True  # from scratch: augmented, as labelled training is


def test_a_long_refit_says_how_far_it_is(monkeypatch):
    """A line every REFIT_REPORT_EVERY_S seconds while layers remain; nothing for a quick refit."""
    clock = iter([0.0, 3.0, 12.0, 15.0, 30.0, 45.0])
    monkeypatch.setattr(distill_setup.time, "perf_counter", lambda: next(clock))
    lines = []
    on_layer = distill_setup._refit_progress(lines.append)  # reads the clock once: 0 s
    for done, total in ((1, 5), (2, 5), (3, 5), (4, 5), (5, 5)):  # at 3, 12, 15, 30 and 45 s
        on_layer(done, total)
    assert lines == [
        "refitting layers by least squares: 2 of 5 done (12 s)",
        "refitting layers by least squares: 4 of 5 done (30 s)",
    ]
    assert distill_setup._refit_progress(None) is None
