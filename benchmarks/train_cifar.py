"""Issue 5: train VGG-16/CIFAR-10 from scratch, unpruned and shrunk, with `--recipe cpu`; then
`pipeline scratch` against `pipeline finetune` at FA 0.5. Each finished configuration is
appended to the results file at once, so an interrupted run keeps what it measured.

    .venv/bin/python benchmarks/train_cifar.py [--only pa02,unpruned,fa05,ma05,pipelines]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.onnxprune_cli import run_json as cli  # noqa: E402
from onnxprune.measure.bench import machine_info  # noqa: E402


def machine() -> str:
    info = machine_info()
    return f"{info['cpu']}, {info['cores']} cores, torch {version('torch')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="pa02,unpruned,fa05,ma05,pipelines")
    parser.add_argument("--out", default=str(ROOT / "build" / "train-bench"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = ROOT / "build" / "zoo" / "vgg16_cifar.legacy.kept.onnx"
    results = Path(args.results)
    with open(results, "a") as handle:
        handle.write(
            f"\n## Training from scratch on CIFAR-10 (issue 5) — {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC\n\n"
            f"Command: `.venv/bin/python benchmarks/train_cifar.py --only {args.only}`; machine: {machine()}; "
            f"`--recipe cpu` (SGD + one-cycle, 3 epochs on a class-balanced "
            f"20k-image subset, tested on 2k images), seed 0, VGG-16 with BN, shrunk with `--init reinit`.\n"
        )
    table_header = (
        "\n| run | params | FLOPs | test accuracy | train wall s | images/s |\n|---|---:|---:|---:|---:|---:|\n"
    )
    configs = {"unpruned": None, "pa02": ("PA", "0.2"), "fa05": ("FA", "0.5"), "ma05": ("MA", "0.5")}
    for key in args.only.split(","):
        if key in configs:
            source = model
            if configs[key]:
                mode, target = configs[key]
                source = out / f"vgg16.{mode}-{target}.onnx"
                cli("shrink", str(model), "--mode", mode, "--target", target, "-o", str(source))
            profile = cli("profile", str(source))["totals"]
            started = time.time()
            trained = cli(
                "train",
                str(source),
                "--data",
                "cifar10",
                "--recipe",
                "cpu",
                "--quiet",
                "-o",
                str(out / f"{key}.trained.onnx"),
            )
            row = (
                f"| {key} | {profile['params'] / 1e6:.2f} M | {profile['flops'] / 1e6:.1f} M | "
                f"{100 * trained['accuracy']:.1f}% | {trained['wall_seconds']:.0f} | {trained['images_per_s']:.0f} |"
            )
            print(row, f"({time.time() - started:.0f} s)", flush=True)
            with open(results, "a") as handle:
                handle.write(table_header + row + "\n")
            table_header = ""
        elif key == "pipelines":
            lines = [
                "",
                "Pipelines at FA 0.5 (`onnxprune pipeline scratch|finetune`, `--recipe cpu`; finetune = "
                "train unpruned, shrink with `--criterion l1 --init keep`, fine-tune 1 epoch):",
                "",
                "| pipeline | final accuracy | total wall s | stages (s) |",
                "|---|---:|---:|---|",
            ]
            for kind, extra in (("scratch", []), ("finetune", ["--finetune-epochs", "1"])):
                # a finished pipeline.json is reused, so an interrupted benchmark resumes
                finished = out / kind / "pipeline.json"
                if finished.exists():
                    report = json.loads(finished.read_text())
                else:
                    report = cli(
                        "pipeline",
                        kind,
                        str(model),
                        "--mode",
                        "FA",
                        "--target",
                        "0.5",
                        "--recipe",
                        "cpu",
                        "--quiet",
                        "-o",
                        str(out / kind),
                        *extra,
                    )
                stages = ", ".join(
                    f"{stage} {seconds:.0f}" for stage, seconds in report["seconds"].items() if stage != "total"
                )
                lines.append(
                    f"| {kind} | {100 * report['accuracy']:.1f}% | {report['seconds']['total']:.0f} | {stages} |"
                )
                print(lines[-1], flush=True)
            with open(results, "a") as handle:
                handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
