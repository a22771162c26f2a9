"""`onnxprune profile MODEL`: per-layer params, FLOPs and memory."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from onnxprune.cli.app import app, emit_json, importing, input_shape_option, parse_input_shapes
from onnxprune.errors import UserError
from onnxprune.report import nbytes, pct, si

SHAPE_METHODS = {
    "onnx": "ONNX inference",
    "symbolic": "onnxruntime's symbolic inference",
    "probe": "a probe run on zero inputs",
}
SORT_KEYS = {"graph": None, "params": "params", "flops": "flops", "memory": "memory_bytes"}


@app.command("profile")
def profile_command(
    model: str = typer.Argument(..., metavar="MODEL", show_default=False, help="ONNX model file"),
    other: Optional[str] = typer.Argument(
        None,
        metavar="MODEL_B",
        show_default=False,
        help="A second model (e.g. the pruned one): both side by side, layers matched by node name, with the ratio.",
    ),
    json_out: bool = typer.Option(False, "--json", help="machine output on stdout"),
    input_shape: Optional[List[str]] = input_shape_option(),
    sort: str = typer.Option("graph", "--sort", help="graph|params|flops|memory"),
    top: int = typer.Option(0, "--top", help="show only the N largest layers (0 = all)"),
    csv_path: Optional[str] = typer.Option(
        None,
        "--csv",
        metavar="PATH",
        help="Also write one CSV line per layer (shapes, params, FLOPs, memory); - for stdout instead of the table.",
    ),
) -> None:
    """Per layer: input and output shapes, params, FLOPs (MACs), memory and their shares of the totals.

    With a second model: both side by side, layers matched by node name, before → after and the ratio."""
    with importing():
        from onnxprune.cli.profile_views import (
            compare_profiles,
            print_comparison,
            profile_with_shapes,
            shape_text,
            write_csv,
        )

    if sort not in SORT_KEYS:
        raise UserError(f"--sort {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    if top < 0:
        raise UserError("--top must be 0 (all) or a positive number")
    if other is not None:
        if csv_path:
            raise UserError("--csv takes one model; for two, use --json")
        comparison = compare_profiles(model, other, parse_input_shapes(input_shape, model))
        for warning in comparison["warnings"]:
            print(f"onnxprune: warning: {warning}", file=sys.stderr)
        if json_out:
            emit_json(comparison)
        else:
            from onnxprune.cli.app import console  # rich: only a run that prints a table pays for it

            print_comparison(comparison, console)
        return
    result, rows = profile_with_shapes(model, parse_input_shapes(input_shape, model))
    if result.uncounted:
        print(f"onnxprune: warning: {result.uncounted_summary()}", file=sys.stderr)
    if SORT_KEYS[sort]:
        rows.sort(key=lambda r: -r[SORT_KEYS[sort]])
    if top:
        rows = rows[:top]
    if csv_path:
        write_csv(rows, csv_path)
        if csv_path == "-":
            return
    if json_out:
        payload = result.to_json()
        payload["layers"] = rows
        emit_json(payload)
        return
    from onnxprune.cli.app import console  # rich: only a run that prints a table pays for it
    from onnxprune.report import LiteralTable

    caption = None if result.shape_method == "onnx" else f"shapes resolved by {SHAPE_METHODS[result.shape_method]}"
    table = LiteralTable(title=f"{model}", caption=caption, show_lines=False)
    for column in ("node", "op", "input", "output", "params", "%", "FLOPs (MACs)", "%", "memory", "%"):
        table.add_column(column, justify="left" if column in ("node", "op") else "right")
    totals = result.totals
    for r in rows:
        table.add_row(
            r["node"],
            r["op"],
            shape_text(r["input_shape"]),
            shape_text(r["output_shape"]),
            si(r["params"]),
            pct(r["params"], totals["params"]),
            si(r["flops"]),
            pct(r["flops"], totals["flops"]),
            nbytes(r["memory_bytes"]),
            pct(r["memory_bytes"], totals["memory_bytes"]),
        )
    table.add_section()
    table.add_row(
        "total",
        f"{len(result.layers)} layers",
        "",
        "",
        si(totals["params"]),
        "",
        si(totals["flops"]),
        "",
        nbytes(totals["memory_bytes"]),
        "",
        style="bold",
    )
    console.print(table)
