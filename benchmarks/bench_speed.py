#!/usr/bin/env python3
"""Benchmark models side by side and append the figures to a results file.

    python benchmarks/bench_speed.py build/zoo/resnet.onnx build/pruned/resnet-FA50.onnx \\
        --runs 200 --threads 1,4 --results benchmarks/results.md

Prints the same table as `onnxprune bench` (one per --threads value) and appends a record to
--results: a Markdown section (``.md``) or an entry of a JSON list (``.json``), holding the command,
the machine (architecture, `lscpu` model name, cores), the date, onnxruntime's version and every
figure. Energy figures are ESTIMATES (FLOPs x 2.3 pJ + memory MB x 640 pJ; see docs/bench.md).
Needs only onnxruntime + numpy + the onnxprune core, so it runs unchanged on an aarch64 board.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from onnxprune.cli.app import parse_input_shapes  # noqa: E402
from onnxprune.errors import UserError  # noqa: E402
from onnxprune.measure.bench import ENERGY_NOTE, bench_many, compare, machine_info, report_json  # noqa: E402
from onnxprune.measure.figures import format_bytes, format_count  # noqa: E402


def lscpu_model_name() -> Optional[str]:
    """`lscpu`'s "Model name" (e.g. "Cortex-A72", "AMD EPYC 7B13"), or None."""
    if not shutil.which("lscpu"):
        return None
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, env=dict(os.environ, LC_ALL="C")
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name" and value.strip():
            return value.strip()
    return None


def machine() -> dict[str, Any]:
    info = machine_info()
    if not info.get("emulated"):  # under qemu-user, lscpu would name the host CPU alone
        info["cpu"] = lscpu_model_name() or info.get("cpu") or platform.processor() or "unknown"
    info["node"] = platform.node()
    info["platform"] = platform.platform()
    return info


def _threads(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
        if not values or any(v < 1 for v in values):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected positive integers separated by commas, e.g. 1,4"
        ) from None
    return values


def markdown(record: dict[str, Any]) -> str:
    """One Markdown section: heading, command, settings, a metrics x models table."""
    lines = [
        f"## {record['date']} - {record['machine']['cpu']} ({record['machine']['arch']}), "
        f"threads={record['settings']['threads']}",
        "",
        f"`{record['command']}`",
        "",
        f"onnxruntime {record['settings']['onnxruntime']}, runs={record['settings']['runs']}, "
        f"warmup={record['settings']['warmup']}, batch={record['models'][0]['batch']}, "
        f"{record['machine']['cores']} cores, {record['machine']['platform']}",
        "",
    ]
    models = record["models"]
    names = [Path(m["model"]).name for m in models]
    lines.append("| | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(models))

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def ratio(m: dict, key: str) -> str:
        value = m["vs_baseline"].get(key)
        return "" if value is None or m is models[0] else f" ({value:.2f}x)"

    row("file size", [format_bytes(m["size_bytes"]) + ratio(m, "size_ratio") for m in models])
    row("params", [format_count(m["params"]) + ratio(m, "params_ratio") for m in models])
    row("FLOPs (MACs)", [format_count(m["flops"]) + ratio(m, "flops_ratio") for m in models])
    row("latency median (ms)", [f"{m['latency_ms']['median']:.3f}" for m in models])
    row("latency p90 (ms)", [f"{m['latency_ms']['p90']:.3f}" for m in models])
    row("latency p99 (ms)", [f"{m['latency_ms']['p99']:.3f}" for m in models])
    row("speed-up", [f"{m['vs_baseline']['speedup']:.2f}x" for m in models])
    row("throughput (img/s)", [f"{m['throughput_ips']:.1f}" for m in models])
    row("peak memory", [format_bytes(m["peak_memory_bytes"]) + ratio(m, "peak_memory_ratio") for m in models])
    row("CPU utilisation", [f"{m['cpu_util_pct']:.0f} %" for m in models])
    row(
        "energy / image (µJ, ESTIMATE)",
        [
            ("-" if m["energy_uj_per_image"] is None else f"{m['energy_uj_per_image']:.3f}") + ratio(m, "energy_ratio")
            for m in models
        ],
    )
    lines += ["", f"Energy: {ENERGY_NOTE}.", "", ""]
    return "\n".join(lines)


def append_results(path: Path, records: list[dict[str, Any]]) -> None:
    if path.suffix.lower() == ".json":
        existing: list = []
        if path.exists() and path.stat().st_size:
            try:
                existing = json.loads(path.read_text())
            except json.JSONDecodeError:
                raise UserError(f"--results {path}: exists but is not JSON; give a new file or a .md file") from None
            if not isinstance(existing, list):
                raise UserError(f"--results {path}: holds JSON that is not a list; give a new file")
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(existing + records, indent=2) + "\n")
        os.replace(tmp, path)
    else:
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", encoding="utf-8") as handle:
            if new:
                handle.write("# onnxprune benchmark results\n\n")
            for record in records:
                handle.write(markdown(record))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help="ONNX models; the first is the baseline")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=_threads, default=[1], help="intra-op threads, e.g. 1 or 1,4")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-shape", action="append", metavar="NAME=1x3x32x32")
    parser.add_argument("--in-process", action="store_true", help="do not spawn a fresh process per model")
    parser.add_argument("--results", type=Path, help="append to this .md or .json file")
    args = parser.parse_args(argv)

    from rich.console import Console

    from onnxprune.cli.commands.bench import render_table

    console = Console()
    command = (
        shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None else shlex.join(["bench_speed.py", *argv])
    )
    host = machine()
    records = []
    try:
        if args.results is not None and not args.results.parent.resolve().is_dir():
            raise UserError(f"--results {args.results}: folder {args.results.parent} does not exist")
        for threads in args.threads:
            results = bench_many(
                args.models,
                runs=args.runs,
                warmup=args.warmup,
                threads=threads,
                batch=args.batch,
                seed=args.seed,
                input_shapes=parse_input_shapes(args.input_shape),
                isolate=not args.in_process,
            )
            console.print(render_table(results, title=f"onnxruntime CPU benchmark, {threads} thread(s)"))
            for result in results:
                result.machine = host
            payload = report_json(results)
            payload.update(date=_dt.datetime.now().astimezone().isoformat(timespec="seconds"), command=command)
            payload["settings"]["batch"] = args.batch
            payload["ratios"] = compare(results)
            records.append(payload)
        if args.results is not None:
            append_results(args.results, records)
            console.print(f"appended {len(records)} record(s) to {args.results}")
    except UserError as exc:
        print(f"bench_speed: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # the guard matters: "spawn" re-imports this file in each child
    sys.exit(main())
