"""Does a pruned model really get faster? Realised onnxruntime speed-up against the FLOPs ratio
(1 thread, batch 1) of `onnxprune shrink MODEL --mode FA --target 0.5` with default flags
(`--round-to auto`) and with the paper's exact counts (`--round-to 1`), on x86 and, with
--emulated, on aarch64 under qemu (an instruction-cost proxy, not board latency).

    .venv/bin/python benchmarks/speedup.py [--runs 100] [--rounds 3] [--results benchmarks/RESULTS.md]
    .venv/bin/python benchmarks/speedup.py --emulated --runs 3 --rounds 2   # after `make arm-check`

Every model and variant is measured in a fresh process; all of them are interleaved over
--rounds (A B C A B C ...) and the median of each one's per-round medians is reported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnxprune  # noqa: E402
from benchmarks.results_file import write_section  # noqa: E402
from models.export import ensure_zoo  # noqa: E402
from onnxprune.measure.bench import bench  # noqa: E402
from onnxprune.read.save import save_model  # noqa: E402

MODELS = ("vgg16_cifar", "resnet50_cifar", "mobilenetv2_cifar", "resnet50_imagenet", "mobilenetv2_imagenet")
CONFIGS = (("FA", "auto"), ("FA", 1))  # (mode, --round-to); auto is the default
ARM = ROOT / "build" / "arm"


def cpu_ms_per_run(latency_ms: dict, cpu_util_pct: float) -> float:
    """Process CPU time per run (one onnxruntime thread: the work itself, robust to a busy machine)."""
    return latency_ms["mean"] * cpu_util_pct / 100.0


def measure_native(path: Path, runs: int, warmup: int) -> tuple[float, float, int, dict]:
    result = bench(path, runs=runs, warmup=warmup, threads=1, batch=1)
    return result.median_ms, cpu_ms_per_run(result.latency_ms, result.cpu_util_pct), result.flops, result.machine


def measure_emulated(path: Path, runs: int, warmup: int) -> tuple[float, float, int, dict]:
    """`onnxprune bench --json` on the emulated aarch64 interpreter of `make arm-check`."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ARM / 'site'}")
    done = subprocess.run(
        [
            str(ARM / "bin" / "python3.11"),
            "-m",
            "onnxprune",
            "bench",
            str(path),
            "--runs",
            str(runs),
            "--warmup",
            str(warmup),
            "--threads",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"emulated bench failed on {path}: {done.stderr.strip()[-500:]}")
    payload = json.loads(done.stdout)
    model = payload["models"][0]
    return (
        model["latency_ms"]["median"],
        cpu_ms_per_run(model["latency_ms"], model["cpu_util_pct"]),
        model["flops"],
        payload["machine"],
    )


def prune_all(names: list[str], target: float, seed: int, out: Path) -> list[tuple[str, str, Path]]:
    """(model, label, path) for each baseline and each pruned variant, pruned afresh (seconds) so a
    file from older rounding code is never measured as the current default."""
    zoo = ensure_zoo(ROOT / "build" / "zoo", names=names, exporters=["legacy"], bns=["folded"])
    rows = []
    for path in zoo:
        name = path.name.split(".")[0]
        rows.append((name, "unpruned", path))
        for mode, round_to in CONFIGS:
            target_path = out / f"{name}.{mode}-{target}-r{round_to}.onnx"
            model, _ = onnxprune.shrink(path, mode=mode, target=target, seed=seed, round_to=round_to)
            save_model(model, target_path, path)
            label = f"{mode} {target}" + (
                " (default: --round-to auto)" if round_to == "auto" else f" --round-to {round_to}"
            )
            rows.append((name, label, target_path))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--emulated", action="store_true", help="measure on emulated aarch64 (make arm-check first)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--out", default=str(ROOT / "build" / "bench"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    measure = measure_emulated if args.emulated else measure_native
    rows = prune_all(args.models.split(","), args.target, args.seed, out)
    medians: dict[Path, list[float]] = {}
    cpu: dict[Path, list[float]] = {}
    flops: dict[Path, int] = {}
    machine: dict = {}
    for round_index in range(args.rounds):
        for name, label, path in rows:
            median_ms, cpu_ms, flops[path], machine = measure(path, args.runs, args.warmup)
            medians.setdefault(path, []).append(median_ms)
            cpu.setdefault(path, []).append(cpu_ms)
            print(f"round {round_index + 1}: {name} {label}: {median_ms:.3f} ms wall, {cpu_ms:.3f} ms CPU", flush=True)
    table = []
    for name, label, path in rows:
        if label == "unpruned":
            base_ms, base_cpu, base_flops = statistics.median(medians[path]), statistics.median(cpu[path]), flops[path]
            continue
        ms, cpu_ms = statistics.median(medians[path]), statistics.median(cpu[path])
        speedup, cpu_speedup, ratio = base_ms / ms, base_cpu / cpu_ms, base_flops / flops[path]
        table.append(
            f"| {name} | {label} | {ratio:.2f}x | {base_ms:.3f} | {ms:.3f} | {speedup:.2f}x | "
            f"{speedup / ratio:.2f} | {base_cpu:.3f} | {cpu_ms:.3f} | {cpu_speedup:.2f}x | "
            f"{cpu_speedup / ratio:.2f} |"
        )
    where = f"{machine.get('arch')} {machine.get('cpu')}" + (
        " by qemu-aarch64-static — an instruction-cost proxy, not board latency" if args.emulated else ""
    )
    command = "benchmarks/speedup.py " + " ".join(sys.argv[1:])
    heading = (
        f"## Realised speed-up of the default output (issue 13) — {'emulated aarch64' if args.emulated else 'x86'}"
    )
    lines = [
        "",
        f"{heading} — {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"Command: `.venv/bin/python {command.strip()}`; machine: {where}, {machine.get('cores')} cores "
        f"(shared with other jobs), onnxruntime {machine.get('onnxruntime')}, 1 thread, batch 1; each model in a "
        f"fresh process, median of {args.runs} runs after {args.warmup} warm-up, all models interleaved over "
        f"{args.rounds} rounds, median of the round medians; BN-folded legacy exports; seed {args.seed}.",
        "",
        "Wall: median latency; CPU: process CPU time per run (one onnxruntime thread, so the work itself; "
        "robust to the other jobs on this machine, which stretch wall time).",
        "",
        "| model | shrink | FLOPs ratio | wall base ms | wall pruned ms | wall speed-up | / FLOPs ratio | "
        "CPU base ms | CPU pruned ms | CPU speed-up | / FLOPs ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *table,
    ]
    print("\n".join(lines))
    write_section(Path(args.results), "\n".join(lines[1:]) + "\n", heading)
    print(f"results written to {args.results} (section {heading!r} replaced, else appended)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
