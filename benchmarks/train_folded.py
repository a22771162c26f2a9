"""Issue 19: train what users have -- zoo models exported with BatchNorm *folded* -- shrunk, then
`train --recipe cpu --seed 0` (default `--norm auto`: BatchNorm inserted for training, folded back at
export). Each finished run is appended to the results file at once, so an interrupted run keeps
what it measured.

    ONNXPRUNE_CIFAR10=/path/cifar10-jpeg.zip .venv/bin/python benchmarks/train_folded.py \
        [--only vgg16:PA:0.2,vgg16:FA:0.5,mobilenetv2:PA:0.2] [--norm auto]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.onnxprune_cli import CliFailed, run_json  # noqa: E402
from onnxprune.measure.bench import machine_info  # noqa: E402


def cli(*args: str) -> dict:
    """The CLI's JSON, or {"error": its one-line reason}: a failed run becomes a row, the others go on."""
    try:
        return run_json(*args)
    except CliFailed as failed:
        return {"error": failed.reason}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="vgg16:PA:0.2,vgg16:FA:0.5,mobilenetv2:PA:0.2")
    parser.add_argument("--norm", default="auto")
    parser.add_argument("--out", default=str(ROOT / "build" / "train-folded"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    with open(args.results, "a") as handle:
        handle.write(
            f"\n## Training BN-folded exports (issue 19) — {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC\n\n"
            f"Command: `.venv/bin/python benchmarks/train_folded.py --only {args.only} --norm {args.norm}`; "
            f"machine: {info['cpu']}, {info['cores']} cores (shared with other jobs), torch "
            f"{version('torch')}. Each: `shrink MODEL.legacy.folded.onnx --mode M --target T` (default "
            f"`--init reinit`, seed 0), then `train --recipe cpu --seed 0 --norm {args.norm}`.\n\n"
            "| model (folded) | mode/target | params | FLOPs | BN inserted | test accuracy (per epoch) | "
            "verdict | nodes same as pruned | train wall s |\n|---|---|---:|---:|---:|---|---|---|---:|\n"
        )
    for item in args.only.split(","):
        name, mode, target = item.split(":")
        model = ROOT / "build" / "zoo" / f"{name}_cifar.legacy.folded.onnx"
        pruned = out / f"{name}.{mode}-{target}.onnx"
        trained = out / f"{name}.{mode}-{target}.trained.onnx"
        shrunk = cli("shrink", str(model), "--mode", mode, "--target", target, "--seed", "0", "-o", str(pruned))
        if "error" in shrunk:
            row = f"| {name} | {mode} {target} | | | | shrink failed: {shrunk['error']} | | | |"
        else:
            profile = cli("profile", str(pruned))["totals"]
            started = time.time()
            result = cli(
                "train",
                str(pruned),
                "--data",
                "cifar10",
                "--recipe",
                "cpu",
                "--seed",
                "0",
                "--norm",
                args.norm,
                "--quiet",
                "-o",
                str(trained),
            )
            if "error" in result:
                row = (
                    f"| {name} | {mode} {target} | {profile['params'] / 1e6:.2f} M | {profile['flops'] / 1e6:.1f} M "
                    f"| | {result['error']} | stopped | | {time.time() - started:.0f} |"
                )
            else:
                import onnx

                same = [n.name for n in onnx.load(str(trained)).graph.node] == [
                    n.name for n in onnx.load(str(pruned)).graph.node
                ]
                epochs = " → ".join(f"{100 * h['test_acc']:.1f}" for h in result["history"])
                row = (
                    f"| {name} | {mode} {target} | {profile['params'] / 1e6:.2f} M | {profile['flops'] / 1e6:.1f} M | "
                    f"{len(result['norm']['inserted'])} | **{100 * result['accuracy']:.1f} %** ({epochs}) | "
                    f"{result['verdict']['status']} | {'yes' if same else 'no'} | {result['wall_seconds']:.0f} |"
                )
        print(row, flush=True)
        with open(args.results, "a") as handle:
            handle.write(row + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
