"""Issue 16 items 7, 10, 11: output locations are checked before any work, all outputs are written
or none, files get the mode a normal write would (umask) or keep the mode of the file they
replace, and `-o -` is refused.

The tests run as root in the development container, where a chmod-ed folder is still writable:
`read_only` then also makes `os.access` report it read-only, as it does for an ordinary user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import onnx
import pytest

from benchmarks.fuzz import conv_net
from onnxprune.read import save as onnxprune_save
from tests.cli_helpers import one_line_error, run


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(conv_net(), str(path))
    return path


def _shrink(model, *extra):
    return ["shrink", model, "--mode", "FA", "--target", "0.5", *extra]


# ------------------------------------------------------------------ checked before any work


@pytest.mark.parametrize("where", ["-o", "--report"])
def test_shrink_refuses_a_read_only_folder_before_any_work(where, model, read_only, tmp_path, capsys, monkeypatch):
    import onnxprune

    def no_work(*a, **k):
        raise AssertionError("shrink ran although an output cannot be written")

    monkeypatch.setattr(onnxprune, "shrink", no_work)
    argv = (
        _shrink(model, "-o", read_only / "o.onnx", "--report", tmp_path / "r.json")
        if where == "-o"
        else _shrink(model, "-o", tmp_path / "o.onnx", "--report", read_only / "r.json")
    )
    rc, _, err = run(argv, capsys)
    one_line_error(rc, err, where, "cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "ro"]


@pytest.mark.parametrize("verb", ["shrink-o", "shrink-report", "latency"])
def test_missing_output_folder(verb, model, tmp_path, capsys):
    missing = tmp_path / "nope" / "x.json"
    argv = {
        "shrink-o": _shrink(model, "-o", missing),
        "shrink-report": _shrink(model, "-o", tmp_path / "o.onnx", "--report", missing),
        "latency": ["latency", model, "--runs", "1", "-o", missing],
    }[verb]
    rc, _, err = run(argv, capsys)
    one_line_error(rc, err, "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_latency_refuses_a_read_only_folder(model, read_only, capsys, monkeypatch):
    import onnxprune.analysis.latency

    monkeypatch.setattr(
        onnxprune.analysis.latency, "measure_node_latency", lambda *a, **k: pytest.fail("measured first")
    )
    rc, _, err = run(["latency", model, "-o", read_only / "p.json"], capsys)
    one_line_error(rc, err, "cannot write")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 folder")
def test_real_read_only_folder(model, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        rc, _, err = run(_shrink(model, "-o", folder / "o.onnx"), capsys)
        one_line_error(rc, err, "cannot write")
    finally:
        folder.chmod(0o755)


def test_file_as_folder(model, tmp_path, capsys):
    rc, _, err = run(_shrink(model, "-o", model / "o.onnx"), capsys)
    one_line_error(rc, err, "is not a folder")


def test_report_and_model_on_one_path(model, tmp_path, capsys):
    rc, _, err = run(_shrink(model, "-o", tmp_path / "o.onnx", "--report", tmp_path / "o.onnx"), capsys)
    one_line_error(rc, err, "--report", "another output")


# ------------------------------------------------------------------ all outputs or none


def test_a_failing_report_leaves_no_model(model, tmp_path, capsys, monkeypatch):
    real = onnxprune_save._stage_bytes

    def stage(data, out):
        if out.suffix == ".json":
            raise OSError(28, "No space left on device", str(out))
        return real(data, out)

    monkeypatch.setattr(onnxprune_save, "_stage_bytes", stage)
    rc, _, err = run(_shrink(model, "-o", tmp_path / "o.onnx", "--report", tmp_path / "r.json"), capsys)
    one_line_error(rc, err, "No space left")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


# ------------------------------------------------------------------ `-o -`


@pytest.mark.parametrize(
    "argv",
    [
        ["shrink", "{m}", "--mode", "FA", "--target", "0.5", "-o", "-"],
        ["shrink", "{m}", "--mode", "FA", "--target", "0.5", "--report", "-"],
        ["latency", "{m}", "-o", "-"],
    ],
)
def test_dash_output_is_refused(argv, model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run([a.format(m=model) for a in argv], capsys)
    one_line_error(rc, err, "stdout")
    assert not (tmp_path / "-").exists()


# ------------------------------------------------------------------ file modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_respect_the_umask(umask, model, tmp_path, capsys):
    old = os.umask(umask)
    try:
        rc, _, err = run(_shrink(model, "-o", tmp_path / "o.onnx", "--report", tmp_path / "r.json"), capsys)
        assert rc == 0, err
        rc, _, err = run(["latency", model, "--runs", "1", "-o", tmp_path / "p.json"], capsys)
        assert rc == 0, err
    finally:
        os.umask(old)
    for name in ("o.onnx", "r.json", "p.json"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name


def test_a_replaced_file_keeps_its_mode(model, tmp_path, capsys):
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    for path, mode in ((out, 0o640), (report, 0o604)):
        path.write_text("old")
        path.chmod(mode)
    rc, _, err = run(_shrink(model, "-o", out, "--report", report), capsys)
    assert rc == 0, err
    assert (_mode(out), _mode(report)) == (0o640, 0o604)
    assert onnx.load(str(out)).graph.node


def test_check_outputs_writable_api(model, tmp_path):
    assert onnxprune_save.check_outputs_writable([tmp_path / "a.onnx", None], model) == [tmp_path / "a.onnx"]
    assert onnxprune_save.check_outputs_writable({"-o": tmp_path / "a", "--log": tmp_path / "b"}) == [
        tmp_path / "a",
        tmp_path / "b",
    ]
    with pytest.raises(onnxprune_save.UserError, match="is the input model"):
        onnxprune_save.check_outputs_writable([model], model)
    with pytest.raises(onnxprune_save.UserError, match="--log -"):
        onnxprune_save.check_outputs_writable({"--log": "-"})


@pytest.mark.parametrize("where", ["dash", "read-only", "missing"])
def test_sweep_checks_its_run_folder_first(where, model, read_only, tmp_path, capsys):
    output = {"dash": "-", "read-only": read_only / "run", "missing": tmp_path / "no" / "run"}[where]
    rc, _, err = run(["sweep", model, "-o", output, "--modes", "FA", "--targets", "0.5"], capsys)
    one_line_error(rc, err, "-o")
    assert not Path("-").exists() and not (tmp_path / "no").exists()


def test_atomic_write_helper_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        onnxprune_save.atomic_write(tmp_path / "a.csv", lambda h: h.write("x\n"))
        onnxprune_save.atomic_write(tmp_path / "b.png", lambda h: h.write(b"\x89PNG"), mode="wb")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.csv") == _mode(tmp_path / "b.png") == 0o640
    assert (tmp_path / "a.csv").read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.png"]
