"""Issue 7: bad input files and bad flags exit 2 with one line on stderr naming the file/flag, and write nothing."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from benchmarks.fuzz import conv_net
from tests.cli_helpers import run

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


# ------------------------------------------------------------------------- non-UTF-8 names


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
