"""Patterns real exporters write (tests/pattern_models.py): Constant-node weights, unnamed nodes,
computed Reshape targets, LSTMs, `?` dims, quantized ops; profile must read every one of them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxprune import profile
from onnxprune.cli import main
from onnxprune.read.graph import display_name, load_graph
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
        value = (
            onnx.numpy_helper.to_array(node.attribute[0].t)
            if node.attribute[0].name == "value"
            else np.asarray(node.attribute[0].floats, np.float32)
        )
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
    from onnxprune.analysis.groups import channel_groups
    from onnxprune.measure.verify import max_relative_error, run, zero_mask
    from onnxprune.prune.surgery import prune_channels

    model = pm.constant_weights(c1=4, c2=6)
    deps = channel_groups(model)
    assert not any("shared" in reason for g in deps.groups for reason in g.reasons)  # old code: 'w2' shared
    keep = {g.id: np.arange(g.size) % 2 == 0 for g in deps.prunable}
    assert len(keep) == 2  # both convs' groups; the Gemm's is the graph output
    pruned = prune_channels(deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    assert max_relative_error(run(pruned, feeds)[0], run(zero_mask(deps, keep), feeds)[0]) < 1e-5


# ---- quantized graphs (issue 11 item 4) --------------------------------------------------------
def _rows(model, shapes=None):
    return {r["node"]: r for r in profile(model, shapes).rows()}


def test_qdq_conv_counts_int8_weights_like_the_float_op():
    rows = _rows(pm.qdq_conv(cin=3, cout=8, size=8))
    # 216 int8 weights + 8 scales + 8 zero points + 8 int32 bias + 8 bias scales
    assert rows["conv"]["params"] == 216 + 8 + 8 + 8 + 8
    assert rows["conv"]["flops"] == 8 * 64 * 27  # the float Conv's MACs
    weight_bytes = 216 * 1 + 8 * 4 + 8 * 1 + 8 * 4 + 8 * 4
    assert rows["conv"]["memory_bytes"] == weight_bytes + 8 * 64 * 4
    assert rows["fc"]["params"] == 80 + 10 + 10 + 10 and rows["fc"]["flops"] == 80


def test_conv_integer_and_matmul_integer_are_counted():
    rows = _rows(pm.conv_integer(cin=3, cout=8, size=8))
    assert rows["conv_int"] == {
        "node": "conv_int",
        "op": "ConvInteger",
        "out_channels": 8,
        "params": 216,
        "flops": 8 * 64 * 27,
        "memory_bytes": 216 + 8 * 64 * 4,
    }  # int8 W, int32 output
    assert rows["matmul_int"]["params"] == 32 and rows["matmul_int"]["flops"] == 64 * 8 * 4


def test_qlinear_conv_and_matmul_are_counted():
    rows = _rows(pm.qlinear_conv(cin=3, cout=8, size=8))
    assert rows["qconv"]["params"] == 216 + 8 + 8 + 8  # W, B, per-channel scale and zero point
    assert rows["qconv"]["memory_bytes"] == 216 + 8 * 4 + 8 * 4 + 8 + 8 * 64  # int8 output
    assert rows["qmatmul"]["params"] == 48 and rows["qmatmul"]["flops"] == 8 * 8 * 8 * 6


@pytest.fixture(scope="module")
def quantized_models(tmp_path_factory):
    """A float model and what onnxruntime's quantizers make of it (dynamic, static QDQ, static QOperator)."""
    quantization = pytest.importorskip("onnxruntime.quantization")
    from tests.analysis.test_complexity import small_model

    folder = tmp_path_factory.mktemp("quantized")
    source = folder / "float.onnx"
    onnx.save(small_model(batch=1), source)

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.feeds = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.feeds, None)

    paths = {
        "float": source,
        "dynamic": folder / "dynamic.onnx",
        "qdq": folder / "qdq.onnx",
        "qoperator": folder / "qoperator.onnx",
    }
    quantization.quantize_dynamic(
        source,
        paths["dynamic"],
        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        weight_type=quantization.QuantType.QInt8,
    )
    quantization.quantize_static(
        source, paths["qdq"], Reader(), quant_format=quantization.QuantFormat.QDQ, per_channel=True
    )
    quantization.quantize_static(
        source, paths["qoperator"], Reader(), quant_format=quantization.QuantFormat.QOperator, per_channel=True
    )
    return {k: str(v) for k, v in paths.items()}


@pytest.mark.parametrize(
    "kind,ops",
    [("dynamic", {"ConvInteger", "MatMulInteger"}), ("qdq", {"Conv", "Gemm"}), ("qoperator", {"QLinearConv", "QGemm"})],
)
def test_quantizer_outputs_keep_the_float_macs(quantized_models, kind, ops):
    ours = profile(quantized_models[kind])
    floats = profile(quantized_models["float"])
    assert {r["op"] for r in ours.rows()} - {"BatchNormalization"} == ops
    assert ours.totals["flops"] == floats.totals["flops"] and ours.uncounted == []
    weights = 4 * 27 + 5 * 4  # conv and fc weight elements, stored as int8
    assert ours.totals["params"] >= weights and ours.totals["memory_bytes"] < floats.totals["memory_bytes"]


