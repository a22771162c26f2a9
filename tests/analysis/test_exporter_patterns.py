"""Real exporters' patterns (tests/pattern_models.py): profile's params, MACs and inferred shapes match each one."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

onnxruntime.set_default_logger_severity(3)  # no "removing unused initializer" chatter


# ---- real exporters' patterns (tests/pattern_models.py): profile reads each one right ------------
def _pattern_case(draw):
    """(model, --input-shape or None, expected params, expected MACs) for one drawn pattern."""
    from tests import pattern_models as pm

    kind = draw(
        st.sampled_from(
            ["constant", "computed", "dynamic_hw", "float_computed", "lstm", "qdq", "conv_integer", "qlinear"]
        )
    )
    a, b = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    size = 2 * draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "constant":
        return (
            kind,
            pm.constant_weights(rng, a, b, size, value_floats=draw(st.booleans())),
            None,
            pm.constant_weights_params(a, b),
            size * size * (a * 27 + b * a) + 5 * b,
        )
    if kind in ("computed", "dynamic_hw"):
        model = pm.computed_reshape(rng, a, size, hw="H" if kind == "dynamic_hw" else size)
        return kind, model, {"x": [1, 3, size, size]}, a * 27 + 6, a * size * size * (27 + 3)
    if kind == "float_computed":
        return kind, pm.float_computed_reshape(rng, a, size), None, a * 27 + 6, a * size * size * (27 + 3)
    if kind == "lstm":
        model = pm.lstm_consumer(rng, a, b, width="W")
        params = a * 9 + 4 * b * (a + b) + b * 7
        return kind, model, {"x": [1, 3, 1, size]}, params, size * (a * 9 + 4 * b * (a + b) + b * 7)
    if kind == "qdq":
        per_channel = 3 * b if b > 1 else 0  # weight scale + zero point, bias scale; a 1-element one is a scalar
        return (
            kind,
            pm.qdq_conv(rng, a, b, size),
            None,
            b * a * 9 + b + per_channel + 10 * b + 30,
            b * size * size * a * 9 + 10 * b,
        )
    if kind == "conv_integer":
        return (
            kind,
            pm.conv_integer(rng, a, b, size),
            None,
            b * a * 9 + b * 4,
            b * size * size * a * 9 + size * size * b * 4,
        )
    per_channel = 2 * b if b > 1 else 0
    return (
        kind,
        pm.qlinear_conv(rng, a, b, size),
        None,
        b * a * 9 + b + per_channel + size * 6,
        b * size * size * a * 9 + b * size * size * 6,
    )


def _run_shapes(model, shapes) -> dict:
    """Every node output's shape in one onnxruntime run (the oracle for inferred shapes)."""
    names = [o for n in model.graph.node for o in n.output if o]
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    declared = {o.name for o in probed.graph.output}
    probed.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in declared)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(probed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        shape = (shapes or {}).get(value.name) or [d if isinstance(d, int) else 1 for d in value.shape]
        feeds[value.name] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return {name: tuple(v.shape) for name, v in zip(names, session.run(names, feeds))}


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_exporter_patterns_profile_like_their_formulas(data):
    from onnxprune import profile
    from onnxprune.read.shapes import infer_shapes

    kind, model, shapes, params, macs = _pattern_case(data.draw)
    note(kind)
    result = profile(model, shapes)
    assert (result.totals["params"], result.totals["flops"]) == (params, macs)
    assert result.uncounted == []
    infos = infer_shapes(model, shapes)
    actual = _run_shapes(model, shapes)
    for name, shape in actual.items():
        info = infos.get(name)
        assert info is not None and info.known and tuple(info.shape) == shape, (name, info, shape)
