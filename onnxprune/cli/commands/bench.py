"""`onnxprune bench`: onnxruntime CPU latency, throughput, memory, CPU use and an energy estimate.

Several models give one side-by-side table with ratios against the first. Methods: docs/bench.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence

import typer

from onnxprune.cli.app import app, console, emit_json, input_shape_option, parse_input_shapes, seed_option
from onnxprune.report import LiteralTable


def _columns(models: Sequence[str]) -> list[str]:
    names = [Path(m).name for m in models]
    return names if len(set(names)) == len(names) else list(models)


def _ratio(value: Optional[float], kind: str) -> str:
    if value is None:
        return ""
    if kind == "speed":
        return f" ({value:.2f}x faster)" if value >= 1 else f" ({1 / value:.2f}x slower)"
    return f" ({value:.2f}x)"


def render_table(results: Sequence[Any], title: str = "onnxruntime CPU benchmark") -> Any:
    """The side-by-side rich table of bench results (first column is the baseline)."""
    from onnxprune.measure.bench import compare, energy_note
    from onnxprune.measure.figures import format_bytes, format_count

    ratios = compare(results)
    first = results[0]
    caption = (
        f"runs={first.runs} warmup={first.warmup} threads={first.threads} batch={first.batch} "
        f"seed={first.seed}; onnxruntime {first.onnxruntime} CPUExecutionProvider; "
        f"{first.machine.get('arch', '?')} {first.machine.get('cpu', '')}. "
        f"Ratios (in brackets) are against the first model. Energy: {energy_note(first.energy_model)}."
    )
    table = LiteralTable(title=title, caption=caption, caption_justify="left")
    table.add_column("")
    for index, name in enumerate(_columns([r.model for r in results])):
        table.add_column(name + (" (baseline)" if index == 0 and len(results) > 1 else ""), justify="right")

    def row(label: str, cells: list[str]) -> None:
        table.add_row(label, *cells)

    def with_ratio(values: list[str], key: str, kind: str = "") -> list[str]:
        return [
            v + (_ratio(ratio[key], kind) if i and v != "-" else "") for i, (v, ratio) in enumerate(zip(values, ratios))
        ]

    row("input", [", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in r.inputs.items()) for r in results])
    row("file size", with_ratio([format_bytes(r.size_bytes) for r in results], "size_ratio"))
    row("params", with_ratio([format_count(r.params) for r in results], "params_ratio"))
    batches = {r.batch for r in results}
    per_run = (
        f", batch {first.batch}" if batches != {1} and len(batches) == 1 else (", per run" if batches != {1} else "")
    )
    row(f"FLOPs (MACs{per_run})", with_ratio([format_count(r.flops) for r in results], "flops_ratio"))
    row("latency median", with_ratio([f"{r.latency_ms['median']:.3f} ms" for r in results], "speedup", "speed"))
    row("latency p90", [f"{r.latency_ms['p90']:.3f} ms" for r in results])
    row("latency p99", [f"{r.latency_ms['p99']:.3f} ms" for r in results])
    row("throughput", with_ratio([f"{r.throughput_ips:,.1f} img/s" for r in results], "throughput_ratio"))
    row("peak memory", with_ratio([format_bytes(r.peak_memory_bytes) for r in results], "peak_memory_ratio"))
    row("CPU utilisation", [f"{r.cpu_util_pct:.0f} %" for r in results])
    row(
        "energy / image (ESTIMATE)",
        with_ratio(
            [("-" if r.energy_uj_per_image is None else f"{r.energy_uj_per_image:.3f} µJ") for r in results],
            "energy_ratio",
        ),
    )
    return table


@app.command()
def bench(
    models: List[str] = typer.Argument(
        ..., metavar="MODEL", show_default=False, help="ONNX models; the first is the baseline for the ratios."
    ),
    runs: int = typer.Option(100, "--runs", help="Timed runs per model."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs before timing."),
    threads: int = typer.Option(1, "--threads", help="onnxruntime intra-op threads (inter-op is 1)."),
    batch: int = typer.Option(1, "--batch", help="Images per run (models with a symbolic batch dimension)."),
    seed: int = seed_option("Seed of the random inputs."),
    input_shape: Optional[List[str]] = input_shape_option(),
    energy_model: str = typer.Option(
        "horowitz",
        "--energy-model",
        help="Energy ESTIMATE: horowitz (640 pJ per 32-bit DRAM access) or paper "
        "(640 pJ per MB, as printed in Zawish et al.); docs/bench.md.",
    ),
    in_process: bool = typer.Option(
        False, "--in-process", help="Measure in this process instead of a fresh one per model (memory less exact)."
    ),
    json_out: bool = typer.Option(False, "--json", help="All fields as JSON on stdout."),
) -> None:
    """Benchmark models with onnxruntime on the CPU, side by side (energy is an estimate)."""
    from onnxprune.measure.bench import bench_many, report_json

    results = bench_many(
        models,
        runs=runs,
        warmup=warmup,
        threads=threads,
        batch=batch,
        seed=seed,
        input_shapes=parse_input_shapes(input_shape, models[0]),
        isolate=not in_process,
        energy_model=energy_model,
    )
    if json_out:
        emit_json(report_json(results))
    else:
        console.print(render_table(results))
