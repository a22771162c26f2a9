"""Patterns real exporters write (tests/pattern_models.py): Constant-node weights, unnamed nodes,
computed Reshape targets, LSTMs, `?` dims, quantized ops; profile must read every one of them."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxprune import profile
from onnxprune.cli import main
from onnxprune.graph import display_name, load_graph
from tests import pattern_models as pm


def _save(tmp_path, model, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, path)
    return str(path)


# ---- Constant-node weights, unnamed nodes (issue 16 item 1, issue 11 item 3) ----------------------
def test_unnamed_constant_node_weights_count_like_initializers():
    p = profile(pm.constant_weights(c1=4, c2=6))
    assert p.totals["params"] == pm.constant_weights_params(4, 6)  # the old code counted 108 of 177


def test_constant_node_weights_equal_the_initializer_form():
    model = pm.constant_weights()
    as_inits = onnx.ModelProto()
    as_inits.CopyFrom(model)
    for node in [n for n in as_inits.graph.node if n.op_type == "Constant"]:
        value = onnx.numpy_helper.to_array(node.attribute[0].t) if node.attribute[0].name == "value" \
            else np.asarray(node.attribute[0].floats, np.float32)
        as_inits.graph.initializer.append(onnx.numpy_helper.from_array(value, node.output[0]))
        as_inits.graph.node.remove(node)
    strip = lambda rows: [{k: v for k, v in row.items() if k != "node"} for row in rows]  # noqa: E731
    assert strip(profile(as_inits).rows()) == strip(profile(model).rows())


def test_const_source_is_keyed_by_output_tensor_not_node_name():
    mg = load_graph(pm.constant_weights())
    convs = [n for n in mg.nodes if n.op == "Conv"]
    sources = {mg.const_source(n.inputs[1]) for n in convs}
    assert sources == {("constant_node", "w1"), ("constant_node", "w2")}


def test_unnamed_nodes_are_reported_as_op_and_index(tmp_path, capsys):
    path = _save(tmp_path, pm.constant_weights())
    assert main(["profile", path, "--json"]) == 0
    names = [row["node"] for row in json.loads(capsys.readouterr().out)["layers"]]
    assert names == ["Conv#6", "Conv#8", "Gemm#11"]
    assert all(n.name == "" for n in onnx.load(path).graph.node)  # the user's graph is untouched


def test_display_name_prefers_the_name():
    node = onnx.helper.make_node("Relu", ["a"], ["b"], name="act")
    assert display_name(node, 3) == "act"
    node.name = ""
    assert display_name(node, 3) == "Relu#3"


def test_pruning_constant_node_weights_keeps_the_zero_mask_oracle():
    from onnxprune.groups import channel_groups
    from onnxprune.surgery import prune_channels
    from onnxprune.verify import max_relative_error, run, zero_mask

    model = pm.constant_weights(c1=4, c2=6)
    deps = channel_groups(model)
    keep = {g.id: np.arange(g.size) % 2 == 0 for g in deps.prunable}
    if not keep:
        pytest.skip("no prunable group in this tree's groups.py")
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    assert max_relative_error(run(pruned, feeds)[0], run(zero_mask(deps, keep), feeds)[0]) < 1e-5
