"""Issue 6: the CIFAR-10 sweep of VGG-16 (PA, FA, MA x 0.8, 0.6, 0.4, 0.2, plus the unpruned
baseline), trained from scratch, one seed; appends the table to benchmarks/RESULTS.md (results.csv/json
and the plots stay in --out, or are copied to --docs). Re-running resumes an interrupted sweep.
Superseded for the docs by benchmarks/paper_sweeps.py + paper_figures.py (issue 18, docs/paper.md):
one seed at this budget has no noise band, and its plots misled.

    .venv/bin/python benchmarks/sweep_cifar.py [--epochs 2 --limit-train 6000]

The default budget (2 epochs on a class-balanced 6k-image slice of the training set, 2k test images)
fits 13 trainings into about 40 minutes on a 2-core CPU; pass `--epochs 0 --limit-train 0` for the full
`--recipe cpu` schedule, or run `onnxprune sweep ... --recipe paper --device cuda` on a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from onnxprune.measure.bench import machine_info  # noqa: E402


def machine() -> str:
    info = machine_info()
    return f"{info['cpu']}, {info['cores']} cores, torch {version('torch')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "build" / "zoo" / "vgg16_cifar.legacy.kept.onnx"))
    parser.add_argument("--epochs", type=int, default=2, help="0: the recipe's")
    parser.add_argument("--limit-train", type=int, default=6000, help="0: the recipe's")
    parser.add_argument("--out", default=str(ROOT / "build" / "sweep-vgg16"))
    parser.add_argument("--docs", default=None, help="also copy results.csv/json and the plots here")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()

    command = [
        sys.executable,
        "-m",
        "onnxprune",
        "sweep",
        args.model,
        "--modes",
        "PA,FA,MA",
        "--targets",
        "0.8,0.6,0.4,0.2",
        "--data",
        "cifar10",
        "--recipe",
        "cpu",
        "--limit-test",
        "2000",
        "-o",
        args.out,
        "--quiet",
        "--json",
    ]
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    if args.limit_train:
        command += ["--limit-train", str(args.limit_train)]
    started = time.time()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return done.returncode
    rows = json.loads(done.stdout)["runs"]

    docs = Path(args.docs or args.out)
    if args.docs:
        docs.mkdir(parents=True, exist_ok=True)
        for path in Path(args.out).iterdir():
            if path.suffix in (".png", ".csv", ".json") and path.is_file():
                shutil.copyfile(path, docs / path.name)

    relative = [part.replace(f"{ROOT}/", "") for part in command[1:]]  # paths as run from the repository root
    shown = " ".join(part if " " not in part else f"'{part}'" for part in relative)
    lines = [
        f"\n## CIFAR-10 sweep of VGG-16 (issue 6) — {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC\n",
        f"Command: `.venv/bin/python benchmarks/sweep_cifar.py --epochs {args.epochs} --limit-train "
        f"{args.limit_train}` (runs `python {shown}`); machine: {machine()}; "
        f"{time.time() - started:.0f} s for this invocation (finished runs of an earlier one are reused). "
        "Latency: onnxruntime, 1 thread, batch 1, median; energy: the paper's estimate. Plots and "
        f"the CSV: `{docs.resolve().relative_to(ROOT) if docs.resolve().is_relative_to(ROOT) else docs}/`.\n",
        "| run | params | FLOPs | memory MB | latency ms | energy µJ | test accuracy | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['params'] / 1e6:.2f} M | {row['flops'] / 1e6:.1f} M | "
            f"{row['memory_bytes'] / 1e6:.1f} | {row['latency_ms']:.2f} | "
            f"{row['energy_uj_per_image']:.0f} | {100 * row['accuracy']:.1f}% | "
            f"{row['train_wall_seconds']:.0f} |"
        )
    with open(args.results, "a") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
