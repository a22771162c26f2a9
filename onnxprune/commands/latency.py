"""`onnxprune latency MODEL -o PROFILE.json`: per-node times for `shrink --mode LA`, on this device."""
from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..cli_app import app, console, emit_json
from ..errors import UserError


@app.command("latency")
def latency_command(
    model: str = typer.Argument(..., help="ONNX model file"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="write the profile JSON here"),
    runs: int = typer.Option(20, "--runs"),
    threads: int = typer.Option(1, "--threads"),
    top: int = typer.Option(15, "--top", help="rows to show"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Measure each node's onnxruntime time; run it on the target board, then shrink --mode LA with it."""
    from ..io import load_model
    from ..latency import measure_node_latency, save_profile

    if runs < 1 or threads < 1:
        raise UserError("--runs and --threads must be at least 1")
    times = measure_node_latency(load_model(model), runs=runs, threads=threads)
    if output:
        save_profile(times, output, model)
    total = sum(times.values())
    if json_out:
        emit_json({"model": model, "unit": "us", "total_us": total, "nodes": times})
        return
    table = Table(title=f"{model}: {total / 1000:.2f} ms per inference (sum of node medians, {threads} thread(s))")
    for column in ("node", "us", "share"):
        table.add_column(column, justify="left" if column == "node" else "right")
    for name, value in sorted(times.items(), key=lambda kv: -kv[1])[:top]:
        table.add_row(name, f"{value:.0f}", f"{100 * value / total:.1f}%")
    console.print(table)
