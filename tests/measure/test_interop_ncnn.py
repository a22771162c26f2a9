"""ncnn through pnnx (onnxprune/measure/interop_ncnn.py): rejections, a missing install and pnnx's quirks.
The model matrix (zoo models, a trained model) is in test_interop.py, parametrized over runtimes."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.cli import main
from onnxprune.errors import UserError
from onnxprune.measure import interop_ncnn
from onnxprune.measure.interop import TOLERANCE, compare_with_onnxruntime, run_in, runtime_available
from tests.measure.test_interop import NEEDS, unknown_op_model

needs_ncnn = NEEDS["ncnn"]


@needs_ncnn
def test_rejected_graph_is_one_line_naming_ncnn_and_node(tmp_path, capsys):
    model = unknown_op_model(tmp_path / "custom.onnx")
    with pytest.raises(UserError) as caught:
        run_in("ncnn", model, {"input": np.ones((1, 3, 4, 4), np.float32)})
    message = str(caught.value)
    assert message.startswith("ncnn rejects node 'frob_node' (Frobnicate) while converting it with pnnx: ")
    assert "\n" not in message and "Frobnicate" in message.split(": ", 1)[1]
    assert main(["interop", str(model), "--runtime", "ncnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ncnn rejects node 'frob_node'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["custom.onnx"]


def small_conv(ir_version: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["output"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = ir_version
    return model


@needs_ncnn
def test_ir_versions_newer_than_pnnx_reads_still_convert():
    # pnnx's onnxruntime stops at IR 13; onnx 1.23 writes IR 14 by default
    model = small_conv(interop_ncnn.PNNX_MAX_IR_VERSION + 1)
    assert compare_with_onnxruntime("ncnn", model) <= TOLERANCE
    assert model.ir_version == interop_ncnn.PNNX_MAX_IR_VERSION + 1  # the caller's model is left alone


@needs_ncnn
@pytest.mark.parametrize(
    "feed, complaint",
    [
        (np.ones((2, 3, 8, 8), np.float32), "batch 1"),
        (np.ones((1, 3, 8, 8), np.float64), "float32 inputs only"),
    ],
)
def test_inputs_ncnn_cannot_take_are_one_line_errors(feed, complaint):
    with pytest.raises(UserError, match=complaint):
        run_in("ncnn", small_conv(8), {"input": feed})


def test_pnnx_log_reason_prefers_the_op_over_noise():
    log = (
        "inline_containers ...   no such function with name Frobnicate\n"
        "canonicalize ...        unexpected op_type Frobnicate\n"
        "\x1b[0;93mort CreateSession failed Fatal error: x:Frobnicate(-1) is not a registered function/op\x1b[m\n"
    )
    assert interop_ncnn._log_reason(log, -11) == "unexpected op_type Frobnicate (pnnx crashed with signal 11)"
    assert interop_ncnn._log_reason("", 3) == "no output (pnnx exited 3)"


@needs_ncnn
def test_layers_ncnn_lacks_are_found_in_the_param_file(tmp_path):
    param = tmp_path / "m.param"
    param.write_text("7767517\n3 3\nInput in0 0 1 in0\npnnx.Frobnicate f 1 1 in0 1\nReLU relu 1 1 1 out0\n")
    assert interop_ncnn._unknown_layers(param) == ["pnnx.Frobnicate"]


def test_missing_pnnx_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    pytest.importorskip("ncnn")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        interop_ncnn.importlib.util, "find_spec", lambda name, *a: None if name == "pnnx" else real_find_spec(name, *a)
    )
    assert "install onnxprune[ncnn]" in runtime_available("ncnn")
    assert main(["interop", str(unknown_op_model(tmp_path / "m.onnx")), "--runtime", "ncnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ncnn needs the pnnx converter, which is not installed" in err


def test_missing_ncnn_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ncnn(name, *args, **kwargs):
        if name == "ncnn" or name.startswith("ncnn."):
            raise ImportError("No module named 'ncnn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ncnn)
    assert main(["interop", str(unknown_op_model(tmp_path / "m.onnx")), "--runtime", "ncnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ncnn is not installed" in err and "onnxprune[ncnn]" in err


@needs_ncnn
def test_several_inputs_and_outputs_keep_their_order():
    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["b", "w"], ["conv_out"], name="conv"),
            helper.make_node("Sub", ["conv_out", "a"], ["difference"], name="sub"),
            helper.make_node("Relu", ["b"], ["relu_out"], name="relu"),
        ],
        "g",
        [
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 8, 8]),
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4, 8, 8]),
        ],
        [
            helper.make_tensor_value_info("relu_out", TensorProto.FLOAT, [1, 3, 8, 8]),
            helper.make_tensor_value_info("difference", TensorProto.FLOAT, [1, 4, 8, 8]),
        ],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    feeds = {
        "a": rng.standard_normal((1, 4, 8, 8)).astype(np.float32),  # not the graph's order
        "b": rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
    }
    relu_out, difference = run_in("ncnn", model, feeds)
    np.testing.assert_allclose(relu_out, np.maximum(feeds["b"], 0), atol=1e-6)
    want = np.einsum("oi,nihw->nohw", numpy_helper.to_array(weight)[:, :, 0, 0], feeds["b"]) - feeds["a"]
    np.testing.assert_allclose(difference, want, atol=1e-5)
