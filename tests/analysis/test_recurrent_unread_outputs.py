"""A recurrent layer's cost comes from X's shape and its weights, never from an output's shape: Y is
often read by nothing (spox's silero-vad export), and shape inference may leave an unread tensor
unknown. Before: exit 2, "the shape of '...LSTM_output_0' cannot be inferred" (probe finding 4)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import profile
from onnxprune.errors import UserError

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
HIDDEN, INPUT = 16, 8


def recurrent_model(op: str, y: str = "unread", directions: int = 1, hidden_attr: bool = True) -> onnx.ModelProto:
    """x [1, 8] reshaped to X [1, 1, 8] through a Div that ONNX inference does not follow (so only a
    fallback resolves X), then `op`; the graph's output is Y_h. `y`: "unread" (named, read by
    nothing), "omitted" (no Y output) or "read" (a graph output too)."""
    rng = np.random.default_rng(0)
    rows = GATES[op] * HIDDEN

    def const(value, name):
        return numpy_helper.from_array(np.asarray(value), name)

    inits = [
        const(rng.standard_normal((directions, rows, INPUT)).astype(np.float32), "W"),
        const(rng.standard_normal((directions, rows, HIDDEN)).astype(np.float32), "R"),
        const(np.array([0], np.int64), "i0"),
        const(np.array([1], np.int64), "one"),
        const(np.array([INPUT], np.int64), "eight"),
    ]
    attrs = {"hidden_size": HIDDEN} if hidden_attr else {}
    if directions == 2:
        attrs["direction"] = "bidirectional"
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["b"]),
        helper.make_node("Div", ["b", "one"], ["b2"]),  # ONNX data propagation stops here
        helper.make_node("Concat", ["one", "b2", "eight"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["X"]),
        helper.make_node(op, ["X", "W", "R"], ["" if y == "omitted" else "Y", "Y_h"], name="cell", **attrs),
    ]
    outputs = [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [directions, 1, HIDDEN])]
    if y == "read":
        outputs.append(helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, directions, 1, HIDDEN]))
    graph = helper.make_graph(
        nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, INPUT])], outputs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def expected(op: str, directions: int = 1) -> dict:
    """seq 1, batch 1: MACs = directions x gates x H x (I + H); memory = weights + Y (float)."""
    params = directions * GATES[op] * HIDDEN * (INPUT + HIDDEN)
    return {"params": params, "flops": params, "memory_bytes": 4 * params + 4 * directions * HIDDEN}


@pytest.mark.parametrize("op", sorted(GATES))
@pytest.mark.parametrize("y", ["unread", "omitted"])
def test_cost_does_not_need_an_unread_output(op, y):
    result = profile(recurrent_model(op, y))
    assert result.totals == expected(op)
    assert [(row["node"], row["op"]) for row in result.rows()] == [("cell", op)]
    assert result.totals == profile(recurrent_model(op, "read")).totals  # Y read or not: one cost


@pytest.mark.parametrize("op", sorted(GATES))
def test_bidirectional_and_hidden_size_from_r(op):
    assert profile(recurrent_model(op, directions=2)).totals == expected(op, 2)
    assert profile(recurrent_model(op, hidden_attr=False)).totals == expected(op)  # H read from R's shape


def test_refuses_when_x_itself_is_unknown():
    """What the cost does need (X's shape) still refuses, naming X, not Y: here X comes from an op
    no tool can evaluate."""
    model = recurrent_model("LSTM")
    model.graph.node[4].CopyFrom(helper.make_node("Mystery", ["x"], ["X"], domain="com.example"))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UserError, match=r"node 'cell' \(LSTM\): the shape of 'X' cannot be inferred"):
        profile(model)
