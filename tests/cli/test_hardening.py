"""Issue 7: hostile and unusual graphs. Never a traceback, never lost work.

* bad inputs and flags: exit 2, one line on stderr naming the file/flag, nothing written;
* unusual but valid graphs (opsets 11-21, fp16, symbolic batch, several inputs/outputs, odd
  channel counts, external data, If/Loop subgraphs, channel shuffle) work or are refused per group;
* writes are atomic, also when the process is interrupted (SIGINT, SIGKILL) mid-write.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.fuzz import bn_net, conv_net
from onnxprune.read import save as onnxprune_save
from tests.cli_helpers import run

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
VERBS = ("profile", "groups", "shrink", "check")


def snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def verb_argv(verb: str, model: Path, out: Path) -> list:
    return {
        "profile": ["profile", model],
        "groups": ["groups", model],
        "shrink": ["shrink", model, "--mode", "FA", "--target", "0.5", "-o", out],
        "check": ["check", model, "--max-params", "1M"],
    }[verb]


def assert_one_line_error(rc, err, *needles):
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert str(needle) in err, (needle, err)


def ort_run(path: Path, batch: int = 1) -> list:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in value.shape]
        dtype = np.float16 if "float16" in value.type else np.float32
        feeds[value.name] = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    return session.run(None, feeds)


# ------------------------------------------------------------------------- bad input files


def _bad_file(kind: str, folder: Path) -> tuple[Path, str]:
    """(path, a word the error must contain) for one kind of bad input."""
    path = folder / "model.onnx"
    good = conv_net()
    if kind == "missing":
        return folder / "nope.onnx", "no such file"
    if kind == "directory":
        (folder / "adir.onnx").mkdir()
        return folder / "adir.onnx", "directory"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "empty"
    if kind == "random":
        path.write_bytes(random.Random(7).randbytes(5000))
        return path, "model.onnx"
    if kind == "truncated":
        path.write_bytes(good.SerializeToString()[:-700])
        return path, "model.onnx"
    if kind == "checker":  # a node reading a tensor nobody produces
        good.graph.node[1].input[0] = "ghost"
        path.write_bytes(good.SerializeToString())
        return path, "model.onnx"
    if kind == "bad_output_shape":  # declared output shape the graph cannot produce
        good.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7
        path.write_bytes(good.SerializeToString())
        return path, "model.onnx"
    if kind in ("external_missing", "external_traversal"):
        sub = folder / "m"
        sub.mkdir()
        path = sub / "model.onnx"
        onnx.save_model(
            good,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="model.data",
            size_threshold=0,
        )
        if kind == "external_missing":
            (sub / "model.data").unlink()
            return path, "missing"
        os.replace(sub / "model.data", folder / "evil.data")
        model = onnx.load(str(path), load_external_data=False)
        for tensor in onnx.external_data_helper._get_all_tensors(model):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = "../evil.data"
        path.write_bytes(model.SerializeToString())
        return path, "outside"
    if kind == "int8_weight":  # a quantized weight fed straight to a float Conv
        w = good.graph.initializer[0]
        w.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(w) * 100).astype(np.int8), w.name))
        path.write_bytes(good.SerializeToString())
        return path, "int8"
    if kind == "conv_group":  # ONNX inference accepts it; onnxruntime fails at run time
        good.graph.node[2].attribute.append(helper.make_attribute("group", 3))
        path.write_bytes(good.SerializeToString())
        return path, "conv1"
    raise AssertionError(kind)


BAD_KINDS = [
    "missing",
    "directory",
    "empty",
    "random",
    "truncated",
    "checker",
    "bad_output_shape",
    "external_missing",
    "external_traversal",
    "int8_weight",
    "conv_group",
]


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_exits_2_with_one_line(kind, verb, tmp_path, capsys):
    model, needle = _bad_file(kind, tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = snapshot(tmp_path)
    rc, _, err = run(verb_argv(verb, model, out_dir / "pruned.onnx"), capsys)
    assert_one_line_error(rc, err, needle)
    assert not any(out_dir.iterdir()), "nothing may be written on bad input"
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------- bad flags


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.onnx"
    onnx.save(conv_net(), str(path))
    return path


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--mode", "XA", "--target", "0.5"], "--mode"),
        (["--mode", "FA", "--target", "0"], "--target"),
        (["--mode", "FA", "--target", "1"], "--target"),
        (["--mode", "FA", "--target", "-0.5"], "--target"),
        (["--mode", "FA", "--target", "1.5"], "--target"),
        (["--mode", "FA", "--target", "abc"], "--target"),
        (["--mode", "FA", "--budget", "abc"], "--budget"),
        (["--mode", "MA", "--budget", "4 parsecs"], "--budget"),
        (["--mode", "FA", "--budget", "-3M"], "--budget"),
        (["--mode", "FA", "--target", "0.5", "--budget", "1M"], "--budget"),
        (["--mode", "FA", "--target", "0.5", "--step", "0"], "--step"),
    ],
)
def test_shrink_bad_flags(tiny, args, needle, capsys):
    before = snapshot(tiny.parent)
    rc, _, err = run(["shrink", tiny, *args, "-o", tiny.parent / "out.onnx"], capsys)
    assert_one_line_error(rc, err, needle)
    assert snapshot(tiny.parent) == before


@pytest.mark.parametrize("flag", ["--max-params", "--max-flops", "--max-memory"])
def test_check_non_numeric_budget(tiny, flag, capsys):
    rc, _, err = run(["check", tiny, flag, "xyz"], capsys)
    assert_one_line_error(rc, err, flag)


def test_output_equal_to_input_is_refused(tiny, capsys):
    data = tiny.read_bytes()
    for alias in (tiny, tiny.parent / "." / tiny.name):
        rc, _, err = run(["shrink", tiny, "--mode", "FA", "--target", "0.5", "-o", alias], capsys)
        assert_one_line_error(rc, err, "-o")
    assert tiny.read_bytes() == data
    assert sorted(p.name for p in tiny.parent.iterdir()) == ["tiny.onnx"]


def test_output_in_missing_folder_is_refused(tiny, capsys):
    rc, _, err = run(["shrink", tiny, "--mode", "FA", "--target", "0.5", "-o", tiny.parent / "no" / "x.onnx"], capsys)
    assert_one_line_error(rc, err, "does not exist")
    assert not (tiny.parent / "no").exists()


def test_report_equal_to_input_is_refused(tiny, capsys):
    data = tiny.read_bytes()
    rc, _, err = run(
        ["shrink", tiny, "--mode", "FA", "--target", "0.5", "-o", tiny.parent / "o.onnx", "--report", tiny], capsys
    )
    assert_one_line_error(rc, err)
    assert tiny.read_bytes() == data


@pytest.mark.parametrize(
    "argv",
    [
        ["profile", "{m}", "--sort", "size"],
        ["profile", "{m}", "--top", "-1"],
        ["profile", "{m}", "--input-shape", "input=1x3"],
        ["profile", "{m}", "--input-shape", "nosuch=1x3x8x8"],
        ["profile", "{m}", "--input-shape", "garbage"],
        ["groups", "{m}", "--bogus-flag"],
        ["frobnicate", "{m}"],
    ],
)
def test_usage_errors(tiny, argv, capsys):
    rc, _, err = run([a.format(m=tiny) for a in argv], capsys)
    assert_one_line_error(rc, err)


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


# ------------------------------------------------------------------------- atomic writes


def test_input_never_modified_and_outputs_complete(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(bn_net(), str(path))
    data = path.read_bytes()
    out = tmp_path / "o.onnx"
    rc, _, err = run(
        ["shrink", path, "--mode", "PA", "--target", "0.5", "-o", out, "--report", tmp_path / "r.json"], capsys
    )
    assert rc == 0, err
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "o.onnx", "r.json"]


@pytest.mark.parametrize("when", ["write", "replace"])
def test_interrupt_inside_save_leaves_nothing(tmp_path, monkeypatch, capsys, when):
    """KeyboardInterrupt mid-write: exit 130, one line, no output, no temp file."""
    path = tmp_path / "m.onnx"
    onnx.save(conv_net(), str(path))
    if when == "write":

        def boom(*a, **k):
            raise KeyboardInterrupt

        monkeypatch.setattr(onnxprune_save.os, "fsync", boom)
    else:
        real = os.replace

        def boom(src, dst):
            if str(dst).endswith("o.onnx"):
                raise KeyboardInterrupt
            return real(src, dst)

        monkeypatch.setattr(onnxprune_save.os, "replace", boom)
    rc, _, err = run(["shrink", path, "--mode", "PA", "--target", "0.5", "-o", tmp_path / "o.onnx"], capsys)
    assert rc == 130
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_save_over_existing_output_keeps_old_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "o.onnx"
    onnx.save(conv_net(), str(out))
    old = out.read_bytes()

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(onnxprune_save.os, "fsync", fail)
    with pytest.raises(onnxprune_save.UserError, match="disk full"):
        onnxprune_save.save_model(conv_net(channels=(4, 4)), out)
    assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.onnx"]


def _startup_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", "import onnxprune.cli; onnxprune.cli._register_commands()"], check=True)
    return time.perf_counter() - started


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_mid_shrink_leaves_no_partial_output(sig, tmp_path, zoo_dir):
    """Signal `onnxprune shrink` at random moments: the output is absent or a complete valid model."""
    source = zoo_dir / "vgg16_cifar.legacy.kept.onnx"
    startup = _startup_seconds()
    rng = random.Random(int(sig))
    data_size = source.stat().st_size
    outcomes = []
    for attempt in range(4):
        out = tmp_path / f"out{attempt}.onnx"
        proc = subprocess.Popen(
            [PYTHON, "-m", "onnxprune", "shrink", str(source), "--mode", "FA", "--target", "0.5", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        # after the imports (a signal during interpreter start-up is Python's, not ours), at a random point
        time.sleep(startup * 1.3 + rng.uniform(0.0, 2.5 + attempt))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        err = err.decode()
        outcomes.append(proc.returncode)
        if out.exists():
            model = onnx.load(str(out))
            onnx.checker.check_model(model)
        if sig == signal.SIGINT:
            assert proc.returncode in (0, 130), err
            assert "Traceback" not in err, err
            if proc.returncode == 130:
                assert len(err.strip().splitlines()) == 1, err
                assert not out.exists() or out.stat().st_size > 0
            leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
            assert not leftovers, leftovers
        else:
            assert proc.returncode in (0, -signal.SIGKILL)
    assert source.stat().st_size == data_size


# ------------------------------------------------------------------------- determinism


def test_shrink_is_deterministic_with_a_seed(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(conv_net(channels=(16, 24, 32)), str(path))
    outputs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / f"{name}.onnx"
        rc, _, err = run(["shrink", path, "--mode", "FA", "--target", "0.5", "--seed", seed, "-o", out], capsys)
        assert rc == 0, err
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1], "same seed, same bytes"
    assert outputs[0] != outputs[2], "another seed draws other channels"


@pytest.mark.parametrize("verb", ["profile", "groups", "shrink", "check", "bench", "latency"])
def test_non_utf8_names_exit_2(verb, tmp_path, capsys):
    """A corrupted name (protobuf hands it back as bytes; onnx's checker and helpers then raise
    UnicodeDecodeError) is one line naming the file, for every verb (found by the fuzzer)."""
    data = conv_net().SerializeToString().replace(b"conv0.w", b"conv\xf10w")
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    argv = {
        **{v: verb_argv(v, path, tmp_path / "o.onnx") for v in VERBS},
        "bench": ["bench", path, "--runs", "1", "--in-process"],
        "latency": ["latency", path],
    }[verb]
    rc, _, err = run(argv, capsys)
    assert_one_line_error(rc, err, "UTF-8", "bad.onnx")
