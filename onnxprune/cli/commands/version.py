"""`onnxprune version` (or `onnxprune --version`): the package and runtime versions, for bug reports."""

from __future__ import annotations

import typer

from onnxprune.cli.app import app, console, emit_json
from onnxprune.cli.versions import version_line, versions


@app.command()
def version(json_out: bool = typer.Option(False, "--json", help="All versions as JSON on stdout.")) -> None:
    """Print onnxprune, onnx and onnxruntime versions."""
    if json_out:
        emit_json(versions())
        return
    console.print(version_line(), markup=False, highlight=False)
