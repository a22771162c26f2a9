"""SI size parsing/formatting, budget TOML files with globs, and the check() API."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxprune import profile
from onnxprune.errors import UserError
from onnxprune.measure import budget
from onnxprune.measure.budget import CheckResult, check, load_budgets
from onnxprune.measure.figures import format_bytes, format_count, parse_bytes, parse_count
from tests.tiny_models import conv_model


def totals(path: Path) -> dict:
    return dict(profile(str(path)).totals)


# --- SI parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2.5M", 2_500_000),
        ("40M", 40_000_000),
        ("1k", 1000),
        ("1K", 1000),
        ("3G", 3 * 10**9),
        ("1T", 10**12),
        ("1500", 1500),
        ("1_500", 1500),
        ("1e6", 1_000_000),
        ("2.5e3", 2500),
        (".5M", 500_000),
        (" 7 ", 7),
        (42, 42),
        (2.5e6, 2_500_000),
        ("0.1M", 100_000),
    ],
)
def test_parse_count(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4MB", 4_000_000),
        ("4MiB", 4 * 2**20),
        ("4mib", 4 * 2**20),
        ("1KB", 1000),
        ("1kB", 1000),
        ("1KiB", 1024),
        ("2GB", 2 * 10**9),
        ("2GiB", 2 * 2**30),
        ("1TiB", 2**40),
        ("512", 512),
        ("512B", 512),
        ("1.5MiB", 3 * 2**19),
        ("4M", 4_000_000),
        (1024, 1024),
        ("4 MiB", 4 * 2**20),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "2.5X", "-1", "1e", "M", "4MiBB", "1e999999", True, None, [1]])
def test_parse_count_errors_name_flag_and_example(bad):
    with pytest.raises(UserError) as info:
        parse_count(bad, "--max-flops")
    assert "--max-flops" in str(info.value) and "e.g." in str(info.value)


@pytest.mark.parametrize("bad", ["", "4XB", "4MiBs", "-4MB", "MB", "4 M B", False])
def test_parse_bytes_errors_name_flag_and_example(bad):
    with pytest.raises(UserError) as info:
        parse_bytes(bad, "--max-memory")
    assert "--max-memory" in str(info.value) and "MiB" in str(info.value)


def test_formatting():
    assert format_count(15_000_000) == "15.00M"
    assert format_count(2_500_000) == "2.50M"
    assert format_count(1500) == "1.50k"
    assert format_count(999) == "999"
    assert format_count(3 * 10**9) == "3.00G"
    assert format_count(None) == "-"
    assert format_bytes(4 * 2**20) == "4.00 MiB"
    assert format_bytes(4_000_000, binary=False) == "4.00 MB"
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.50 KiB"


def test_round_trip_display():
    for n in (1, 999, 1000, 123_456, 2_500_000, 7 * 10**9):
        assert abs(parse_count(format_count(n)) - n) <= 0.05 * n


# --- budget files ------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_toml_globs_are_relative_to_the_file(tmp_path, monkeypatch):
    conv_model(tmp_path / "cfg" / "models" / "a.onnx")
    conv_model(tmp_path / "cfg" / "models" / "b.onnx")
    conv_model(tmp_path / "cfg" / "other" / "c.onnx")
    toml = write(
        tmp_path / "cfg" / "budgets.toml",
        """
[[budget]]
name = "all"
models = "models/*.onnx"
max_params = "2.50M"
max_flops = 40000000
max_memory = "4MiB"

