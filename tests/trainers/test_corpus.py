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
from trainers.convert.writeback import CannotWriteBack, write_back  # noqa: E402

CORPUS = Path(os.environ.get("CORPUS_DIR", "build/corpus"))
MANIFEST = CORPUS / "manifest.json"
ITEMS = json.loads(MANIFEST.read_text())["models"] if MANIFEST.is_file() else []
pytestmark = pytest.mark.skipif(not ITEMS, reason=f"no corpus at {CORPUS} (run `make corpus`, set CORPUS_DIR)")


def _params():
    """One case per model; the converter's known failures and refusals (tests/models/test_corpus.py) marked."""
    from tests.models.test_corpus import CONVERTER_REFUSALS, KNOWN_FAILURES, WRITEBACK_REFUSALS

    out = []
    for item in ITEMS:
        reason = KNOWN_FAILURES.get(("convert", item["name"]))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        refusals = (CONVERTER_REFUSALS.get(item["name"]), WRITEBACK_REFUSALS.get(item["name"]))
        out.append(pytest.param(item, refusals, marks=marks, id=item["name"]))
    return out


@pytest.mark.parametrize("item,refusals", _params() if ITEMS else [])
def test_converter_matches_onnxruntime(item, refusals):
    import onnxruntime as ort

    from models.corpus_oracles import feeds

    path = CORPUS / item["file"]
    shape = next(iter(item["input_shape"].values()))
    refusal, writeback_refusal = refusals
    if item.get("quantized") or refusal:
        with pytest.raises(UserError, match="is not supported by the trainer's converter"):
            convert(path, input_shape=shape)
        return
    module = convert(path, input_shape=shape).eval()
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = feeds({**item, "path": str(path)})
    expected = session.run(None, inputs)
    with torch.no_grad():
        got = module(*[torch.from_numpy(x) for x in inputs.values()])
    got = [got] if isinstance(got, torch.Tensor) else list(got)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert np.abs(g.numpy().astype(np.float64) - e).max() <= 1e-4 * max(1.0, float(np.abs(e).max()))
    # the weights written back (initializers or Constant nodes) give the same graph, the same outputs
    import onnx

    source = onnx.load(str(path))
    if writeback_refusal:  # train exports such a graph through torch instead
        with pytest.raises(CannotWriteBack, match=writeback_refusal):
            write_back(module, source)
        return
    back = write_back(module, source)
    assert [n.name for n in back.graph.node] == [n.name for n in source.graph.node]
    again = ort.InferenceSession(back.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for a, e in zip(again.run(None, inputs), expected):
        assert np.array_equal(a, e)
