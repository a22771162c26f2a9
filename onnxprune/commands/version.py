"""`onnxprune version` (or `onnxprune --version`): the package and runtime versions, for bug reports."""
from __future__ import annotations

import platform

import typer

from ..cli_app import app, console, emit_json


def versions() -> dict[str, str]:
    """onnxprune, onnx, onnxruntime, numpy and Python versions (torch when installed)."""
    import numpy
    import onnx
    import onnxruntime

    from .. import __version__

    found = {"onnxprune": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
             "numpy": numpy.__version__, "python": platform.python_version()}
    try:
        from importlib.metadata import version as installed

        found["torch"] = installed("torch")  # metadata only: importing torch takes seconds
    except Exception:  # noqa: BLE001 - not installed, or broken metadata
        pass
    return found


def version_line() -> str:
    found = versions()
    return f"onnxprune {found['onnxprune']} (onnx {found['onnx']}, onnxruntime {found['onnxruntime']})"


@app.command()
def version(json_out: bool = typer.Option(False, "--json", help="All versions as JSON on stdout.")) -> None:
    """Print onnxprune, onnx and onnxruntime versions."""
    if json_out:
        emit_json(versions())
        return
    console.print(version_line(), markup=False, highlight=False)
