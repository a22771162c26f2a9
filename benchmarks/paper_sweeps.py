#!/usr/bin/env python3
"""Issue 18: the trainings behind docs/paper.md, as a queue of resumable `onnxprune sweep` runs.

    nice -n 19 .venv/bin/python benchmarks/paper_sweeps.py [--out build/paper] [--only mobilenetv2]
        [--threads 1] [--dry-run]

On this 2-core machine the two networks ran as two queues side by side, one thread each
(`--only mobilenetv2 --threads 1` and `--only vgg16 --threads 1`).

Every run uses `--recipe cpu` (3 epochs on a class-balanced 20k-image CIFAR-10 subset, one-cycle
SGD, tested on 2k images) and BN-kept legacy exports from the zoo. The queue is ordered so that
whatever finishes first is already usable:

1. per network, the noise band first: the unpruned baseline and one pruned point (PA 0.2) at
   seeds 0, 1 and 2, each seed in its own folder (`<net>-s<seed>`);
2. then the seed-0 grid: MobileNetV2 PA/FA/MA x 0.8/0.6/0.4/0.2, VGG-16 PA/FA/MA x 0.5/0.2.

Each entry is one `onnxprune sweep` invocation; a finished run (its result.json) is skipped, so
re-running this script after an interruption resumes where it stopped, over as many sessions as
it takes. `benchmarks/paper_figures.py` turns whatever has finished into the figures and tables.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "build" / "zoo"

NETWORKS = {
    "mobilenetv2": {"model": "mobilenetv2_cifar.legacy.kept.onnx", "grid": ("PA,FA,MA", "0.8,0.6,0.4,0.2")},
    "vgg16": {"model": "vgg16_cifar.legacy.kept.onnx", "grid": ("PA,FA,MA", "0.5,0.2")},
}
BAND_SEEDS = (0, 1, 2)
BAND_POINT = ("PA", "0.2")
COMMON = ["--data", "cifar10", "--recipe", "cpu", "--limit-test", "2000", "--quiet", "--json"]


def queue(out: Path, only: list[str]) -> list[tuple[str, list[str]]]:
    """(label, argv) per sweep invocation, in the order they should run."""
    jobs = []
    for net in only:
        spec = NETWORKS[net]
        model = str(ZOO / spec["model"])
        for seed in BAND_SEEDS:
            jobs.append((f"{net} band seed {seed}",
                         ["sweep", model, "--modes", BAND_POINT[0], "--targets", BAND_POINT[1], "--seed", str(seed),
                          "-o", str(out / f"{net}-s{seed}"), *COMMON]))
        modes, targets = spec["grid"]
        jobs.append((f"{net} grid seed 0",
                     ["sweep", model, "--modes", modes, "--targets", targets, "--seed", "0",
                      "-o", str(out / f"{net}-s0"), *COMMON]))
    return jobs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "build" / "paper"))
    parser.add_argument("--only", default=",".join(NETWORKS), help="comma-separated: " + ", ".join(NETWORKS))
    parser.add_argument("--threads", type=int, default=0, help="training threads per run (0: all cores)")
    parser.add_argument("--dry-run", action="store_true", help="print the queue and stop")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in only if n not in NETWORKS]
    if unknown:
        parser.error(f"--only: unknown network(s) {unknown}; expected {list(NETWORKS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for label, argv_ in queue(out, only):
        command = [sys.executable, "-m", "onnxprune", *argv_] + (["--threads", str(args.threads)] if args.threads else [])
        print(f"[{time.strftime('%H:%M:%S')}] {label}: {' '.join(command[1:])}", flush=True)
        if args.dry_run:
            continue
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"[{time.strftime('%H:%M:%S')}] {label}: exit {done.returncode}", flush=True)
        failures += done.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
