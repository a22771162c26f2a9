"""`onnxprune version`: the package and runtime versions, for bug reports."""
from __future__ import annotations

from ..cli_app import app, console


@app.command()
def version() -> None:
    """Print onnxprune, onnx and onnxruntime versions."""
    import onnx
    import onnxruntime

    from .. import __version__

    console.print(f"onnxprune {__version__} (onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__})")
