"""`onnxprune latency MODEL -o PROFILE.json`: per-node times for `shrink --mode LA`, on this device."""

from __future__ import annotations

from typing import List, Optional

import typer

from onnxprune.cli.app import app, console, emit_json, input_shape_option, parse_input_shapes, seed_option
from onnxprune.errors import UserError
from onnxprune.report import LiteralTable


@app.command("latency")
def latency_command(
    model: str = typer.Argument(..., metavar="MODEL", show_default=False, help="ONNX model file"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the profile JSON here."),
    runs: int = typer.Option(20, "--runs", help="Timed runs; each node's time is its median."),
    threads: int = typer.Option(1, "--threads", help="onnxruntime intra-op threads."),
    top: int = typer.Option(15, "--top", help="Rows to show."),
    input_shape: Optional[List[str]] = input_shape_option(),
    seed: int = seed_option("Seed of the random inputs."),
    json_out: bool = typer.Option(False, "--json", help="Machine output on stdout."),
) -> None:
    """Measure each node's onnxruntime time; run it on the target board, then shrink --mode LA with it."""
    from onnxprune.analysis.latency import measure_node_latency, save_profile
    from onnxprune.read.io import load_model
    from onnxprune.read.save import check_outputs_writable

    if runs < 1 or threads < 1:
        raise UserError("--runs and --threads must be at least 1")
    check_outputs_writable({"-o": output}, model)
    times = measure_node_latency(
        load_model(model),
        runs=runs,
        threads=threads,
        seed=seed,
        label=model,
        input_shapes=parse_input_shapes(input_shape, model),
    )
    if output:
        save_profile(times, output, model)
    total = sum(times.values())
    if json_out:
        emit_json({"model": model, "unit": "us", "total_us": total, "nodes": times})
        return
    table = LiteralTable(
        title=f"{model}: {total / 1000:.2f} ms per inference (sum of node medians, {threads} thread(s))"
    )
    for column in ("node", "us", "share"):
        table.add_column(column, justify="left" if column == "node" else "right")
    for name, value in sorted(times.items(), key=lambda kv: -kv[1])[:top]:
        table.add_row(name, f"{value:.0f}", f"{100 * value / total:.1f}%" if total else "-")
    console.print(table)
