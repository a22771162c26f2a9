"""`onnxprune shrink MODEL --mode PA|FA|MA --target T`: the main job."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..cli_app import app, console, emit_json, parse_input_shapes
from ..errors import UserError
from ..io import save_model, validate_output_path
from ..report import nbytes, pct, si


def default_output(model: str, mode: str, target: Optional[float], budget: Optional[str]) -> Path:
    source = Path(model)
    tag = f"{target:g}" if target is not None else str(budget)
    return source.with_name(f"{source.stem}.{mode}-{tag}.onnx")


def parse_budget(mode: str, budget: str) -> float:
    from ..budget import parse_bytes, parse_count

    return float(parse_bytes(budget, "--budget") if mode == "MA" else parse_count(budget, "--budget"))


def _atomic_json(path: Path, payload: dict) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


@app.command("shrink")
def shrink_command(
    model: str = typer.Argument(..., help="ONNX model file (never modified)"),
    mode: str = typer.Option(..., "--mode", help="PA (params), FA (FLOPs), MA (memory) or LA (measured latency)"),
    target: Optional[float] = typer.Option(None, "--target", help="fraction of the baseline to keep, 0<t<1"),
    budget: Optional[str] = typer.Option(None, "--budget", help="absolute figure instead: 2.5M, 40M, 4MB, 4MiB"),
    step: float = typer.Option(0.1, "--step", help="fraction of a drawn group's channels removed per step"),
    seed: int = typer.Option(0, "--seed"),
    init: str = typer.Option("reinit", "--init", help="reinit (train from scratch) | keep (slice weights)"),
    criterion: str = typer.Option("random", "--criterion", help="random | l1"),
    strategy: str = typer.Option("complexity", "--strategy", help="complexity | uniform"),
    min_channels: int = typer.Option(1, "--min-channels"),
    round_to: str = typer.Option("auto", "--round-to", help="auto: kernel-friendly multiples per layer kind | R: "
                                 "multiples of R | 1: the paper's exact counts"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="default: <stem>.<mode>-<target>.onnx"),
    report: Optional[str] = typer.Option(None, "--report", help="write the JSON report here"),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help="NAME=1x3x32x32"),
    json_out: bool = typer.Option(False, "--json", help="print the report on stdout"),
    latency_profile: Optional[str] = typer.Option(None, "--latency-profile",
                                                  help="LA: per-node times measured on the target device"),
) -> None:
    """Prune output channels, chosen by complexity-weighted sampling, until under the target."""
    from .. import shrink

    mode = mode.upper()
    if mode not in ("PA", "FA", "MA", "LA"):
        raise UserError(f"--mode {mode!r}: choose PA (params), FA (FLOPs), MA (memory) or LA (latency)")
    if mode == "LA" and budget is not None:
        raise UserError("--budget is not available with --mode LA; give --target, a fraction of measured latency")
    if latency_profile and mode != "LA":
        raise UserError("--latency-profile goes with --mode LA")
    if target is None and budget is None:
        raise UserError("give --target FRACTION (e.g. 0.5) or --budget FIGURE (e.g. 2.5M)")
    if target is not None and budget is not None:
        raise UserError("give either --target or --budget, not both")
    out = validate_output_path(output or default_output(model, mode, target, budget), model)
    report_path = validate_output_path(report, model, out) if report else None
    absolute = parse_budget(mode, budget) if budget is not None else None
    pruned, result = shrink(model, mode=mode, target=target, budget=absolute, step=step, seed=seed, init=init,
                            criterion=criterion, strategy=strategy, min_channels=min_channels, round_to=round_to,
                            input_shapes=parse_input_shapes(input_shape), latency_profile=latency_profile)
    save_model(pruned, out, model)
    if report_path:
        _atomic_json(report_path, result)
    if json_out:
        emit_json(result)
        return
    _print_summary(model, out, result)
    if result.get("round_to_used") != result.get("round_to"):
        console.print("note: exact channel counts (--round-to 1): the target is unreachable with auto's kernel multiples")


def _print_summary(model: str, out: Path, result: dict) -> None:
    table = Table(title=f"{model} → {out}  (mode {result['mode']}, seed {result['seed']}, "
                        f"{result['iterations']} steps)")
    for column in ("layer", "op", "channels", "kept"):
        table.add_column(column, justify="left" if column in ("layer", "op") else "right")
    for row in result["layers"]:
        table.add_row(row["node"], row["op"], f"{row['out_channels_before']} → {row['out_channels_after']}",
                      pct(row["out_channels_after"], row["out_channels_before"]))
    console.print(table)
    totals = Table(title="totals")
    for column in ("figure", "before", "after", "reduction"):
        totals.add_column(column, justify="left" if column == "figure" else "right")
    before, after = result["before"], result["after"]
    for key, label, fmt in (("params", "params", si), ("flops", "FLOPs (MACs)", si), ("memory_bytes", "memory", nbytes)):
        totals.add_row(label, fmt(before[key]), fmt(after[key]), f"-{pct(before[key] - after[key], before[key])}")
    if "latency_us" in result:
        lat = result["latency_us"]
        totals.add_row("latency (estimated)", f"{lat['before_measured'] / 1000:.2f} ms",
                       f"{lat['after_estimated'] / 1000:.2f} ms",
                       f"-{pct(lat['before_measured'] - lat['after_estimated'], lat['before_measured'])}")
    console.print(totals)
