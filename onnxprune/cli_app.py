"""The typer app and the shared CLI plumbing; each verb lives in onnxprune/commands/<verb>.py."""
from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Complexity-driven structured pruning of CNNs, directly on ONNX graphs.",
)

# People read tables on stderr-free stdout; machine output (--json) goes to stdout alone.
# Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns; give them room.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def emit_json(payload: Any) -> None:
    """Print machine output on stdout, nothing else."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def parse_input_shapes(specs: list[str] | None) -> dict[str, list[int]] | None:
    """`NAME=1x3x32x32` (repeatable) -> {"NAME": [1, 3, 32, 32]}."""
    from .errors import UserError

    if not specs:
        return None
    shapes: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, dims = spec.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [int(d) for d in dims.lower().split("x")]
            if any(d <= 0 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise UserError(
                f"--input-shape {spec!r}: expected NAME=DxDx... with positive integers, e.g. input=1x3x32x32"
            ) from None
    return shapes


@app.callback()
def _root() -> None:
    """Complexity-driven structured pruning of CNNs, directly on ONNX graphs."""
