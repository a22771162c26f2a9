"""Converter patterns taken from real third-party graphs, shrunk to a few nodes and checked against
onnxruntime (1e-4): openWakeWord's log-mel floor (a Clip whose bound is computed at run time) and
silero-vad's sequence model (an LSTM whose sequence is the graph input's axis 0, at a length other
than the converter's probe)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

from trainers.convert import convert  # noqa: E402


def _model(nodes, inputs, outputs, inits=(), opset=13):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), name) for name, v in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _assert_matches_onnxruntime(module, model, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    with torch.no_grad():
        got = module(*[torch.from_numpy(v) for v in feeds.values()])
    got = [got] if isinstance(got, torch.Tensor) else list(got)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert tuple(g.shape) == e.shape, (tuple(g.shape), e.shape)
        assert np.abs(g.numpy().astype(np.float64) - e).max() <= 1e-4 * max(1.0, float(np.abs(e).max()))


@pytest.mark.parametrize("bounds", ["computed min, constant max", "computed min only", "computed max only"])
def test_clip_with_a_bound_computed_at_run_time(bounds):
    """openWakeWord: Clip(db, max(db) - 80, +big), the floor read off the whole tensor at run time."""
    lo, hi = {
        "computed min, constant max": ("floor", "ceiling"),
        "computed min only": ("floor", ""),
        "computed max only": ("", "floor"),
    }[bounds]
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["peak"], name="peak", keepdims=0),
        helper.make_node("Sub", ["peak", "range"], ["floor"], name="floor"),
        helper.make_node("Clip", ["x", lo, hi], ["y"], name="clip"),
    ]
    inits = [("range", 1.0)] + ([("ceiling", 1e8)] if hi == "ceiling" else [])
    model = _model(nodes, [("x", ["N", 6, 5])], ["y"], inits)
    module = convert(model).eval()
    for batch in (1, 3):  # the floor follows the values (and batch) that come, not the probe's
        x = np.random.default_rng(batch).standard_normal((batch, 6, 5)).astype(np.float32)
        _assert_matches_onnxruntime(module, model, {"x": x})


def test_lstm_reading_axis_0_as_its_sequence_runs_at_any_length():
    """silero-vad: chunks [T, F] -> [T, 1, F] -> LSTM (sequence T, batch 1, state fed in) -> [T]."""
    hidden, features = 4, 3
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1, 4 * hidden, features)) * 0.5
    r = rng.standard_normal((1, 4 * hidden, hidden)) * 0.5
    head = rng.standard_normal((hidden, 1))
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axis1"], ["seq"], name="unsqueeze"),
        helper.make_node(
            "LSTM", ["seq", "w", "r", "", "", "h", "c"], ["y", "hn", "cn"], name="lstm", hidden_size=hidden
        ),
        helper.make_node("Squeeze", ["y", "axis1"], ["states"], name="squeeze"),  # [T, 1, H]
        helper.make_node("MatMul", ["states", "head"], ["logits"], name="head"),  # [T, 1, 1]
        helper.make_node(
            "Reshape", ["logits", "flat"], ["probs"], name="flatten"
        ),  # [-1]: the probe's T is not baked in
    ]
    model = _model(
        nodes,
        [("x", ["sequence_length", features]), ("h", [1, 1, hidden]), ("c", [1, 1, hidden])],
        ["probs", "hn", "cn"],
        [("w", w), ("r", r), ("head", head)],
    )
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
            numpy_helper.from_array(np.array([-1], np.int64), "flat"),
        ]
    )
    module = convert(model, input_shape=[4, features]).eval()
    for length in (4, 2, 7):
        feeds = {
            "x": rng.standard_normal((length, features)).astype(np.float32),
            "h": rng.standard_normal((1, 1, hidden)).astype(np.float32),
            "c": rng.standard_normal((1, 1, hidden)).astype(np.float32),
        }
        _assert_matches_onnxruntime(module, model, feeds)
