"""Training hand-off: pruned ONNX -> PyTorch -> trained ONNX (needs the `train` extra: torch).

Imports are lazy so that `import trainers` costs nothing until torch is actually needed:

    from trainers import train, convert, export_onnx, load_dataset
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import Any

if "torch" not in sys.modules:
    # OpenMP threads that spin while waiting make a shared 2-core machine crawl (measured: 4-5x
    # slower training when other processes compete); sleeping waiters cost next to nothing.
    # It must be set before torch loads its OpenMP runtime; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_EXPORTS = {
    "train": "loop",
    "TrainResult": "loop",
    "RECIPES": "loop",
    "evaluate": "loop",
    "evaluate_model": "evaluate",
    "resolve_config": "loop",
    "convert": "convert",
    "export_onnx": "convert",
    "OnnxModule": "convert",
    "load_dataset": "data",
    "Dataset": "data",
    "Batches": "data",
    "parse_data_spec": "data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainers' has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
