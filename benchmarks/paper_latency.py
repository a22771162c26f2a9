#!/usr/bin/env python3
"""Issue 18: every run's latency re-measured side by side, in one sitting on one machine.

    .venv/bin/python benchmarks/paper_latency.py [--runs build/paper] [--rounds 5] [--bench-runs 100]

Each sweep run benches its trained model right after training, so runs that trained on different
days, machines or beside another training are not comparable: the unpruned MobileNetV2 recorded
1.03 ms in one session and its PA-0.8 run 2.16 ms in the next, yet benched side by side the PA-0.8
network is the faster one (2.09 against 2.67 ms on a busy machine, 1.28x).
This script rebuilds each finished run's network (latency depends on the architecture, not on the
weights): the unpruned zoo model for a baseline, `shrink` with the run's own mode, target, seed and
step for a pruned run, refused unless the rebuilt graph has exactly the params, FLOPs and memory the
run recorded after its shrink. It then benches all of them with onnxruntime (1 thread, batch 1),
`--rounds` times in turn so that a slow moment of the machine falls on every model alike, and writes
RUNS/latency.json: per run, the median over rounds of each round's median. benchmarks/paper_figures.py
uses these latencies instead of the per-run ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.paper_stats import LATENCY_NAME, load  # noqa: E402
from benchmarks.paper_sweeps import NETWORKS, ZOO  # noqa: E402
from onnxprune.measure.bench import bench, machine_info  # noqa: E402
from onnxprune.read.io import load_model  # noqa: E402
from onnxprune.read.save import save_json, save_model  # noqa: E402
from onnxprune.sweep.grid import file_fingerprint  # noqa: E402

SHRUNK_KEYS = ("params", "flops", "memory_bytes")


class NotRebuilt(Exception):
    """A run whose network cannot be rebuilt exactly: it gets no side-by-side latency."""


def rebuild(row: dict, zoo_model: Path, folder: Path) -> Path:
    """The run's network as an .onnx file in `folder` (the zoo model itself for a baseline)."""
    settings = row.get("settings") or {}
    if settings.get("model_sha") != file_fingerprint(zoo_model):
        raise NotRebuilt(f"{zoo_model.name} is not the model the run started from (sha {settings.get('model_sha')})")
    if row.get("mode") is None:
        return zoo_model
    from onnxprune import shrink

    pruned, report = shrink(
        load_model(zoo_model),
        mode=row["mode"],
        target=row["target"],
        seed=settings["seed"],
        step=settings["step"],
        init="reinit",
    )
    recorded = (row.get("shrink") or {}).get("after") or {}
    rebuilt = {key: report["after"][key] for key in SHRUNK_KEYS}
    if any(recorded.get(key) != rebuilt[key] for key in SHRUNK_KEYS):
        raise NotRebuilt(f"rebuilt {rebuilt} but the run recorded {recorded}")
    return save_model(pruned, folder / f"s{settings['seed']}-{row['name']}.onnx", zoo_model)


def measure(models: dict[str, Path], rounds: int, runs: int) -> dict[str, dict]:
    """Per key: the median of `rounds` medians, each of `runs` timed runs, the models taken in turn."""
    medians: dict[str, list[float]] = {key: [] for key in models}
    for _ in range(rounds):
        for key, path in models.items():
            medians[key].append(bench(path, runs=runs, warmup=10, threads=1, batch=1, isolate=False).median_ms)
    return {
        key: {"latency_ms": statistics.median(values), "round_medians_ms": values} for key, values in medians.items()
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "build" / "paper"), help="the run folders of paper_sweeps.py")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bench-runs", type=int, default=100, help="timed runs per model per round")
    args = parser.parse_args(argv)
    runs_dir = Path(args.runs)
    networks = load(runs_dir) if runs_dir.is_dir() else {}
    if not networks:
        print(
            f"paper_latency: {runs_dir}: no finished runs (RUNS/<net>-s<seed>/<run>/result.json); "
            f"run benchmarks/paper_sweeps.py first, or give --runs",
            file=sys.stderr,
        )
        return 2
    started = time.time()
    payload = {
        "command": "benchmarks/paper_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "settings": {"rounds": args.rounds, "bench_runs": args.bench_runs, "threads": 1, "batch": 1},
        "networks": {},
        "not_rebuilt": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        for net_name, net in networks.items():
            zoo_model = ZOO / NETWORKS[net_name]["model"]
            models: dict[str, Path] = {}
            for point in net.points.values():
                for seed, row in sorted(point.rows.items()):
                    key = f"s{seed}/{point.name}"
                    try:
                        models[key] = rebuild(row, zoo_model, Path(scratch))
                    except NotRebuilt as why:
                        payload["not_rebuilt"][f"{net_name}/{key}"] = str(why)
                        print(f"{net_name} {key}: not re-measured: {why}", file=sys.stderr)
            payload["networks"][net_name] = measure(models, args.rounds, args.bench_runs)
            for key, value in payload["networks"][net_name].items():
                print(f"{net_name} {key}: {value['latency_ms']:.3f} ms", flush=True)
    payload["seconds"] = round(time.time() - started, 1)
    save_json(payload, runs_dir / LATENCY_NAME)
    print(f"wrote {runs_dir / LATENCY_NAME} in {payload['seconds']:.0f} s")
    return 1 if payload["not_rebuilt"] else 0


if __name__ == "__main__":
    sys.exit(main())
