"""`onnxprune check`: exit codes 0/1/2, JSON shape, marking of the over-budget figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnxprune import profile
from onnxprune.cli import main
from tests.tiny_models import conv_model


def totals(path: Path) -> dict:
    return dict(profile(str(path)).totals)


@pytest.fixture
def model(tmp_path) -> Path:
    return conv_model(tmp_path / "m.onnx")


def run(capsys, *args: str):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_within_budget_exits_0(capsys, model):
    rc, out, err = run(capsys, "check", model, "--max-params", "2.5M", "--max-flops", "40M", "--max-memory", "4MiB")
    assert rc == 0, err
    assert "PASS" in out and "m.onnx" in out and err == ""


def test_over_budget_exits_1_and_marks_the_figure(capsys, model):
    t = totals(model)
    rc, out, err = run(capsys, "check", model, "--max-params", t["params"] - 24, "--max-flops", "1G")
    assert rc == 1
    assert "OVER by 24" in out and "FAIL" in out
    over_lines = [line for line in out.splitlines() if "OVER" in line]
    assert len(over_lines) == 1 and "params" in over_lines[0]
    assert "over budget" in err and "params" in err and "Traceback" not in err


def test_json_shape(capsys, model, tmp_path):
    other = conv_model(tmp_path / "small.onnx", cout=2)
    t = totals(model)
    rc, out, err = run(capsys, "check", model, other, "--max-params", t["params"] - 1, "--max-memory", "1GiB", "--json")
    assert rc == 1
    data = json.loads(out)  # stdout holds the JSON alone
    assert data["ok"] is False and data["checked"] == 2 and data["over_budget"] == 1
    first, second = data["models"]
    assert first["model"] == str(model) and first["ok"] is False and first["over"] == ["params"]
    params = first["figures"]["params"]
    assert params == {
        "value": t["params"],
        "limit": t["params"] - 1,
        "ok": False,
        "over_by": 1,
        "over_by_pct": pytest.approx(100 / (t["params"] - 1), abs=1e-3),
        "budget": "command line",
    }
    assert first["figures"]["memory"]["ok"] is True and first["figures"]["memory"]["limit"] == 2**30
    assert first["figures"]["flops"]["limit"] is None and first["figures"]["flops"]["ok"] is True
    assert second["ok"] is True and second["over"] == []
    assert set(first["figures"]) == {"params", "flops", "memory"}


def test_json_pass(capsys, model):
    rc, out, _ = run(capsys, "check", model, "--max-params", "1M", "--json")
    assert rc == 0 and json.loads(out)["ok"] is True


def test_budget_file_without_models(capsys, tmp_path):
    conv_model(tmp_path / "models" / "a.onnx")
    conv_model(tmp_path / "models" / "b.onnx", cout=32)
    limit = totals(tmp_path / "models" / "a.onnx")["params"]
    toml = tmp_path / "budgets.toml"
    toml.write_text(f'[[budget]]\nname = "edge"\nmodels = "models/*.onnx"\nmax_params = {limit}\n')
    rc, out, err = run(capsys, "check", "--budgets", toml, "--json")
    assert rc == 1
    verdicts = {Path(m["model"]).name: m["ok"] for m in json.loads(out)["models"]}
    assert verdicts == {"a.onnx": True, "b.onnx": False}
    rc, out, err = run(capsys, "check", tmp_path / "models" / "a.onnx", "--budgets", toml)
    assert rc == 0 and "edge" in out


@pytest.mark.parametrize(
    "toml_text",
    [
        "[[budget]\nmodels = 'x'",  # not TOML
        '[[budget]]\nmodels = "*.onnx"\nmax_parms = "1M"\n',  # unknown key
        '[[budget]]\nmodels = "nothing/*.onnx"\nmax_params = "1M"\n',  # glob matches nothing
    ],
)
def test_bad_toml_exits_2(capsys, model, tmp_path, toml_text):
    toml = tmp_path / "budgets.toml"
    toml.write_text(toml_text)
    rc, out, err = run(capsys, "check", model, "--budgets", toml)
    assert rc == 2 and out == ""
    assert err.startswith("onnxprune: error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["check", "MISSING", "--max-params", "1M"],  # missing model
        ["check", "MODEL"],  # no budget at all
        ["check", "--max-params", "1M"],  # no model
        ["check", "MODEL", "--max-params", "lots"],  # bad count
        ["check", "MODEL", "--max-memory", "4 parsecs"],  # bad size
        ["check", "MODEL", "--budgets", "MISSING.toml"],  # missing budget file
        ["check", "MODEL", "--max-params", "1M", "--input-shape", "input=1xbanana"],
        ["check", "MODEL", "--max-params", "1M", "--no-such-flag"],
    ],
)
def test_bad_input_exits_2(capsys, model, tmp_path, args):
    args = [str(model) if a == "MODEL" else str(tmp_path / a) if a.startswith("MISSING") else a for a in args]
    rc, out, err = run(capsys, *args)
    assert rc == 2, (out, err)
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_not_an_onnx_file_exits_2(capsys, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model at all\xff" * 10)
    rc, out, err = run(capsys, "check", junk, "--max-params", "1M")
    assert rc == 2 and "junk.onnx" in err


def test_check_prints_figures_as_profile_does(capsys, model):
    """One number format across verbs: the params and FLOPs `check` shows are `profile`'s totals, as written."""
    rc, prof, _ = run(capsys, "profile", model)
    assert rc == 0
    total_row = next(line for line in prof.splitlines() if "total" in line)
    rc, out, err = run(capsys, "check", model, "--max-params", "1G", "--max-flops", "1T")
    assert rc == 0, err
    for figure in ("params", "flops"):
        row = next(line for line in out.splitlines() if f" {figure} " in line.lower())
        value = row.split("│")[3].strip()
        assert value in total_row, (figure, value, total_row)
