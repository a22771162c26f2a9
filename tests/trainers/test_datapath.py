"""`--data cifar10` without a path (trainers/datapath.py): $ONNXPRUNE_DATA, ~/.cache/onnxprune, the
checkout's shared folder, in that order; not found: one line saying where it looked."""

from __future__ import annotations

import pytest

import trainers.datapath as datapath
from onnxprune.cli import main
from onnxprune.errors import UserError
from tests.tiny_models import conv_model
from trainers.data import parse_data_spec


@pytest.fixture
def places(tmp_path, monkeypatch):
    """An empty home, data folder and shared folder; no $ONNXPRUNE_CIFAR10."""
    home, data, shared = tmp_path / "home", tmp_path / "data", tmp_path / "shared"
    for folder in (home, data, shared):
        folder.mkdir()
    monkeypatch.delenv("ONNXPRUNE_CIFAR10", raising=False)
    monkeypatch.delenv("ONNXPRUNE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(datapath, "SHARED_DATASETS", shared)
    return home, data, shared


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_search_order_data_then_cache_then_shared(places, monkeypatch):
    home, data, shared = places
    in_shared = _touch(shared / "cifar10-jpeg.zip")
    assert parse_data_spec("cifar10") == ("cifar10", in_shared)
    in_cache = _touch(home / ".cache" / "onnxprune" / "cifar-10-python.tar.gz")
    assert parse_data_spec("cifar10") == ("cifar10", in_cache)
    monkeypatch.setenv("ONNXPRUNE_DATA", str(data))
    assert parse_data_spec("cifar10") == ("cifar10", in_cache)  # $ONNXPRUNE_DATA holds nothing yet
    unpacked = data / "cifar-10-batches-py"
    unpacked.mkdir()
    assert parse_data_spec("cifar10") == ("cifar10", unpacked)
    explicit = _touch(data / "elsewhere.zip")
    monkeypatch.setenv("ONNXPRUNE_CIFAR10", str(explicit))
    assert parse_data_spec("cifar10") == ("cifar10", explicit)


def test_not_found_says_where_it_looked(places, monkeypatch):
    home, data, shared = places
    monkeypatch.setenv("ONNXPRUNE_DATA", str(data))
    with pytest.raises(UserError) as caught:
        parse_data_spec("cifar10")
    message = str(caught.value)
    for where in (str(data), str(home / ".cache" / "onnxprune"), str(shared), "cifar-10-python.tar.gz"):
        assert where in message


def test_train_cli_without_cifar10_is_one_line_exit_2(places, tmp_path, capsys):
    model = conv_model(tmp_path / "m.onnx")
    assert main(["train", str(model), "--data", "cifar10", "-o", str(tmp_path / "t.onnx")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "$ONNXPRUNE_DATA (unset)" in err and "~/.cache/onnxprune" in err
    assert not (tmp_path / "t.onnx").exists()
