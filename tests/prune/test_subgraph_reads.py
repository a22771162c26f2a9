"""Tensors read only inside If/Loop/Scan bodies (by name, from the outer scope) stay read after surgery.

The probe's silero-vad (op15) and openwakeword models read weights only inside an If branch; surgery
dropped them as unused and the checker rejected the graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.analysis.groups import channel_groups
from onnxprune.measure.verify import max_relative_error, run, zero_mask
from onnxprune.prune.surgery import drop_dead_constants
from onnxprune.read.graph import node_reads

FEEDS = {
    True: {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32), "cond": np.array(True)},
    False: {"x": np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32), "cond": np.array(False)},
}


def _branch(name: str, nodes: list, output: str) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(output, TensorProto.FLOAT, [4])])


def if_model() -> onnx.ModelProto:
    """Conv -> Relu -> Conv -> y (prunable), and an If whose branches read the outer initializer
    `w_branch` and the Constant node output `c_branch` only by name, one of them two levels deep."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((4, 16, 3, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "w_branch"),
    ]
    inner = helper.make_node(  # an If inside the then-branch: w_branch is read at depth 2
        "If",
        ["cond"],
        ["t_out"],
        then_branch=_branch("then_then", [helper.make_node("Identity", ["w_branch"], ["tt"])], "tt"),
        else_branch=_branch("then_else", [helper.make_node("Neg", ["w_branch"], ["te"])], "te"),
    )
    then_branch = _branch("then", [inner], "t_out")
    else_branch = _branch("else", [helper.make_node("Add", ["w_branch", "c_branch"], ["e_out"])], "e_out")
    nodes = [
        helper.make_node("Constant", [], ["c_branch"], value=numpy_helper.from_array(np.full(4, 0.5, np.float32))),
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4, name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["y"], pads=[1] * 4, name="head"),
        helper.make_node("If", ["cond"], ["z"], then_branch=then_branch, else_branch=else_branch),
    ]
    graph = helper.make_graph(
        nodes,
        "if_outer_scope",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [4]),
        ],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def test_node_reads_include_outer_scope_reads_at_any_depth():
    branching = if_model().graph.node[-1]
    # direct input, then what the branches read from outside (body-local names such as "tt" are not)
    assert set(node_reads(branching)) == {"cond", "w_branch", "c_branch"}


@pytest.mark.parametrize("init", ["keep", "reinit"])
def test_shrink_keeps_what_only_a_branch_reads(init):
    original = if_model()
    pruned, report = onnxprune.shrink(original, mode="FA", target=0.5, init=init, round_to=1)
    assert report["layers"] and report["after"]["flops"] < report["before"]["flops"]
    onnx.checker.check_model(pruned, full_check=True)
    assert "w_branch" in {i.name for i in pruned.graph.initializer}
    assert "c_branch" in {o for n in pruned.graph.node for o in n.output}
    for cond in (True, False):
        got, want = run(pruned, FEEDS[cond]), run(original, FEEDS[cond])
        assert got[0].shape == want[0].shape
        np.testing.assert_array_equal(got[1], want[1])  # the branch's output does not depend on the pruning
    if init == "keep":
        deps = channel_groups(original)
        keep = deps.keep_from_layers({row["node"]: row["kept"] for row in report["layers"]})
        masked = zero_mask(deps, keep)
        for cond in (True, False):
            assert max_relative_error(run(pruned, FEEDS[cond])[0], run(masked, FEEDS[cond])[0]) < 1e-5


def test_dead_constant_sweep_spares_a_constant_a_branch_reads():
    """Surgery re-pointed every main-graph reader away from `c_branch` (it has none): the else-branch
    still reads it, so the sweep of dead constants keeps it."""
    model = if_model()
    drop_dead_constants(model, ["c_branch"])
    assert model.graph.node[0].output[0] == "c_branch"
    onnx.checker.check_model(model, full_check=True)
