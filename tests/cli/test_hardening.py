"""Issue 7: unusual but valid graphs (opsets 11-21, fp16, symbolic batch, subgraphs, QDQ) prune or are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.fuzz import conv_net
from onnxprune.read import save as onnxprune_save
from tests.cli.test_bad_inputs import assert_one_line_error
from tests.cli_helpers import run


def ort_run(path: Path, batch: int = 1) -> list:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in value.shape]
        dtype = np.float16 if "float16" in value.type else np.float32
        feeds[value.name] = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    return session.run(None, feeds)


# ------------------------------------------------------------------------- unusual valid graphs


def _profile_shrink_run(path: Path, tmp_path: Path, capsys, *extra) -> Path:
    rc, out, err = run(["profile", path, "--json", *extra], capsys)
    assert rc == 0, err
    out_path = tmp_path / f"{path.stem}.pruned.onnx"
    rc, out, err = run(["shrink", path, "--mode", "FA", "--target", "0.6", "-o", out_path, "--json", *extra], capsys)
    assert rc == 0, err
    onnx.checker.check_model(onnx.load(str(out_path)), full_check=True)
    ort_run(out_path)
    return out_path


@pytest.mark.parametrize("opset", range(11, 22))
def test_every_opset_11_to_21(opset, tmp_path, capsys):
    path = tmp_path / f"op{opset}.onnx"
    onnx.save(conv_net(opset=opset), str(path))
    ort_run(path)
    pruned = _profile_shrink_run(path, tmp_path, capsys)
    assert onnx.load(str(pruned)).opset_import[0].version == opset


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_torch_legacy_export_at_opset(opset, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    ).eval()
    path = tmp_path / f"torch{opset}.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, 8, 8),),
        str(path),
        opset_version=opset,
        dynamo=False,
        input_names=["input"],
        output_names=["output"],
    )
    _profile_shrink_run(path, tmp_path, capsys)


def test_float16_weights(tmp_path, capsys):
    f32, f16 = tmp_path / "f32.onnx", tmp_path / "f16.onnx"
    onnx.save(conv_net(), str(f32))
    onnx.save(conv_net(dtype=TensorProto.FLOAT16), str(f16))
    import json

    totals = {}
    for path in (f32, f16):
        rc, out, err = run(["profile", path, "--json"], capsys)
        assert rc == 0, err
        totals[path.name] = json.loads(out)["totals"]
    assert totals["f16.onnx"]["params"] == totals["f32.onnx"]["params"]
    assert totals["f16.onnx"]["memory_bytes"] * 2 == totals["f32.onnx"]["memory_bytes"]
    pruned = _profile_shrink_run(f16, tmp_path, capsys)
    assert onnx.load(str(pruned)).graph.initializer[0].data_type == TensorProto.FLOAT16


def test_symbolic_batch_defaults_to_1_and_input_shape_overrides(tmp_path, capsys):
    import json

    path = tmp_path / "sym.onnx"
    onnx.save(conv_net(batch="N"), str(path))
    rc, out, err = run(["profile", path, "--json"], capsys)
    assert rc == 0, err
    one = json.loads(out)["totals"]
    rc, out, err = run(["profile", path, "--json", "--input-shape", "input=4x3x8x8"], capsys)
    assert rc == 0, err
    four = json.loads(out)["totals"]
    assert four["flops"] == 4 * one["flops"] and four["params"] == one["params"]
    pruned = _profile_shrink_run(path, tmp_path, capsys)
    dim0 = onnx.load(str(pruned)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "N", "the symbolic batch survives pruning"
    assert ort_run(pruned, batch=3)[0].shape == (3, 10)


def _multi_io_net() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype(np.float32), n)
        for n, s in [("wa", (6, 3, 3, 3)), ("wb", (6, 1, 3, 3)), ("wc", (5, 12, 1, 1)), ("wd", (4, 6, 1, 1))]
    ]
    nodes = [
        helper.make_node("Conv", ["a", "wa"], ["ca"], name="conva", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "wb"], ["cb"], name="convb", pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["ca", "cb"], ["cat"], name="cat", axis=1),
        helper.make_node("Conv", ["cat", "wc"], ["out1"], name="convc"),
        helper.make_node("Conv", ["ca", "wd"], ["out2"], name="convd"),
    ]
    graph = helper.make_graph(
        nodes,
        "multi",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3, 8, 8]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 1, 8, 8]),
        ],
        [
            helper.make_tensor_value_info("out1", TensorProto.FLOAT, [1, 5, 8, 8]),
            helper.make_tensor_value_info("out2", TensorProto.FLOAT, [1, 4, 8, 8]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_several_inputs_and_outputs(tmp_path, capsys):
    path = tmp_path / "multi.onnx"
    onnx.save(_multi_io_net(), str(path))
    pruned = _profile_shrink_run(path, tmp_path, capsys)
    outs = ort_run(pruned)
    assert outs[0].shape == (1, 5, 8, 8) and outs[1].shape == (1, 4, 8, 8), "graph outputs keep their channels"


def test_odd_channel_counts(tmp_path, capsys):
    path = tmp_path / "odd.onnx"
    onnx.save(conv_net(channels=(37, 21, 13)), str(path))
    rc, out, err = run(["groups", path, "--json"], capsys)
    assert rc == 0, err
    _profile_shrink_run(path, tmp_path, capsys)


def test_external_data_mechanism(tmp_path, monkeypatch, capsys):
    """Over PROTOBUF_LIMIT the weights go to <name>.data; the result loads and runs."""
    path = tmp_path / "big.onnx"
    onnx.save(conv_net(channels=(16, 32)), str(path))
    monkeypatch.setattr(onnxprune_save, "PROTOBUF_LIMIT", 2000)
    out = tmp_path / "out" / "pruned.onnx"
    out.parent.mkdir()
    rc, _, err = run(["shrink", path, "--mode", "PA", "--target", "0.5", "-o", out], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in out.parent.iterdir()) == ["pruned.onnx", "pruned.onnx.data"]
    model = onnx.load(str(out), load_external_data=False)
    locations = {
        e.value
        for t in onnx.external_data_helper._get_all_tensors(model)
        for e in t.external_data
        if e.key == "location"
    }
    assert locations == {"pruned.onnx.data"}
    ort_run(out)
    # and the tool reads it back (external data next to the model)
    rc, _, err = run(["profile", out], capsys)
    assert rc == 0, err
    # a second save over it replaces both files, still no temp files
    rc, _, err = run(["shrink", path, "--mode", "PA", "--target", "0.4", "-o", out], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in out.parent.iterdir()) == ["pruned.onnx", "pruned.onnx.data"]
    ort_run(out)


def _if_loop_net(kind: str) -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    w0 = numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.1).astype(np.float32), "w0")
    w1 = numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.1).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((4, 8, 1, 1)) * 0.1).astype(np.float32), "w2")
    if kind == "If":
        then_g = helper.make_graph(
            [helper.make_node("Relu", ["c1"], ["t"])],
            "then",
            [],
            [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 8, 8, 8])],
        )
        else_g = helper.make_graph(
            [helper.make_node("Neg", ["c1"], ["e"])],
            "else",
            [],
            [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 8, 8, 8])],
        )
        control = helper.make_node("If", ["cond"], ["x"], name="branch", then_branch=then_g, else_branch=else_g)
        extra_inputs = [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])]
    else:
        body = helper.make_graph(
            [helper.make_node("Identity", ["keep"], ["keep_out"]), helper.make_node("Relu", ["acc"], ["acc_out"])],
            "body",
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("keep", TensorProto.BOOL, []),
                helper.make_tensor_value_info("acc", TensorProto.FLOAT, [1, 8, 8, 8]),
            ],
            [
                helper.make_tensor_value_info("keep_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1, 8, 8, 8]),
            ],
        )
        control = helper.make_node("Loop", ["trips", "", "c1"], ["x"], name="loop", body=body)
        extra_inputs = []
    nodes = [
        helper.make_node("Conv", ["input", "w0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        control,
        helper.make_node("Conv", ["x", "w2"], ["output"], name="conv2"),
    ]
    inits = [w0, w1, w2]
    if kind == "Loop":
        inits.append(numpy_helper.from_array(np.array(2, np.int64), "trips"))
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8]), *extra_inputs],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("kind", ["If", "Loop"])
def test_control_flow_subgraphs_are_unprunable_not_a_crash(kind, tmp_path, capsys):
    import json

    path = tmp_path / f"{kind}.onnx"
    onnx.save(_if_loop_net(kind), str(path))
    rc, out, err = run(["groups", path, "--json"], capsys)
    assert rc == 0, err
    groups = json.loads(out)["groups"]
    feeding = [g for g in groups if any(p["node"] == "conv1" for p in g["producers"])]
    assert feeding, groups
    for g in feeding:  # conv1's channels flow into the subgraph: not prunable, with a reason
        assert not g["prunable"], g
    out_path = tmp_path / "pruned.onnx"
    rc, out, err = run(["shrink", path, "--mode", "FA", "--target", "0.8", "-o", out_path], capsys)
    if rc == 2:  # refused: one clear line, nothing written
        assert_one_line_error(rc, err)
        assert not out_path.exists()
    else:
        assert rc == 0, err
        onnx.checker.check_model(onnx.load(str(out_path)))
        session = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
        feeds = {"input": np.ones((1, 3, 8, 8), np.float32)}
        if kind == "If":
            feeds["cond"] = np.array(True)
        session.run(None, feeds)


def _shuffle_net() -> onnx.ModelProto:
    rng = np.random.default_rng(9)
    inits = [
        numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype(np.float32), n)
        for n, s in [("w0", (8, 3, 3, 3)), ("w1", (8, 8, 1, 1))]
    ]
    inits += [
        numpy_helper.from_array(np.array([1, 2, 4, 8, 8], np.int64), "s5"),
        numpy_helper.from_array(np.array([1, 8, 8, 8], np.int64), "s4"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c0", "s5"], ["g"], name="split_groups"),
        helper.make_node("Transpose", ["g"], ["gt"], name="shuffle", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["gt", "s4"], ["sh"], name="merge_groups"),
        helper.make_node("Conv", ["sh", "w1"], ["output"], name="conv1"),
    ]
    graph = helper.make_graph(
        nodes,
        "shuffle",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_channel_shuffle(tmp_path, capsys):
    path = tmp_path / "shuffle.onnx"
    onnx.save(_shuffle_net(), str(path))
    rc, out, err = run(["groups", path], capsys)
    assert rc == 0, err
    out_path = tmp_path / "pruned.onnx"
    rc, out, err = run(["shrink", path, "--mode", "FA", "--target", "0.9", "-o", out_path], capsys)
    if rc == 2:
        assert_one_line_error(rc, err)
    else:
        assert rc == 0, err
        ort_run(out_path)


def test_dequantize_then_conv(tmp_path, capsys):
    """A QDQ-style int8 weight (DequantizeLinear -> Conv): profiled, and shrink never crashes."""
    model = conv_net()
    w = model.graph.initializer[0]
    q = numpy_helper.from_array((numpy_helper.to_array(w) * 100).astype(np.int8), "conv0.wq")
    model.graph.initializer.remove(w)
    model.graph.initializer.extend(
        [
            q,
            numpy_helper.from_array(np.array(0.01, np.float32), "scale"),
            numpy_helper.from_array(np.array(0, np.int8), "zero"),
        ]
    )
    model.graph.node.insert(
        0, helper.make_node("DequantizeLinear", ["conv0.wq", "scale", "zero"], ["conv0.w"], name="dq")
    )
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "qdq.onnx"
    onnx.save(model, str(path))
    rc, out, err = run(["profile", path], capsys)
    assert rc == 0, err
    out_path = tmp_path / "pruned.onnx"
    rc, out, err = run(["shrink", path, "--mode", "PA", "--target", "0.7", "-o", out_path], capsys)
    if rc == 2:
        assert_one_line_error(rc, err)
        assert not out_path.exists()
    else:
        assert rc == 0, err
        ort_run(out_path)
