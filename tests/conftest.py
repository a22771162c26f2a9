"""Shared fixtures: the exported model zoo (build/zoo).

* ``zoo_dir`` (session): ``<repo>/build/zoo`` after exporting every CIFAR model in all four
  variants (exporter in EXPORTERS x bn in BN_VARIANTS); only missing or stale files are
  exported, under a file lock, so parallel pytest-xdist workers share one export.
* ``zoo_model`` (session): ``zoo_model(name, exporter, bn) -> Path``; ImageNet models are
  exported on demand (the first call costs a few seconds).

Parametrize over ``CIFAR_MODELS``, ``IMAGENET_MODELS``, ``EXPORTERS`` and ``BN_VARIANTS``
(re-exported here from ``models.zoo``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from models.export import ensure_zoo, zoo_path  # noqa: E402
from models.zoo import BN_VARIANTS, CIFAR_MODELS, EXPORTERS, IMAGENET_MODELS, MODELS  # noqa: E402

ZOO_DIR = REPO_ROOT / "build" / "zoo"

__all__ = ["ZOO_DIR", "CIFAR_MODELS", "IMAGENET_MODELS", "EXPORTERS", "BN_VARIANTS", "MODELS", "get_zoo_model"]


def get_zoo_model(name: str, exporter: str, bn: str, out_dir: Path = ZOO_DIR) -> Path:
    """Path of one zoo variant, exporting it first if it is missing or stale."""
    return ensure_zoo(out_dir, names=[name], exporters=[exporter], bns=[bn])[0]


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    ensure_zoo(ZOO_DIR, names=CIFAR_MODELS)
    return ZOO_DIR


@pytest.fixture(scope="session")
def zoo_model(zoo_dir: Path):
    def _get(name: str, exporter: str, bn: str) -> Path:
        if name in CIFAR_MODELS and exporter in EXPORTERS and bn in BN_VARIANTS:
            return zoo_path(zoo_dir, name, exporter, bn)
        return get_zoo_model(name, exporter, bn, zoo_dir)

    return _get


@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    """A read-only folder, also for root (who may write anywhere): `os.access`, as onnxprune.read.save asks
    it, says so."""
    from onnxprune.read import save as onnxprune_save

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == folder and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(onnxprune_save.os, "access", access)
    yield folder
    folder.chmod(0o755)


@pytest.fixture
def pickles(tmp_path) -> Path:
    """A tiny CIFAR-10 in the original pickle format (8 images a batch, 10 test images)."""
    from trainers.testing import write_cifar_pickles

    return write_cifar_pickles(tmp_path / "data", per_batch=8, n_test=10)
