"""Issue 11 item 1 and issue 16 items 3, 5, 8, 12: options every verb shares and shrink's report.

* `--input-shape` is one option, one parser, on every verb that reads a model; NAME=DIMS,
  NAME:DIMS and (single-input models) a bare DIMS;
* shrink measures "before" and "after" at the same, stated input shape and reaches its target there;
* a no-op shrink says so and leaves the weights untouched;
* `--seed -1` is a usage error, one line;
* user text (node, file and budget names) prints literally in tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from benchmarks.fuzz import conv_net, markup_net, symbolic_net
from onnxprune import profile
from onnxprune.cli.app import parse_input_shapes
from onnxprune.errors import UserError
from tests.cli_helpers import one_line_error, run


@pytest.fixture
def symbolic(tmp_path) -> Path:
    path = tmp_path / "sym.onnx"
    onnx.save(symbolic_net(), str(path))
    return path


@pytest.fixture
def fixed32(tmp_path) -> Path:
    path = tmp_path / "c32.onnx"
    onnx.save(conv_net(size=32), str(path))
    return path


# ------------------------------------------------------------------ --input-shape, one parser


def test_input_shape_forms(symbolic):
    assert parse_input_shapes(["input=1x3x8x8"]) == {"input": [1, 3, 8, 8]}
    assert parse_input_shapes(["input:1x3x8x8"]) == {"input": [1, 3, 8, 8]}
    assert parse_input_shapes(["x:0:1x3x8x8"]) == {"x:0": [1, 3, 8, 8]}  # tf2onnx names hold ':'
    assert parse_input_shapes(["1x3x8x8"], str(symbolic)) == {"input": [1, 3, 8, 8]}
    for bad in ("input=1x3x0x8", "input=axb", "=1x3", "input:"):
        with pytest.raises(UserError, match="--input-shape"):
            parse_input_shapes([bad], str(symbolic))


def test_bare_shape_needs_a_single_input(tmp_path):
    from tests.cli.test_hardening import _multi_io_net

    path = tmp_path / "two.onnx"
    onnx.save(_multi_io_net(), str(path))
    with pytest.raises(UserError, match="exactly one input"):
        parse_input_shapes(["1x3x8x8"], str(path))


VERBS = {
    "profile": ["profile", "{m}"],
    "groups": ["groups", "{m}"],
    "shrink": ["shrink", "{m}", "--mode", "FA", "--target", "0.5", "-o", "{d}/out.onnx"],
    "check": ["check", "{m}", "--max-params", "1M"],
    "bench": ["bench", "{m}", "--runs", "2", "--warmup", "0", "--in-process"],
    "latency": ["latency", "{m}", "--runs", "2"],
}


@pytest.mark.parametrize("form", ["input=1x3x16x16", "input:1x3x16x16", "1x3x16x16"])
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_honours_input_shape(verb, form, symbolic, tmp_path, capsys):
    argv = [a.format(m=symbolic, d=tmp_path) for a in VERBS[verb]]
    rc, _, err = run(argv, capsys)
    one_line_error(rc, err, "symbolic dimension")  # H and W are unknown without it
    rc, out, err = run(argv + ["--input-shape", form], capsys)
    assert rc == 0, err


def test_every_verb_declares_the_same_input_shape_option():
    from typer.main import get_command

    from onnxprune.cli import _register_commands
    from onnxprune.cli.app import INPUT_SHAPE_HELP, app

    _register_commands()
    group = get_command(app)
    found = {}
    for name, command in group.commands.items():
        subcommands = getattr(command, "commands", {name: command})
        for sub in subcommands.values():
            for param in sub.params:
                if "--input-shape" in getattr(param, "opts", []):
                    found[name] = param.help
    assert {"profile", "groups", "shrink", "check", "bench", "latency", "sweep"} <= set(found)
    assert set(found.values()) == {INPUT_SHAPE_HELP}


# ------------------------------------------------------------------ shrink's report: one shape


def test_shrink_measures_before_and_after_at_the_given_shape(fixed32, tmp_path, capsys):
    out = tmp_path / "pruned.onnx"
    rc, stdout, err = run(
        ["shrink", fixed32, "--mode", "FA", "--target", "0.5", "--input-shape", "input=1x3x64x64", "-o", out, "--json"],
        capsys,
    )
    assert rc == 0, err
    report = json.loads(stdout)
    shapes = {"input": [1, 3, 64, 64]}
    assert report["input_shapes"] == shapes
    assert report["before"] == profile(str(fixed32), shapes).totals
    assert report["after"] == profile(str(out), shapes).totals
    assert report["after"]["flops"] <= 0.5 * report["before"]["flops"]  # the target, at that shape
    rc, stdout, err = run(
        ["shrink", fixed32, "--mode", "FA", "--target", "0.5", "--input-shape", "input=1x3x64x64", "-o", out], capsys
    )
    assert rc == 0 and "input=1x3x64x64" in stdout, err


def test_shrink_of_a_symbolic_model_at_a_given_shape(symbolic, tmp_path, capsys):
    out = tmp_path / "pruned.onnx"
    rc, stdout, err = run(
        ["shrink", symbolic, "--mode", "FA", "--target", "0.5", "--input-shape", "1x3x24x24", "-o", out, "--json"],
        capsys,
    )
    assert rc == 0, err
    report = json.loads(stdout)
    assert report["after"] == profile(str(out), {"input": [1, 3, 24, 24]}).totals
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "H", "W"]  # the graph stays symbolic


# ------------------------------------------------------------------ a no-op shrink


def _weights(path: Path) -> dict:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def test_noop_shrink_says_so_and_writes_nothing_without_o(fixed32, capsys):
    before = sorted(p.name for p in fixed32.parent.iterdir())
    rc, out, err = run(["shrink", fixed32, "--mode", "FA", "--budget", "100G"], capsys)
    assert rc == 0, err
    assert "already within the budget: nothing pruned" in out and "weights unchanged" in out
    assert sorted(p.name for p in fixed32.parent.iterdir()) == before


def test_noop_shrink_with_o_keeps_the_weights(fixed32, tmp_path, capsys):
    out = tmp_path / "same.onnx"
    rc, stdout, err = run(["shrink", fixed32, "--mode", "PA", "--budget", "100G", "-o", out, "--json"], capsys)
    assert rc == 0, err
    report = json.loads(stdout)
    assert report["pruned"] is False and report["iterations"] == 0 and report["layers"] == []
    assert report["weights"].startswith("unchanged") and report["output"] == str(out)
    original, written = _weights(fixed32), _weights(out)
    assert original.keys() == written.keys()
    assert all(np.array_equal(original[k], written[k]) for k in original)


# ------------------------------------------------------------------ negative seeds


@pytest.mark.parametrize("verb", ["shrink", "bench", "latency", "sweep"])
def test_negative_seed_is_a_usage_error(verb, fixed32, tmp_path, capsys):
    argv = {
        "shrink": ["shrink", fixed32, "--mode", "FA", "--target", "0.5", "-o", tmp_path / "o.onnx"],
        "bench": ["bench", fixed32, "--runs", "2", "--in-process"],
        "latency": ["latency", fixed32],
        "sweep": ["sweep", fixed32, "-o", tmp_path / "run"],
    }[verb]
    rc, _, err = run(argv + ["--seed", "-1"], capsys)
    one_line_error(rc, err, "--seed")
    assert not (tmp_path / "o.onnx").exists() and not (tmp_path / "run").exists()


def test_negative_seed_in_the_python_api(fixed32):
    from onnxprune import shrink
    from onnxprune.measure.bench import bench

    with pytest.raises(UserError, match="--seed"):
        shrink(str(fixed32), mode="FA", target=0.5, seed=-1)
    with pytest.raises(UserError, match="--seed"):
        bench(fixed32, runs=1, warmup=0, seed=-1, isolate=False)


# ------------------------------------------------------------------ user text prints as given


def test_markup_in_node_names_prints_literally(tmp_path, capsys):
    path = tmp_path / "[b]markup.onnx"
    onnx.save(markup_net(), str(path))
    rc, out, err = run(["profile", path], capsys)
    assert rc == 0, err
    assert "block[red]conv0[/red]/[bold]x" in out and "[b]markup.onnx" in out
    rc, out, err = run(["shrink", path, "--mode", "FA", "--target", "0.5", "-o", tmp_path / "o.onnx"], capsys)
    assert rc == 0, err
    assert "block[red]conv0[/red]/[bold]x" in out


def test_budget_names_print_literally(fixed32, tmp_path, capsys):
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(f'[[budget]]\nmodels = "{fixed32.name}"\nmax_params = "1k"\n')
    rc, out, err = run(["check", fixed32, "--budgets", budgets], capsys)
    assert rc == 1, err
    assert "[[budget]] #1" in out.replace("\n", " ") or "[[budget]]" in out


def test_literal_table_keeps_styled_cells():
    from rich.console import Console
    from rich.text import Text

    from onnxprune.report import LiteralTable

    table = LiteralTable(title="[x] title")
    table.add_column("[col]")
    table.add_row("a[red]b")
    table.add_row(Text("styled", style="red"))
    console = Console(width=80, record=True)
    console.print(table)
    text = console.export_text()
    assert "[x] title" in text and "[col]" in text and "a[red]b" in text and "styled" in text
