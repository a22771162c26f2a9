"""Shapes that always resolve: ONNX inference, then onnxruntime's symbolic inference, then a probe
run; the method is reported; the `--input-shape` hint uses the model's own rank and dims."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from onnxprune import profile
from onnxprune.cli import main
from onnxprune.errors import UserError
from onnxprune.read.shapes import infer_shapes, input_shape_hint
from tests import pattern_models as pm


def _save(tmp_path, model, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, path)
    return str(path)


def test_plain_graph_resolves_with_onnx_alone():
    infos = infer_shapes(pm.qdq_conv())
    assert infos.method == "onnx" and infos.failures == []


def test_reshape_computed_by_shape_arithmetic_resolves_symbolically():
    infos = infer_shapes(pm.computed_reshape(channels=4), {"x": [1, 3, 8, 8]})
    assert infos.method == "symbolic"
    assert infos["r"].shape == (1, 128, 2) and infos["y"].shape == (1, 128, 3)


def test_reshape_computed_through_float_values_resolves_by_probe():
    infos = infer_shapes(pm.float_computed_reshape(channels=4, size=8))
    assert infos.method == "probe"
    assert infos["r"].shape == (1, 128, 2) and infos["y"].shape == (1, 128, 3)
    assert {"r", "y"} <= infos.probed and "c" not in infos.probed  # what ONNX inferred is not a probe's


@pytest.mark.parametrize("builder,method", [(pm.computed_reshape, "symbolic"), (pm.float_computed_reshape, "probe")])
def test_profile_counts_the_matmul_after_a_computed_reshape(tmp_path, capsys, builder, method):
    path = _save(tmp_path, builder(channels=4, size=8))
    args = ["profile", path, "--json"] + (["--input-shape", "x=1x3x8x8"] if method == "symbolic" else [])
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["shape_method"] == method
    matmul = next(r for r in payload["layers"] if r["op"] == "MatMul")
    assert matmul["flops"] == 128 * 2 * 3 and matmul["params"] == 6


def test_dynamic_height_and_width_from_input_shape():
    small = profile(pm.computed_reshape(channels=4), {"x": [1, 3, 8, 8]}).totals["flops"]
    large = profile(pm.computed_reshape(channels=4), {"x": [1, 3, 16, 16]}).totals["flops"]
    assert large == 4 * small


def test_lstm_consumer_profiles_with_dynamic_width():
    p = profile(pm.lstm_consumer(channels=4, hidden=5), {"x": [1, 3, 1, 16]})
    fc = next(r for r in p.rows() if r["op"] == "MatMul")
    assert fc["flops"] == 16 * 5 * 7


def test_question_mark_dims_and_stale_value_info():
    p = profile(pm.question_mark_dims(channels=4), {"image": [1, 3, 16, 16]})
    assert p.totals["flops"] == 4 * 27 * 16 * 16 and p.shape_method == "onnx"


def test_all_methods_failing_names_the_node(tmp_path, capsys):
    model = pm.custom_weight_op()
    model.graph.node.append(helper.make_node("MatMul", ["y", "mystery_w"], ["z"], name="after_custom"))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 4, 8]))
    assert main(["profile", _save(tmp_path, model)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "after_custom" in err and "probe run" in err


def test_symbolic_dim_hint_uses_the_models_rank_and_dims(tmp_path, capsys):
    value = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    assert input_shape_hint(value) == "images=1x3xHxW"
    assert input_shape_hint(helper.make_tensor_value_info("seq", TensorProto.FLOAT, ["N", 80, "T"])) == "seq=1x80xL"
    nhwc = helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["N", "M1", "M2", 3])  # keras2onnx
    assert input_shape_hint(nhwc) == "input_1=1xHxWx3"
    model = pm.lstm_consumer(width="width")
    with pytest.raises(UserError, match=r"--input-shape x=1x3x1xW\b"):
        infer_shapes(model)
    assert main(["profile", _save(tmp_path, model)]) == 2
    assert "x=1x3x1xW" in capsys.readouterr().err


def test_conv_arithmetic_error_names_an_unnamed_conv_by_op_and_index():
    model = pm.constant_weights(c1=4, c2=6)
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[1] == "w2")
    conv.attribute.append(helper.make_attribute("group", 4))  # 6 output channels do not split into 4
    with pytest.raises(UserError, match=r"node 'Conv#8' \(Conv\)"):
        infer_shapes(model)


def test_probe_resolves_when_symbolic_inference_is_unavailable(monkeypatch):
    from onnxprune.read import shape_fallbacks

    def missing(_):
        raise ImportError("No module named 'sympy'")

    monkeypatch.setattr(shape_fallbacks, "symbolic", missing)
    infos = infer_shapes(pm.computed_reshape(channels=4), {"x": [1, 3, 8, 8]})
    assert infos.method == "probe" and infos["y"].shape == (1, 128, 3)
    assert infos.failures == ["symbolic inference: No module named 'sympy'"]


def _dropout_net(read_mask: bool) -> onnx.ModelProto:
    """Conv -> Dropout (opset 9: ONNX inference leaves the mask's shape unknown) -> output;
    the mask is read by a Cast to a second output only if `read_mask`."""
    import numpy as np
    from onnx import numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Dropout", ["c"], ["y", "mask"], name="drop", ratio=0.5),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])]
    if read_mask:
        nodes.append(helper.make_node("Cast", ["mask"], ["m"], name="cast", to=TensorProto.FLOAT))
        outputs.append(helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 4, 8, 8]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])], outputs, [w]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=4)


def test_an_unread_dropout_mask_starts_no_fallback(monkeypatch):
    from onnxprune.read import shape_fallbacks

    def must_not_run(*args, **kwargs):
        raise AssertionError("a fallback ran for a tensor nothing reads")

    monkeypatch.setattr(shape_fallbacks, "symbolic", must_not_run)
    monkeypatch.setattr(shape_fallbacks, "probe", must_not_run)
    infos = infer_shapes(_dropout_net(read_mask=False))
    assert infos.method == "onnx" and infos.fallbacks == [] and infos.failures == []
    assert infos.unknown_unread == ["mask"]
    assert profile(_dropout_net(read_mask=False)).totals["flops"] == 4 * 27 * 64


def test_profile_json_says_which_fallback_ran_and_why(tmp_path, capsys):
    assert main(["profile", _save(tmp_path, _dropout_net(read_mask=True)), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    fallbacks = payload["shape_fallbacks"]["fallbacks"]
    assert "'mask' (read by Cast 'cast')" in fallbacks[0]["reason"]
    assert [f["method"] for f in fallbacks][-1] == payload["shape_method"] != "onnx"
    assert fallbacks[-1]["resolved"] == fallbacks[-1]["tensors"] == 2  # the mask and its Cast
    assert payload["shape_fallbacks"]["unknown_unread"] == []


def test_a_failed_fallback_is_reported_with_its_error(monkeypatch):
    from onnxprune.read import shape_fallbacks

    def missing(_):
        raise ImportError("No module named 'sympy'")

    monkeypatch.setattr(shape_fallbacks, "symbolic", missing)
    infos = infer_shapes(pm.computed_reshape(channels=4), {"x": [1, 3, 8, 8]})
    symbolic, probe = infos.fallbacks
    assert symbolic["method"] == "symbolic" and symbolic["resolved"] == 0 and "sympy" in symbolic["error"]
    assert probe["method"] == "probe" and probe["resolved"] == probe["tensors"] > 0 and "error" not in probe


def _shared_batch_model(tmp_path):
    """silero-vad's layout: audio [batch, samples] and a state [2, batch, 4] that shares the batch symbol."""
    nodes = [
        helper.make_node("ReduceMean", ["audio"], ["m"], axes=[1], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axes"], ["mu"]),
        helper.make_node("Add", ["state", "mu"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 4]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, "batch", 4])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [0, 2])],
    )
    return _save(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_an_input_sharing_the_batch_symbol_needs_no_shape_of_its_own(tmp_path, capsys):
    from onnxprune.read.inputs import input_specs

    path = _shared_batch_model(tmp_path)
    for batch in (1, 3):
        assert main(["profile", path, "--input-shape", f"audio={batch}x576", "--json"]) == 0
        shapes = {s.name: s.shape for s in input_specs(path, None, {"audio": [batch, 576]})}
        assert shapes == {"audio": (batch, 576), "state": (2, batch, 4)}
    capsys.readouterr()
    assert main(["profile", path]) == 2  # the samples stay unknown: still asked for, in one line
    assert "--input-shape audio=1x" in capsys.readouterr().err


def test_a_failed_symbolic_inference_leaves_no_file_behind(tmp_path, monkeypatch, capsys):
    """onnxruntime's symbolic inference saves `sym_shape_infer_temp.onnx` in the current folder when it
    gives up: it runs in a folder of its own, so the user's folder stays as it was."""
    import numpy as np
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Foo", ["a"], ["f"], name="custom", domain="com.example"),
        helper.make_node("Conv", ["f", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [
            numpy_helper.from_array(rng.standard_normal((64, 3, 3, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.standard_normal((4, 64, 3, 3)).astype(np.float32), "w2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)])
    path = _save(tmp_path, model, "custom.onnx")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["profile", path]) == 2  # the custom op's output shape stays unknown: refused
    assert "cannot be inferred" in capsys.readouterr().err
    assert list(work.iterdir()) == []
