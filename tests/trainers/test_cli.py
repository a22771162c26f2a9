"""The `train` verb's shared options: --input-shape (symbolic H/W), --seed, outputs checked first."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest

torch = pytest.importorskip("torch")

from onnxprune.cli import main  # noqa: E402
from onnxprune.read.shapes import input_shape_hint  # noqa: E402
from trainers import loop  # noqa: E402
from trainers.testing import export_torch, tiny_classifier  # noqa: E402


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE", str(tmp_path / "cache"))


def symbolic_hw_model(path: Path) -> Path:
    """A tiny classifier whose input is N x 3 x height x width (as a dynamic-axes export gives)."""
    torch.manual_seed(0)
    proto = export_torch(tiny_classifier(width=8), "legacy", keep_bn=True)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims[2:], ("height", "width")):
        dim.Clear()
        dim.dim_param = name
    del proto.graph.value_info[:]
    onnx.save(proto, str(path))
    return path


@pytest.fixture
def model(tmp_path) -> Path:
    return symbolic_hw_model(tmp_path / "sym.onnx")


def one_line_error(rc, capsys, *needles) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _train(model, out, *extra):
    return main(
        [
            "train",
            str(model),
            "-o",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "--quiet",
            *map(str, extra),
        ]
    )


def test_symbolic_hw_without_input_shape_names_the_hint(model, pickles, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loop, "_load_data", lambda *a, **k: pytest.fail("data decoded before the shape check"))
    hint = input_shape_hint(onnx.load(str(model)).graph.input[0])
    rc = _train(model, tmp_path / "t.onnx", "--data", f"cifar10={pickles}")
    one_line_error(rc, capsys, f"--input-shape {hint}")
    assert not (tmp_path / "t.onnx").exists()


def test_input_shape_fixes_symbolic_hw(model, pickles, tmp_path, capsys):
    name = onnx.load(str(model)).graph.input[0].name
    out = tmp_path / "t.onnx"
    rc = _train(model, out, "--data", f"cifar10={pickles}", "--input-shape", f"{name}=1x3x32x32", "--json")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    payload = json.loads(captured.out)
    assert payload["output_path"] == str(out) and out.is_file()
    assert payload["config"]["augment"] is True  # labelled training's default
    rc = _train(model, out, "--data", f"cifar10={pickles}", "--input-shape", f"{name}=1x3x16x16")
    one_line_error(rc, capsys, "3x16x16")  # the given shape is the one trained: it must fit the images


def test_input_shape_for_a_missing_input_is_refused(model, pickles, tmp_path, capsys):
    rc = _train(model, tmp_path / "t.onnx", "--data", f"cifar10={pickles}", "--input-shape", "nope=1x3x32x32")
    one_line_error(rc, capsys, "nope")


def test_negative_seed_is_a_usage_error(model, tmp_path, capsys):
    rc = _train(model, tmp_path / "t.onnx", "--seed", "-1")
    assert rc == 2 and "--seed" in capsys.readouterr().err
    assert not (tmp_path / "t.onnx").exists()


@pytest.mark.parametrize("where", ["-o", "--log"])
def test_outputs_checked_before_torch_or_data(where, model, read_only, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # would say "install onnxprune[train]" if reached
    monkeypatch.setattr(loop, "_load_data", lambda *a, **k: pytest.fail("data decoded before the output check"))
    out, log = (
        (read_only / "t.onnx", tmp_path / "t.jsonl") if where == "-o" else (tmp_path / "t.onnx", read_only / "t.jsonl")
    )
    rc = _train(model, out, "--log", log)
    one_line_error(rc, capsys, where, "cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "sym.onnx"]


def test_summary_shows_file_names_as_given(pickles, tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    plain = tmp_path / "m[red]x.onnx"
    onnx.save(export_torch(tiny_classifier(width=8), "legacy", keep_bn=True), str(plain))
    monkeypatch.chdir(tmp_path)  # short relative names: the table title is not wrapped
    rc = _train(plain.name, "[bold]t.onnx", "--data", f"cifar10={pickles}")
    out = capsys.readouterr().out
    assert rc == 0 and "m[red]x.onnx" in out and "[bold]t.onnx" in out
