"""On the real-graph corpus (`make corpus`; skipped when absent): every tensor's shape that the
graph uses resolves (ONNX, symbolic or probe) and equals the shape an onnxruntime run on random
inputs produces. A tensor nothing reads (an LSTM's unused state, a Dropout mask) starts no
fallback: it may stay unknown, and is listed in `unknown_unread`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune.read.io import load_model
from onnxprune.read.shapes import infer_shapes

CORPUS_DIR = Path(os.environ.get("CORPUS_DIR") or Path(__file__).resolve().parents[2] / "build" / "corpus")
MANIFEST = CORPUS_DIR / "manifest.json"
ENTRIES = json.loads(MANIFEST.read_text())["models"] if MANIFEST.exists() else []
DTYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}

pytestmark = pytest.mark.skipif(not ENTRIES, reason=f"real-graph corpus absent from {CORPUS_DIR}: run `make corpus`")


def _run_shapes(model: onnx.ModelProto, input_shape: dict) -> dict:
    import onnxruntime as ort

    names = [o for n in model.graph.node for o in n.output if o]
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    del exposed.graph.value_info[:]
    declared = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in declared)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    # an input the manifest does not shape has a fixed shape of its own (silero-vad's LSTM states)
    shapes = {i.name: input_shape.get(i.name, i.shape) for i in session.get_inputs()}
    feeds = {i.name: (rng.random(shapes[i.name]) * 10).astype(DTYPES[i.type]) for i in session.get_inputs()}
    return {name: value.shape for name, value in zip(names, session.run(names, feeds)) if isinstance(value, np.ndarray)}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_every_tensor_shape_resolves_and_matches_a_run(entry):
    model = load_model(CORPUS_DIR / entry["file"])
    infos = infer_shapes(model, entry["input_shape"])
    read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    assert not read & set(infos.unknown_unread)
    for name, shape in _run_shapes(model, entry["input_shape"]).items():
        info = infos.get(name)
        if name in infos.unknown_unread:
            continue
        assert info is not None and info.known, f"{name}: unresolved by {infos.method} ({infos.failures})"
        assert tuple(info.shape) == shape, name
