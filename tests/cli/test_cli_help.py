"""Issue 17 item 6: `onnxprune --version`, `version --json`, and help that reads as words: no
Python type tags (`<bool>`, `<str>`, ...) and a help text on every option of every verb."""

from __future__ import annotations

import json
import re

import pytest

from onnxprune import __version__
from onnxprune.cli import _register_commands, main


def _commands() -> dict:
    from typer.main import get_command

    from onnxprune.cli.app import app

    _register_commands()
    found = {}
    for name, command in get_command(app).commands.items():
        for sub_name, sub in getattr(command, "commands", {}).items():
            found[f"{name} {sub_name}"] = sub
        if not getattr(command, "commands", None):
            found[name] = command
    return found


def test_version_flag(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"onnxprune {__version__} (onnx ") and "onnxruntime" in out


def test_version_json(capsys):
    assert main(["version", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["onnxprune"] == __version__ and {"onnx", "onnxruntime", "python"} <= set(payload)


@pytest.mark.parametrize("verb", ["", *sorted(_commands())])
def test_help_has_no_type_tags(verb, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main([*verb.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out
    assert not re.search(r"<(bool|str|int|float|list\[|int range|float range)", out), out


@pytest.mark.parametrize("verb", sorted(_commands()))
def test_every_option_has_help(verb):
    command = _commands()[verb]
    missing = [p.opts[0] for p in command.params if p.param_type_name == "option" and not (p.help or "").strip()]
    assert not missing, f"{verb}: options without help: {missing}"
