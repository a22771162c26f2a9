#!/usr/bin/env python3
"""trainers.memory measured: the same short `train`, glibc left as it is vs freed memory kept.

    ONNXPRUNE_DATA=../shared/datasets .venv/bin/python benchmarks/train_memory.py [--model M] [--pairs 1]
        [--limit-train 5120] [--shrunk FA:0.4,PA:0.4]

For MODEL (default: the zoo's MobileNetV2) and MODEL shrunk by `shrink --mode M --target T --seed 0` for
each M:T of --shrunk (pruned widths size the activations differently, and glibc's adaptive threshold
with them), runs
`onnxprune train --recipe cpu --epochs 1 --threads 1` as a child process, alternately with
ONNXPRUNE_KEEP_FREED_MEMORY=0 (before) and without (after), and reads each child's own rusage
(os.wait4): wall, user and kernel CPU seconds, minor page faults, peak RSS; checks that both reach
the same accuracy and loss. Appends a table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.onnxprune_cli import run_json  # noqa: E402
from benchmarks.results_file import write_section  # noqa: E402
from onnxprune.measure.bench import machine_info  # noqa: E402
from trainers.memory import OPT_OUT  # noqa: E402

SECTION = "## Training memory reuse (trainers.memory)"


def one_run(argv: list[str], keep: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != OPT_OUT} if keep else dict(os.environ, **{OPT_OUT: "0"})
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed (status {status})")
    result = json.loads(out)
    return {
        "keep": keep,
        "wall_s": time.perf_counter() - started,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "minor_faults": usage.ru_minflt,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "accuracy": result["accuracy"],
        "final_train_loss": result["history"][-1]["train_loss"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "build" / "zoo" / "mobilenetv2_cifar.legacy.kept.onnx"))
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--limit-train", type=int, default=5120)
    parser.add_argument("--shrunk", default="FA:0.4,PA:0.4", help="MODE:TARGET,... shrunk variants also trained")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args(argv)
    rows, load = [], os.getloadavg()[0]  # other work on the machine inflates wall time, not the child's own CPU
    with tempfile.TemporaryDirectory() as scratch:
        models = {"unpruned": args.model}
        for item in filter(None, args.shrunk.split(",")):
            mode, target = item.split(":")
            models[f"{mode}-{target}"] = str(Path(scratch) / f"{mode}-{target}.onnx")
            run_json(
                "shrink",
                args.model,
                "--mode",
                mode,
                "--target",
                target,
                "--seed",
                "0",
                "-o",
                models[f"{mode}-{target}"],
            )
        for label, model in models.items():
            command = [
                sys.executable,
                "-m",
                "onnxprune",
                "train",
                model,
                "--data",
                "cifar10",
                "--recipe",
                "cpu",
                "--epochs",
                "1",
                "--limit-train",
                str(args.limit_train),
                "--limit-test",
                "200",
                "--threads",
                "1",
                "--quiet",
                "--json",
                "-o",
                str(Path(scratch) / "trained.onnx"),
            ]
            for _ in range(args.pairs):
                for keep in (False, True):
                    rows.append({"model": label, **one_run(command, keep)})
                    print(json.dumps(rows[-1]), flush=True)
    same = all(
        len({(r["accuracy"], r["final_train_loss"]) for r in rows if r["model"] == label}) == 1
        for label in {r["model"] for r in rows}
    )
    info = machine_info()
    lines = [
        f"{SECTION} — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `.venv/bin/python benchmarks/train_memory.py --pairs {args.pairs} --limit-train "
        f"{args.limit_train} --shrunk {args.shrunk}` on {Path(args.model).name} and it shrunk (seed 0): `train --recipe cpu --epochs 1 --threads 1`, batch 128. "
        f"Machine: {info['cpu']}, {info['cores']} cores, load average {load:.1f} at the start. Each run is a child process; CPU times, faults and "
        f"peak RSS are its own (os.wait4). Same accuracy and loss, kept or not: {'yes' if same else 'NO'}.",
        "",
        "| model | glibc | wall s | user s | kernel s | kernel share | minor faults | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = r["sys_s"] / (r["user_s"] + r["sys_s"])
        lines.append(
            f"| {r['model']} | {'freed memory kept' if r['keep'] else 'as it is (' + OPT_OUT + '=0)'} | {r['wall_s']:.1f} | "
            f"{r['user_s']:.1f} | {r['sys_s']:.1f} | {100 * share:.0f} % | {r['minor_faults']:,} | "
            f"{r['peak_rss_mb']:.0f} MB |"
        )
    write_section(Path(args.results), "\n".join(lines) + "\n", SECTION)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
