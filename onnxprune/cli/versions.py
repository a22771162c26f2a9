"""The package and runtime versions (for `--version`, `version` and provenance), without the CLI.

Read from the installed packages' metadata, never by importing them: importing onnx alone takes
~0.6 s with ml_dtypes 0.7, and `--version` must answer at once."""

from __future__ import annotations

import platform
import sys

# module -> the distributions that install it (onnxruntime comes in several builds)
DISTRIBUTIONS = {
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "numpy": ("numpy",),
    "torch": ("torch",),
}


def _installed(module: str, *, import_if_unlisted: bool = True) -> str | None:
    """A module's version: its `__version__` when already imported, else its distribution's
    metadata; a build under another distribution name is imported as a last resort."""
    loaded = sys.modules.get(module)
    if loaded is not None and isinstance(getattr(loaded, "__version__", None), str):
        return loaded.__version__
    from importlib.metadata import PackageNotFoundError, version

    for distribution in DISTRIBUTIONS[module]:
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    if not import_if_unlisted:
        return None
    try:
        return str(__import__(module).__version__)
    except Exception:  # noqa: BLE001 - not installed, or broken
        return None


def versions() -> dict[str, str]:
    """onnxprune, onnx, onnxruntime, numpy and Python versions (torch when installed)."""
    from onnxprune import __version__

    found = {"onnxprune": __version__}
    for module in ("onnx", "onnxruntime", "numpy"):
        found[module] = _installed(module) or "not installed"
    found["python"] = platform.python_version()
    torch = _installed("torch", import_if_unlisted=False)  # importing torch takes seconds
    if torch is not None:
        found["torch"] = torch
    return found


def version_line() -> str:
    found = versions()
    return f"onnxprune {found['onnxprune']} (onnx {found['onnx']}, onnxruntime {found['onnxruntime']})"
