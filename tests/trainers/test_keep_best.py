"""Which training images choose the exported student (trainers.keep_best)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from trainers.keep_best import SELECTION_IMAGES, selection_range  # noqa: E402


def test_the_selection_images_are_ones_the_refit_did_not_fit():
    assert selection_range(1024, 128) == (1024 - SELECTION_IMAGES, 1024)
    assert selection_range(300, 128) == (128, 300)  # fewer than SELECTION_IMAGES left: all of them


def test_without_a_refit_the_last_training_images_select():
    assert selection_range(1024, 0) == (1024 - SELECTION_IMAGES, 1024)
    assert selection_range(100, 0) == (0, 100)


def test_when_the_refit_read_every_image_the_first_ones_select():
    assert selection_range(96, 128) == (0, 96)
    assert selection_range(128, 128) == (0, 128)
