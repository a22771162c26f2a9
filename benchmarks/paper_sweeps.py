#!/usr/bin/env python3
"""Issue 18: the trainings behind docs/paper.md, as a queue of resumable `onnxprune sweep` runs.

    nice -n 19 .venv/bin/python benchmarks/paper_sweeps.py [--out build/paper] [--only mobilenetv2]
        [--threads 1] [--jobs 1] [--dry-run]

On this 2-core machine the two networks first ran as two queues side by side, one thread each
(`--only mobilenetv2 --threads 1` and `--only vgg16 --threads 1`); the MobileNetV2 grid was then
finished with `--only mobilenetv2 --threads 1 --jobs 2` (two runs at a time, see below).

Every run uses `--recipe cpu` (3 epochs on a class-balanced 20k-image CIFAR-10 subset, one-cycle
SGD, tested on 2k images) and BN-kept legacy exports from the zoo. The queue is ordered so that
whatever finishes first is already usable:

1. per network, the noise band first: the unpruned baseline and one pruned point (PA 0.2) at
   seeds 0, 1 and 2, each seed in its own folder (`<net>-s<seed>`);
2. then the seed-0 grid: MobileNetV2 PA/FA/MA x 0.8/0.6/0.4/0.2, VGG-16 PA/FA/MA x 0.5/0.2;
3. then the other runs docs/paper.md's side-by-side table reads (NETWORKS[net]["table"]) at
   seeds 1 and 2, so that every row of that table has three seeds.

Each entry is one `onnxprune sweep` invocation; a finished run (its result.json) is skipped, so
re-running this script after an interruption resumes where it stopped, over as many sessions as
it takes. `benchmarks/paper_figures.py` turns whatever has finished into the figures and tables;
it reads each run's result.json, not the sweep folders' summaries.

`--jobs N` runs N invocations at a time, step by step: the band (one folder per seed, so no two
invocations train one baseline), then the grid as one invocation per mode x target (the table's
runs first), then the table's other seeds, and last one whole-grid invocation per network (every
run skipped) that rewrites the seed-0 folder's summary.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from onnxprune.sweep.grid import file_fingerprint as fingerprint

ROOT = Path(__file__).resolve().parents[1]
# The runs start from the zoo files as the zoo code of commit d221651 exported them (`make paper-zoo`):
# today's export writes other bytes, and runs of different files must not be mixed into one band.
ZOO = ROOT / "build" / "paper-zoo"

# "table": the grid runs docs/paper.md's side-by-side table reads (the target nearest each of the
# paper's reductions, paper_figures.PAPER; a test keeps the two in step); --jobs runs them first.
NETWORKS = {
    "mobilenetv2": {
        "model": "mobilenetv2_cifar.legacy.kept.onnx",
        "sha": "6786daf64415e1fd",
        "grid": ("PA,FA,MA", "0.8,0.6,0.4,0.2"),
        "table": (("PA", "0.2"), ("FA", "0.4"), ("MA", "0.4")),
    },
    "vgg16": {
        "model": "vgg16_cifar.legacy.kept.onnx",
        "sha": "380f97ed9bebc9f6",
        "grid": ("PA,FA,MA", "0.5,0.2"),
        "table": (("PA", "0.2"), ("FA", "0.2"), ("MA", "0.2")),
    },
}
BAND_SEEDS = (0, 1, 2)
BAND_POINT = ("PA", "0.2")
COMMON = ["--data", "cifar10", "--recipe", "cpu", "--limit-test", "2000", "--quiet", "--json"]


Job = tuple[str, list[str]]


def _sweep(net: str, out: Path, modes: str, targets: str, seed: int) -> list[str]:
    model = str(ZOO / NETWORKS[net]["model"])
    return [
        "sweep",
        model,
        "--modes",
        modes,
        "--targets",
        targets,
        "--seed",
        str(seed),
        "-o",
        str(out / f"{net}-s{seed}"),
        *COMMON,
    ]


def zoo_problems(only: list[str]) -> list[str]:
    """One line per network whose zoo file is missing or not the one the committed runs started from."""
    problems = []
    for net in only:
        path = ZOO / NETWORKS[net]["model"]
        if not path.is_file():
            problems.append(f"{path}: missing; run `make paper-zoo`")
        elif fingerprint(path) != NETWORKS[net]["sha"]:
            problems.append(f"{path}: sha {fingerprint(path)}, the runs started from {NETWORKS[net]['sha']}")
    return problems


def _grid_runs(net: str) -> list[tuple[str, str]]:
    modes, targets = (part.split(",") for part in NETWORKS[net]["grid"])
    return [(m, t) for m in modes for t in targets]


def planned_runs(net: str) -> list[tuple[int, str | None, str | None]]:
    """(seed, mode, target) of every run queued for `net`; mode and target None for the baseline."""
    band = [run for seed in BAND_SEEDS for run in ((seed, None, None), (seed, *BAND_POINT))]
    grid = [(0, *run) for run in _grid_runs(net)]
    return list(dict.fromkeys(band + grid + [(seed, *run) for seed, run in _table_seed_runs(net)]))


def _table_seed_runs(net: str) -> list[tuple[int, tuple[str, str]]]:
    return [(seed, run) for seed in BAND_SEEDS if seed != 0 for run in NETWORKS[net]["table"] if run != BAND_POINT]


def band_jobs(out: Path, net: str) -> list[Job]:
    return [(f"{net} band seed {seed}", _sweep(net, out, *BAND_POINT, seed)) for seed in BAND_SEEDS]


def grid_job(out: Path, net: str) -> Job:
    return (f"{net} grid seed 0", _sweep(net, out, *NETWORKS[net]["grid"], 0))


def split_grid_jobs(out: Path, net: str) -> list[Job]:
    """The seed-0 grid as one invocation per mode x target, the table's runs first."""
    table = list(NETWORKS[net]["table"])
    runs = table + [run for run in _grid_runs(net) if run not in table]
    return [(f"{net} grid seed 0 {m}-{t}", _sweep(net, out, m, t, 0)) for m, t in runs]


