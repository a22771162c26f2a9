"""The package and runtime versions (for `--version`, `version` and provenance), without the CLI."""

from __future__ import annotations

import platform


def versions() -> dict[str, str]:
    """onnxprune, onnx, onnxruntime, numpy and Python versions (torch when installed)."""
    import numpy
    import onnx
    import onnxruntime

    from onnxprune import __version__

    found = {
        "onnxprune": __version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    try:
        from importlib.metadata import version as installed

        found["torch"] = installed("torch")  # metadata only: importing torch takes seconds
    except Exception:  # noqa: BLE001 - not installed, or broken metadata
        pass
    return found


def version_line() -> str:
    found = versions()
    return f"onnxprune {found['onnxprune']} (onnx {found['onnx']}, onnxruntime {found['onnxruntime']})"