[[budget]]
models = ["other/*.onnx", "models/a.onnx"]
max_params = "1k"
""",
    )
    monkeypatch.chdir(tmp_path)  # the working folder must not matter
    first, second = load_budgets(toml)
    assert first.limits == {"params": 2_500_000, "flops": 40_000_000, "memory": 4 * 2**20}
    assert [p.name for p in first.matched] == ["a.onnx", "b.onnx"]
    assert "(all)" in first.source and "#1" in first.source
    assert second.limits == {"params": 1000}
    assert sorted(p.name for p in second.matched) == ["a.onnx", "c.onnx"]


def test_recursive_glob(tmp_path):
    conv_model(tmp_path / "zoo" / "x" / "deep" / "m.onnx")
    toml = write(tmp_path / "b.toml", '[[budget]]\nmodels = "zoo/**/*.onnx"\nmax_params = "1M"\n')
    (entry,) = load_budgets(toml)
    assert [p.name for p in entry.matched] == ["m.onnx"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[[budget]]\nmodels = "*.onnx"\nmax_param = "1M"\n', "max_param"),  # typo'd key
        ('[[budget]]\nmodels = "*.onnx"\n', "no limit"),
        ('[[budget]]\nmax_params = "1M"\n', "models"),
        ('[[budget]]\nmodels = "nothing/*.onnx"\nmax_params = "1M"\n', "matches no file"),
        ('[[budget]]\nmodels = "*.onnx"\nmax_params = "lots"\n', "max_params"),
        ('[[budget]]\nmodels = "*.onnx"\nmax_memory = "4 parsecs"\n', "max_memory"),
        ('[[budget]]\nmodels = "*.onnx"\nmax_params = 0\n', "positive"),
        ('[[budget]]\nmodels = 3\nmax_params = "1M"\n', "models"),
        ('[budget]\nmodels = "*.onnx"\nmax_params = "1M"\n', "[[budget]]"),
        ('[[budgets]]\nmodels = "*.onnx"\n', "budgets"),
        ("", "no [[budget]]"),
        ('[[budget]\nmodels = "*.onnx"', "not valid TOML"),
        ('[[budget]]\nmodels = "*.onnx"\nmax_params = true\n', "max_params"),
    ],
)
def test_bad_budget_files(tmp_path, text, fragment):
    conv_model(tmp_path / "m.onnx")
    toml = write(tmp_path / "b.toml", text)
    with pytest.raises(UserError) as info:
        load_budgets(toml)
    assert fragment in str(info.value)
    assert str(toml) in str(info.value)


def test_missing_budget_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_budgets(tmp_path / "nope.toml")
    with pytest.raises(UserError, match="directory"):
        load_budgets(tmp_path)


# --- check() -----------------------------------------------------------------------------------


def test_check_flags_within_and_over(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    t = totals(model)
    assert t["params"] == 8 * 27 + 8
    ok = check([model], max_params=t["params"], max_flops=t["flops"], max_memory=t["memory_bytes"])
    assert isinstance(ok, CheckResult) and ok.ok
    verdict = ok.models[0]
    assert verdict.figures["params"].value == t["params"] and verdict.figures["params"].over_by == 0

    over = check([model], max_params=t["params"] - 24, max_flops=str(t["flops"] * 2))
    assert not over.ok and over.models[0].over == ["params"]
    fig = over.models[0].figures["params"]
    assert (fig.value, fig.limit, fig.ok, fig.over_by) == (t["params"], t["params"] - 24, False, 24)
    assert fig.over_by_pct == pytest.approx(100 * 24 / (t["params"] - 24))
    assert over.models[0].figures["memory"].limit is None and over.models[0].figures["memory"].ok
    data = over.to_json()
    assert data["ok"] is False and data["over_budget"] == 1
    assert data["models"][0]["figures"]["params"]["over_by"] == 24


def test_several_entries_must_all_hold(tmp_path):
    conv_model(tmp_path / "models" / "small.onnx", cout=4)
    conv_model(tmp_path / "models" / "big.onnx", cout=16)
    small, big = totals(tmp_path / "models" / "small.onnx"), totals(tmp_path / "models" / "big.onnx")
    toml = write(
        tmp_path / "budgets.toml",
        f"""
[[budget]]
name = "loose"
models = "models/*.onnx"
max_params = {big["params"] * 10}

[[budget]]
name = "tight"
models = "models/b*.onnx"
max_params = {small["params"]}
""",
    )
    result = check(budgets_file=toml)  # no models: every model the globs match
    by_name = {Path(m.model).name: m for m in result.models}
    assert set(by_name) == {"small.onnx", "big.onnx"}
    assert by_name["small.onnx"].ok and "loose" in by_name["small.onnx"].figures["params"].budget
    assert not by_name["big.onnx"].ok and "tight" in by_name["big.onnx"].figures["params"].budget
    # Flags combine with the file: the tightest limit wins.
    both = check([tmp_path / "models" / "small.onnx"], max_params=small["params"] - 1, budgets_file=toml)
    assert not both.ok and both.models[0].figures["params"].budget == "command line"


def test_check_input_errors(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    with pytest.raises(UserError, match="no budget"):
        check([model])
    with pytest.raises(UserError, match="no such file"):
        check([tmp_path / "missing.onnx"], max_params="1M")
    with pytest.raises(UserError, match="directory"):
        check([tmp_path], max_params="1M")
    with pytest.raises(UserError, match="no model"):
        check([], max_params="1M")
    with pytest.raises(UserError, match="--max-params"):
        check([model], max_params="1Q")
    other = conv_model(tmp_path / "sub" / "x.onnx")
    toml = write(tmp_path / "b.toml", '[[budget]]\nmodels = "sub/*.onnx"\nmax_params = "1M"\n')
    with pytest.raises(UserError, match="no budget applies"):
        check([model], budgets_file=toml)
    assert check([other], budgets_file=toml).ok


def test_profile_is_replaceable_for_callers(tmp_path, monkeypatch):
    model = conv_model(tmp_path / "m.onnx")
    monkeypatch.setattr(budget, "_profile", lambda path, shapes: {"params": 10, "flops": 20, "memory_bytes": 30})
    result = check([model], max_memory="29")
    assert result.models[0].figures["memory"].over_by == 1
