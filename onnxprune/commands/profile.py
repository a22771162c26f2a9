"""`onnxprune profile MODEL`: per-layer params, FLOPs and memory."""
from __future__ import annotations

import sys
from typing import List, Optional

import typer

from ..cli_app import app, console, emit_json, input_shape_option, parse_input_shapes
from ..errors import UserError
from ..report import LiteralTable, nbytes, pct, si

SHAPE_METHODS = {"onnx": "ONNX inference", "symbolic": "onnxruntime's symbolic inference",
                 "probe": "a probe run on zero inputs"}
SORT_KEYS = {"graph": None, "params": "params", "flops": "flops", "memory": "memory_bytes"}


@app.command("profile")
def profile_command(
    model: str = typer.Argument(..., metavar="MODEL", show_default=False, help="ONNX model file"),
    json_out: bool = typer.Option(False, "--json", help="machine output on stdout"),
    input_shape: Optional[List[str]] = input_shape_option(),
    sort: str = typer.Option("graph", "--sort", help="graph|params|flops|memory"),
    top: int = typer.Option(0, "--top", help="show only the N largest layers (0 = all)"),
) -> None:
    """Per layer: params, FLOPs (MACs), memory, and their shares of the totals."""
    from .. import profile

    if sort not in SORT_KEYS:
        raise UserError(f"--sort {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    if top < 0:
        raise UserError("--top must be 0 (all) or a positive number")
    result = profile(model, parse_input_shapes(input_shape, model))
    if result.uncounted:
        print(f"onnxprune: warning: {result.uncounted_summary()}", file=sys.stderr)
    rows = result.rows()
    if SORT_KEYS[sort]:
        rows.sort(key=lambda r: -r[SORT_KEYS[sort]])
    if top:
        rows = rows[:top]
    if json_out:
        payload = result.to_json()
        payload["layers"] = rows
        emit_json(payload)
        return
    caption = None if result.shape_method == "onnx" else f"shapes resolved by {SHAPE_METHODS[result.shape_method]}"
    table = LiteralTable(title=f"{model}", caption=caption, show_lines=False)
    for column in ("node", "op", "out ch", "params", "%", "FLOPs (MACs)", "%", "memory", "%"):
        table.add_column(column, justify="left" if column in ("node", "op") else "right")
    totals = result.totals
    for r in rows:
        table.add_row(r["node"], r["op"], str(r["out_channels"]), si(r["params"]), pct(r["params"], totals["params"]),
                      si(r["flops"]), pct(r["flops"], totals["flops"]), nbytes(r["memory_bytes"]),
                      pct(r["memory_bytes"], totals["memory_bytes"]))
    table.add_section()
    table.add_row("total", f"{len(result.layers)} layers", "", si(totals["params"]), "", si(totals["flops"]), "",
                  nbytes(totals["memory_bytes"]), "", style="bold")
    console.print(table)
