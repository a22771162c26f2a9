"""The trained model keeps the source's free input sizes: a graph whose height/width (an OCR
recogniser's text-line width) are symbolic is written back into its own structure, which keeps them,
rather than through torch's exporter, which fixes them at the training shape; where it cannot be
written back, the export says which sizes were fixed (probe round 2, F3)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from onnxprune.cli import main  # noqa: E402
from trainers.testing import export_torch, tiny_classifier  # noqa: E402


def _free_hw(tmp_path, exporter: str) -> tuple[str, str]:
    torch.manual_seed(0)
    proto = export_torch(tiny_classifier(width=8), exporter, keep_bn=True)
    for dim, name in zip(proto.graph.input[0].type.tensor_type.shape.dim[2:], ("height", "width")):
        dim.Clear()
        dim.dim_param = name
    del proto.graph.value_info[:]
    path = tmp_path / f"free_{exporter}.onnx"
    onnx.save(proto, str(path))
    return str(path), proto.graph.input[0].name


def _train(path, name, pickles, out, capsys) -> dict:
    args = ["train", path, "--json", "--data", f"cifar10={pickles}", "--epochs", "1", "--batch-size", "8"]
    assert main([*args, "--threads", "1", "-q", "--input-shape", f"{name}=1x3x32x32", "-o", str(out)]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_graph_with_free_height_and_width_keeps_them_when_trained(tmp_path, pickles, capsys):
    import onnxruntime as ort

    path, name = _free_hw(tmp_path, "dynamo")  # BatchNorm of its own: torch's export used to fix 32x32
    out = tmp_path / "trained.onnx"
    result = _train(path, name, pickles, out, capsys)
    assert result["export"].startswith("written back into the source graph")
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim]
    assert dims[2:] == ["height", "width"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 32, 32), (1, 3, 40, 56)):
        assert session.run(None, {name: np.zeros(shape, np.float32)})[0].shape == (1, 10)


def test_an_export_through_torch_says_which_free_sizes_it_fixed(tmp_path, pickles, capsys):
    path, name = _free_hw(tmp_path, "legacy")  # a bias shared by two layers: cannot be written back
    result = _train(path, name, pickles, tmp_path / "trained.onnx", capsys)
    assert result["export"].startswith("torch export")
    assert "symbolic input[2] (height), input[3] (width) are fixed at the training shape" in result["export"]
