"""The converter on the real third-party corpus (`make corpus`; CORPUS_DIR): every float model's
outputs equal onnxruntime's within 1e-4 (relative to max(1, |output|)); a quantized one is refused
naming its ops. Skipped when the corpus is absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnxprune.errors import UserError  # noqa: E402
from trainers.convert import convert  # noqa: E402
from trainers.convert.writeback import write_back  # noqa: E402

CORPUS = Path(os.environ.get("CORPUS_DIR", "build/corpus"))
MANIFEST = CORPUS / "manifest.json"
ITEMS = json.loads(MANIFEST.read_text())["models"] if MANIFEST.is_file() else []
pytestmark = pytest.mark.skipif(not ITEMS, reason=f"no corpus at {CORPUS} (run `make corpus`, set CORPUS_DIR)")


@pytest.mark.parametrize("item", ITEMS, ids=[i["name"] for i in ITEMS])
def test_converter_matches_onnxruntime(item):
    import onnxruntime as ort

    path = CORPUS / item["file"]
    ((name, shape),) = item["input_shape"].items()
    if item.get("quantized"):
        with pytest.raises(UserError, match="is not supported by the trainer's converter"):
            convert(path, input_shape=shape)
        return
    module = convert(path, input_shape=shape).eval()
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, shape).astype(np.int32) if "int" in feed.type else rng.random(shape).astype(np.float32)
    expected = session.run(None, {feed.name: x})
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    got = [got] if isinstance(got, torch.Tensor) else list(got)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert np.abs(g.numpy().astype(np.float64) - e).max() <= 1e-4 * max(1.0, float(np.abs(e).max()))
    # the weights written back (initializers or Constant nodes) give the same graph, the same outputs
    import onnx

    source = onnx.load(str(path))
    back = write_back(module, source)
    assert [n.name for n in back.graph.node] == [n.name for n in source.graph.node]
    again = ort.InferenceSession(back.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for a, e in zip(again.run(None, {feed.name: x}), expected):
        assert np.array_equal(a, e)
