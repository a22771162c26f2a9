#!/usr/bin/env python3
"""Core performance of onnxprune on ResNet-50/ImageNet (issues 2-4).

    .venv/bin/python benchmarks/perf_core.py [--quick] [--reps 5] [--zoo build/zoo]
        [--results benchmarks/RESULTS.md] [--no-torch-pruning] [--cprofile]

Measures, for the four ResNet-50/ImageNet exports (legacy/dynamo exporter x BN folded/kept):

1. issue 2: `profile(model_proto)` time, beyond `load_model(path)` (timed separately). Goal <= 0.5 s.
2. issue 3: `load_graph` + `Tracer(mg).run()` + `prune_channels(deps, {g.id: first half})` time beyond
   loading (goal <= 0.3 s), and peak RSS (goal: peak increase over the loaded process <= 3x the file size).
3. issue 4: `shrink(proto, "FA", 0.5)` time beyond load and save (goal <= 1 s), peak RSS (<= 3x the file),
   and, side by side, Torch-Pruning 1.6.1 pruning the PyTorch ResNet-50 to the same MACs with random
   importance (goal: ours >= 10x faster).

Every timing is the median of --reps repetitions, each in a fresh subprocess (so that the peak RSS
(ru_maxrss) of each measurement is its own). The median is printed as a table and a section
"## Core performance (issues 2-4)" is appended to --results. The measurements are in
benchmarks/perf_core_workers.py, the report in benchmarks/perf_core_report.py.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without install

from benchmarks.perf_core_report import GOALS, render, top_cumulative, top_offenders  # noqa: E402
from benchmarks.perf_core_workers import (  # noqa: E402
    MODEL,
    work_profile,
    work_shrink,
    work_surgery,
    work_torch_pruning,
)

VARIANTS = ("legacy.folded", "legacy.kept", "dynamo.folded", "dynamo.kept")


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
def spawn(kind: str, *args: str, prof: str | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, *args]
    if prof:
        cmd += ["--prof-out", prof]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--zoo", default=str(ROOT / "build" / "zoo"))
    ap.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median reported)")
    ap.add_argument("--quick", action="store_true", help="3 repetitions, only legacy.folded for shrink/torch-pruning")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--no-results", action="store_true", help="do not append to --results")
    ap.add_argument("--no-torch-pruning", action="store_true")
    ap.add_argument("--cprofile", action="store_true", help="cProfile any measurement that misses its goal")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--prof-out", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.worker:
        if a.worker == "profile":
            res = work_profile(a.args[0], a.prof_out)
        elif a.worker == "surgery":
            res = work_surgery(a.args[0], a.prof_out)
        elif a.worker == "shrink":
            res = work_shrink(a.args[0], a.prof_out)
        elif a.worker == "torch_pruning":
            ratio = None if a.args[1] == "search" else float(a.args[1])
            res = work_torch_pruning(float(a.args[0]), ratio, a.prof_out)
        else:
            raise SystemExit(f"unknown worker {a.worker}")
        print(json.dumps(res))
        return 0

    reps = 3 if a.quick and a.reps == 5 else a.reps
    variants = [v for v in a.variants.split(",") if v]
    zoo = Path(a.zoo)
    started = _dt.datetime.now(_dt.timezone.utc)
    rows = []
    for v in variants:
        path = zoo / f"{MODEL}.{v}.onnx"
        if not path.is_file():
            print(f"skip {path}: missing (run `make models`)", file=sys.stderr)
            continue
        size_mib = path.stat().st_size / 2**20
        row = {"variant": v, "path": str(path), "size_mib": size_mib}
        for kind in ("profile", "surgery", "shrink"):
            if kind == "shrink" and a.quick and v != variants[0]:
                continue
            runs = [spawn(kind, str(path)) for _ in range(reps)]
            for r in runs:
                r["rss_ratio"] = r["rss_increase_mib"] / size_mib
                r["rss_peak_ratio"] = r["rss_peak_mib"] / size_mib
            rec = {
                k: median_of(runs, k)
                for k in (
                    "load_s",
                    "work_s",
                    "work_cpu_s",
                    "rss_loaded_mib",
                    "rss_peak_mib",
                    "rss_work_peak_mib",
                    "rss_increase_mib",
                    "rss_ratio",
                    "rss_peak_ratio",
                    "rss_load_peak_mib",
                )
            }
            for extra in ("load_graph_s", "tracer_s", "prune_s", "save_s"):
                if extra in runs[0]:
                    rec[extra] = median_of(runs, extra)
            for extra in ("groups", "before", "after", "iterations", "flops", "params"):
                if extra in runs[0]:
                    rec[extra] = runs[0][extra]
            row[kind] = rec
            print(
                f"{v:14s} {kind:8s} work {rec['work_s']:.3f}s cpu {rec['work_cpu_s']:.3f}s (load {rec['load_s']:.3f}s) "
                f"peak {rec['rss_peak_mib']:.0f} MiB, loaded {rec['rss_loaded_mib']:.0f} MiB, "
                f"work peak {rec['rss_work_peak_mib']:.0f} MiB (+{rec['rss_ratio']:.2f}x file)",
                flush=True,
            )
        rows.append(row)

    tp_rec = None
    if not a.no_torch_pruning and rows and "shrink" in rows[0]:
        try:
            import torch_pruning  # noqa: F401

            have_tp = True
        except ImportError:
            have_tp = False
            print(
                "torch-pruning not installed: skipping the side-by-side (pip install torch-pruning==1.6.1)",
                file=sys.stderr,
            )
        if have_tp:
            target = rows[0]["shrink"]["after"]["flops"]
            first = spawn("torch_pruning", str(target), "search")
            tp_runs = [first] + [spawn("torch_pruning", str(target), str(first["ratio"])) for _ in range(reps - 1)]
            tp_rec = dict(first)
            tp_rec["work_s"] = median_of(tp_runs, "work_s")
            tp_rec["depgraph_s"] = median_of(tp_runs, "depgraph_s")
            tp_rec["work_cpu_s"] = median_of(tp_runs, "work_cpu_s")
            print(
                f"torch-pruning  ratio {tp_rec['ratio']:.4f} work {tp_rec['work_s']:.3f}s "
                f"(DepGraph {tp_rec['depgraph_s']:.3f}s) MACs {tp_rec['macs'] / 1e9:.3f}G params {tp_rec['params'] / 1e6:.2f}M",
                flush=True,
            )

    # cProfile misses
    offenders: dict[str, list[str]] = {}
    if a.cprofile:
        import tempfile

        for row in rows:
            for kind, goal in (("profile", "profile_s"), ("surgery", "surgery_s"), ("shrink", "shrink_s")):
                if kind in row and row[kind]["work_s"] > GOALS[goal] and f"{kind}" not in offenders:
                    prof = os.path.join(tempfile.mkdtemp(), f"{kind}.prof")
                    spawn(kind, row["path"], prof=prof)
                    offenders[f"{kind} ({row['variant']})"] = (
                        top_cumulative(prof) + ["--- by own time ---"] + top_offenders(prof)
                    )

    text = render(rows, tp_rec, reps, started, offenders, argv)
    print(text)
    if not a.no_results:
        with open(a.results, "a") as fh:
            fh.write("\n" + text + "\n")
        print(f"appended to {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
