"""Profile numbers: a hand calculation, onnx-tool parity on the zoo, published figures, the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import profile
from onnxprune.cli import main
from tests.conftest import BN_VARIANTS, CIFAR_MODELS, EXPORTERS


def _init(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal(shape).astype(dtype), name)


def small_model(batch="N") -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv 3->4 k3 p1 (+bias) -> BN -> Relu -> GAP -> Flatten -> Gemm 4->5 (+bias)."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "t", "m", "v"], ["bn"], name="bn1"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1),
    ]
    inits = [
        _init("w1", (4, 3, 3, 3)),
        _init("b1", (4,)),
        _init("s", (4,)),
        _init("t", (4,)),
        _init("m", (4,)),
        numpy_helper.from_array(np.ones(4, np.float32), "v"),
        _init("w2", (5, 4)),
        _init("b2", (5,)),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_hand_calculation():
    p = profile(small_model())
    rows = {r["node"]: r for r in p.rows()}
    # conv1: 4*3*3*3 weights + 4 bias; MACs 4 out ch * 8*8 px * 3*3*3; output 4*8*8 floats
    assert rows["conv1"] == {
        "node": "conv1",
        "op": "Conv",
        "out_channels": 4,
        "params": 112,
        "flops": 6912,
        "memory_bytes": 4 * (112 + 256),
    }
    # bn1: scale, shift, mean, var of 4 channels; no MACs; output 4*8*8
    assert rows["bn1"]["params"] == 16 and rows["bn1"]["flops"] == 0 and rows["bn1"]["memory_bytes"] == 4 * (16 + 256)
    # fc: 5x4 weights + 5 bias; 4*5 MACs; output 5 floats
    assert rows["fc"]["params"] == 25 and rows["fc"]["flops"] == 20 and rows["fc"]["memory_bytes"] == 4 * (25 + 5)
    assert p.totals == {"params": 153, "flops": 6932, "memory_bytes": 1472 + 1088 + 120}


def test_batch_override_scales_flops_and_activations():
    one, four = profile(small_model()), profile(small_model(), {"x": [4, 3, 8, 8]})
    assert four.totals["params"] == one.totals["params"]
    assert four.totals["flops"] == 4 * one.totals["flops"]


def test_shared_initializer_counts_once():
    model = small_model()
    model.graph.node.append(helper.make_node("Gemm", ["f", "w2", "b2"], ["y2"], name="fc_again", transB=1))
    model.graph.output.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["N", 5]))
    p = profile(model)
    rows = {r["node"]: r for r in p.rows()}
    assert rows["fc_again"]["params"] == 0 and rows["fc_again"]["flops"] == 20
    assert p.totals["params"] == 153


def test_float16_memory_uses_two_bytes():
    from onnxprune.measure.verify import run

    model = small_model()
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    rows = {r["node"]: r for r in profile(model).rows()}
    assert rows["conv1"]["memory_bytes"] == 2 * (112 + 256)
    assert run(model)[0].dtype == np.float16


@pytest.mark.parametrize("name", CIFAR_MODELS)
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("bn", BN_VARIANTS)
def test_matches_onnx_tool(zoo_model, name, exporter, bn):
    onnx_tool = pytest.importorskip("onnx_tool")
    path = zoo_model(name, exporter, bn)
    ours = {r["node"]: r for r in profile(path).rows()}
    theirs = onnx_tool.Model(str(path))
    theirs.graph.shape_infer()
    theirs.graph.profile()
    compared = 0
    for node in theirs.graph.nodemap.values():
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        row = ours[node.name]
        assert row["params"] == int(node.params), node.name
        macs = int(node.macs[0])
        has_bias = node.op_type in ("Conv", "Gemm") and len(node.input) > 2
        out_elements = int(np.prod(node.outshape))
        # onnx-tool adds one MAC per output element for a bias; we do not count it
        assert macs == row["flops"] + (out_elements if has_bias else 0), node.name
        compared += 1
    assert compared >= 5


@pytest.mark.parametrize(
    "name,params,macs,tolerance",
    [
        ("vgg16_cifar", 15.0e6, 313e6, 0.03),
        ("resnet50_imagenet", 25.6e6, 4.1e9, 0.03),
        ("mobilenetv2_imagenet", 3.5e6, 300e6, 0.03),
    ],
)
def test_published_figures(zoo_model, name, params, macs, tolerance):
    totals = profile(zoo_model(name, "legacy", "kept")).totals
    assert abs(totals["params"] - params) / params < tolerance
    assert abs(totals["flops"] - macs) / macs < tolerance


def test_profile_cli_json(zoo_model, capsys):
    path = zoo_model("vgg16_cifar", "dynamo", "kept")
    assert main(["profile", str(path), "--json", "--sort", "flops", "--top", "3"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"model", "shape_method", "shape_fallbacks", "totals", "layers", "uncounted"}
    assert payload["shape_method"] == "onnx" and payload["uncounted"] == []
    assert payload["shape_fallbacks"] == {"fallbacks": [], "unknown_unread": []}
    assert set(payload["totals"]) == {"params", "flops", "memory_bytes"}
    assert len(payload["layers"]) == 3
    assert set(payload["layers"][0]) == {
        "node",
        "op",
        "input_shape",
        "output_shape",
        "out_channels",
        "params",
        "flops",
        "memory_bytes",
    }
    flops = [layer["flops"] for layer in payload["layers"]]
    assert flops == sorted(flops, reverse=True)


def test_profile_cli_table(zoo_model, capsys):
    assert main(["profile", str(zoo_model("alexnet_cifar", "legacy", "folded"))]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "Conv" in out and "Gemm" in out


def test_symbolic_batch_defaults_to_one_and_input_shape_overrides(tmp_path, capsys):
    path = tmp_path / "small.onnx"
    onnx.save(small_model(), path)
    assert main(["profile", str(path), "--json"]) == 0
    one = json.loads(capsys.readouterr().out)["totals"]["flops"]
    assert main(["profile", str(path), "--json", "--input-shape", "x=2x3x8x8"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["flops"] == 2 * one


def _bad_inputs(tmp_path):
    random_bytes = tmp_path / "random.onnx"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(small_model().SerializeToString()[:300])
    external = tmp_path / "external.onnx"
    onnx.save(
        small_model(),
        external,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="external.onnx.data",
        size_threshold=0,
    )
    (tmp_path / "external.onnx.data").unlink()
    return {
        "missing": tmp_path / "nope.onnx",
        "directory": tmp_path,
        "random": random_bytes,
        "truncated": truncated,
        "external": external,
    }


@pytest.mark.parametrize("case", ["missing", "directory", "random", "truncated", "external"])
def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys, case):
    path = _bad_inputs(tmp_path)[case]
    assert main(["profile", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in captured.err
    assert captured.out == ""


def test_unknown_input_name_and_bad_shape_spec(tmp_path, capsys):
    path = tmp_path / "small.onnx"
    onnx.save(small_model(), path)
    assert main(["profile", str(path), "--input-shape", "nope=1x3x8x8"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["profile", str(path), "--input-shape", "x=1xAx8"]) == 2
    assert "--input-shape" in capsys.readouterr().err