def table_seed_jobs(out: Path, net: str) -> list[Job]:
    return [
        (f"{net} table seed {seed} {m}-{t}", _sweep(net, out, m, t, seed)) for seed, (m, t) in _table_seed_runs(net)
    ]


def queue(out: Path, only: list[str]) -> list[Job]:
    """(label, argv) per sweep invocation, in the order they should run one at a time."""
    return [job for net in only for job in (*band_jobs(out, net), grid_job(out, net), *table_seed_jobs(out, net))]


def phases(out: Path, only: list[str]) -> list[list[Job]]:
    """For --jobs > 1: lists of invocations that may run side by side, one list after the other."""
    return [
        [job for net in only for job in band_jobs(out, net)],
        [job for net in only for job in split_grid_jobs(out, net)],
        [job for net in only for job in table_seed_jobs(out, net)],
        [grid_job(out, net) for net in only],
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "build" / "paper"))
    parser.add_argument("--only", default=",".join(NETWORKS), help="comma-separated: " + ", ".join(NETWORKS))
    parser.add_argument("--threads", type=int, default=0, help="training threads per run (0: all cores)")
    parser.add_argument("--jobs", type=int, default=1, help="sweep invocations at a time (see above)")
    parser.add_argument("--dry-run", action="store_true", help="print the queue and stop")
    parser.add_argument("--check-zoo", action="store_true", help="check the zoo files' sha256 and stop")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in only if n not in NETWORKS]
    if unknown:
        parser.error(f"--only: unknown network(s) {unknown}; expected {list(NETWORKS)}")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be >= 1")
    problems = [] if args.dry_run else zoo_problems(only)  # a dry run only prints the queue
    for line in problems:
        print(f"paper_sweeps: {line}", file=sys.stderr)
    if problems or args.check_zoo:
        return 2 if problems else 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = ["--threads", str(args.threads)] if args.threads else []
    steps = [queue(out, only)] if args.jobs == 1 else phases(out, only)
    failures = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for step in steps:  # a step's invocations may run side by side; the next step waits for them
            failures += sum(pool.map(lambda job: _run(job, extra, args.dry_run), step))
    return 1 if failures else 0


def _run(job: Job, extra: list[str], dry_run: bool) -> int:
    """Runs one sweep invocation; 1 if it failed."""
    label, argv_ = job
    command = [sys.executable, "-m", "onnxprune", *argv_, *extra]
    print(f"[{time.strftime('%H:%M:%S')}] {label}: {' '.join(command[1:])}", flush=True)
    if dry_run:
        return 0
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    print(f"[{time.strftime('%H:%M:%S')}] {label}: exit {done.returncode}", flush=True)
    return int(done.returncode != 0)


if __name__ == "__main__":
    sys.exit(main())