def _onnx_tool_rows(path):
    onnx_tool = pytest.importorskip("onnx_tool")
    model = onnx_tool.Model(str(path))
    model.graph.shape_infer()
    model.graph.profile()
    return model.graph.nodemap


@pytest.mark.parametrize("builder", [pm.qdq_conv, pm.qlinear_conv])
def test_quantized_totals_match_onnx_tool(tmp_path, builder):
    """Per layer: onnx-tool's params (it puts a QDQ weight's on its DequantizeLinear) and MACs
    (minus its one MAC per output element for a bias)."""
    path = _save(tmp_path, builder())
    ours = _rows(onnx.load(path))
    nodes = _onnx_tool_rows(path)
    producers = {out: node for node in nodes.values() for out in node.output}
    compared = 0
    for node in nodes.values():
        if node.op_type not in ("Conv", "Gemm", "MatMul", "QLinearConv", "QLinearMatMul"):
            continue
        params = int(node.params) + sum(
            int(producers[i].params)
            for i in node.input
            if i in producers and producers[i].op_type == "DequantizeLinear"
        )
        bias = {"Conv": 2, "Gemm": 2, "QLinearConv": 8}.get(node.op_type)
        bias_macs = int(np.prod(node.outshape)) if bias is not None and len(node.input) > bias else 0
        assert ours[node.name]["params"] == params, node.name
        assert ours[node.name]["flops"] == int(node.macs[0]) - bias_macs, node.name
        compared += 1
    assert compared == 2


# ---- weights profile cannot count: warn in profile, refuse in check (issue 16 item 2) ------------
def test_profile_warns_about_weights_it_cannot_count(tmp_path, capsys):
    path = _save(tmp_path, pm.custom_weight_op(channels=8))
    assert main(["profile", path, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["uncounted"] == [{"node": "mix", "op": "com.example.MysteryMix", "elements": 64}]
    assert "warning" in captured.err and "mix" in captured.err


def test_check_refuses_a_model_it_cannot_measure(tmp_path, capsys):
    path = _save(tmp_path, pm.custom_weight_op(channels=8))
    assert main(["check", path, "--max-params", "1T"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "MysteryMix" in err and "--allow-uncounted" in err
    assert main(["check", path, "--max-params", "1T", "--allow-uncounted"]) == 0
    assert "warning" in capsys.readouterr().err


def test_check_measures_a_dynamically_quantized_model(quantized_models, capsys):
    """Old code: 0 layers, totals 0, PASS at --max-params 1."""
    assert main(["check", quantized_models["dynamic"], "--max-params", "1", "--max-flops", "1"]) == 1


def test_constant_first_matmul_is_reported():
    model = pm.custom_weight_op(channels=8)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "left"))
    model.graph.node[1].CopyFrom(onnx.helper.make_node("MatMul", ["left", "c"], ["y"], name="w_times_x"))
    del model.opset_import[1:]
    assert [(u["node"], u["elements"]) for u in profile(model).uncounted] == [("w_times_x", 16)]


def test_embedding_table_is_reported():
    table = onnx.numpy_helper.from_array(np.ones((100, 8), np.float32), "table")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Gather", ["table", "ids"], ["y"], name="embed")],
        "embedding",
        [onnx.helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 5])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 5, 8])],
        [table],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    assert profile(model).uncounted == [{"node": "embed", "op": "Gather", "elements": 800}]


def test_elementwise_constants_are_not_weights():
    """A bias Add and a YOLO-style anchor grid Mul are understood, not uncounted weights."""
    model = pm.custom_weight_op(channels=8)
    grid = onnx.numpy_helper.from_array(np.ones((1, 8, 4, 4), np.float32), "grid")
    model.graph.initializer.append(grid)
    model.graph.node[1].CopyFrom(onnx.helper.make_node("Mul", ["c", "grid"], ["y"], name="scale_by_grid"))
    assert profile(model).uncounted == []


def test_lstm_is_a_counted_layer():
    rows = _rows(pm.lstm_consumer(channels=4, hidden=5), {"x": [1, 3, 1, 16]})
    # W [1, 20, 4] + R [1, 20, 5]; 16 steps x 4 gates x 5 hidden x (4 inputs + 5 hidden)
    assert rows["lstm"]["params"] == 180 and rows["lstm"]["flops"] == 16 * 20 * 9


def test_dynamic_quantize_lstm_counts_like_the_float_lstm():
    row = _rows(pm.dynamic_quantize_lstm(inputs=4, hidden=5, steps=6))["qlstm"]
    # int8 W [1, 4, 20] + int8 R [1, 5, 20] + float B [1, 40]; 6 steps x 20 gate rows x (4 + 5)
    assert (row["params"], row["flops"]) == (80 + 100 + 40, 6 * 20 * 9)
    assert row["memory_bytes"] == 80 + 100 + 40 * 4 + 6 * 5 * 4
