#!/usr/bin/env python3
"""onnxprune vs Torch-Pruning 1.6.1 on ResNet-50/ImageNet, loading included (issue 12's speed goal).

    .venv/bin/python benchmarks/vs_torch_pruning.py [--reps 7] [--variant legacy.folded]
        [--results benchmarks/RESULTS.md] [--no-results]

Both tools run in one process each time (a fresh one per repetition, OMP/MKL/torch threads = 1),
alternating, so that a busy spell hits both alike:

- onnxprune: `load_model(file)` + `shrink(model, "FA", 0.5, init="keep")`, the API the CLI's
  `shrink --init keep` calls (saving excluded on both sides).
- Torch-Pruning: `torch.load` of the zoo's PyTorch ResNet-50 pickled whole (architecture and
  weights, like an .onnx file: its "loading") + DepGraph + `MetaPruner.step()` with random importance, at the uniform ratio
  that reaches onnxprune's MACs (bisected once, untimed).

The medians go to a RESULTS.md section with the machine and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.perf_core_report import cpu_model, loadavg  # noqa: E402
from benchmarks.perf_core_workers import MODEL, model_fc, work_torch_pruning  # noqa: E402
from benchmarks.results_file import write_section  # noqa: E402


def work_ours(path: str) -> dict:
    import onnxprune
    from onnxprune.read.io import load_model

    t0, c0 = time.perf_counter(), time.process_time()
    model = load_model(path)
    t1 = time.perf_counter()
    _, report = onnxprune.shrink(model, mode="FA", target=0.5, seed=0, init="keep")
    t2, c2 = time.perf_counter(), time.process_time()
    return {
        "total_s": t2 - t0,
        "cpu_s": c2 - c0,
        "load_s": t1 - t0,
        "work_s": t2 - t1,
        "flops": report["after"]["flops"],
        "flops_before": report["before"]["flops"],
    }


def work_theirs(state_path: str, ratio: float) -> dict:
    import torch
    import torch_pruning as tp

    from models.zoo import MODELS

    torch.set_num_threads(1)
    example = torch.randn(*MODELS[MODEL].input_shape)
    t0, c0 = time.perf_counter(), time.process_time()
    model = torch.load(state_path, weights_only=False)  # the whole module, as an .onnx file holds graph + weights
    t1 = time.perf_counter()
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.RandomImportance(),
        pruning_ratio=ratio,
        ignored_layers=[model_fc(model)],
    )
    pruner.step()
    t2, c2 = time.perf_counter(), time.process_time()
    macs, _ = tp.utils.count_ops_and_params(model, example)
    return {"total_s": t2 - t0, "cpu_s": c2 - c0, "load_s": t1 - t0, "work_s": t2 - t1, "macs": int(macs)}


def spawn(*args: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, cwd=ROOT, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report_lines(a, ours: list[dict], theirs: list[dict], ratio: float) -> list[str]:
    speed = median(theirs, "total_s") / median(ours, "total_s")
    speed_cpu = median(theirs, "cpu_s") / median(ours, "cpu_s")
    row = "| {} | {:.3f} | {:.3f} | {:.3f} ({:.3f}) | {} |"
    return [
        f"- command: `python benchmarks/vs_torch_pruning.py --reps {a.reps} --variant {a.variant}`",
        f"- machine: {cpu_model()}; load average at the end (1/5/15 min): {loadavg()}",
        f"- each figure: median of {a.reps} runs, each in a fresh process, the two tools alternating; "
        "threads = 1; saving excluded on both sides",
        "",
        "| tool | loading s | pruning s | total s (cpu) | MACs after |",
        "|---|---:|---:|---:|---|",
        row.format(
            f"onnxprune `shrink --mode FA --target 0.5 --init keep` ({a.variant})",
            median(ours, "load_s"),
            median(ours, "work_s"),
            median(ours, "total_s"),
            median(ours, "cpu_s"),
            f"{ours[0]['flops'] / 1e9:.3f}G",
        ),
        row.format(
            f"Torch-Pruning 1.6.1 random, ratio {ratio:.4f} (`torch.load` of the pickled module)",
            median(theirs, "load_s"),
            median(theirs, "work_s"),
            median(theirs, "total_s"),
            median(theirs, "cpu_s"),
            f"{theirs[0]['macs'] / 1e9:.3f}G",
        ),
        "",
        f"Speed-up (Torch-Pruning / onnxprune, loading included): **{speed:.2f}x** wall, "
        f"**{speed_cpu:.2f}x** CPU (goal >= 1x: {'PASS' if speed >= 1 else 'MISS'}).",
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--variant", default="legacy.folded")
    ap.add_argument("--zoo", default=str(ROOT / "build" / "zoo"))
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--no-results", action="store_true")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        kind, *args = a.worker
        res = work_ours(*args) if kind == "ours" else work_theirs(args[0], float(args[1]))
        print(json.dumps(res))
        return 0
    path = str(Path(a.zoo) / f"{MODEL}.{a.variant}.onnx")
    first = spawn("ours", path)
    ratio = work_torch_pruning(first["flops"], None, None)["ratio"]  # untimed bisection
    with tempfile.TemporaryDirectory() as tmp:
        import torch

        from models.zoo import build

        state = os.path.join(tmp, "resnet50.pt")
        torch.save(build(MODEL, seed=0), state)
        ours, theirs = [], []
        for _ in range(a.reps):
            ours.append(spawn("ours", path))
            theirs.append(spawn("theirs", state, str(ratio)))
    lines = report_lines(a, ours, theirs, ratio)
    print("\n".join(lines))
    if not a.no_results:
        heading = "## onnxprune vs Torch-Pruning, loading included (issue 12)"
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_section(Path(a.results), "\n".join([f"{heading} — {stamp}", "", *lines, ""]), heading)
    return 0


if __name__ == "__main__":
    sys.exit(main())
