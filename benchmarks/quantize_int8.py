"""Prune -> train -> quantize, measured: int8 vs float accuracy on a CIFAR-10 test slice, model
bytes, and latency (onnxruntime, 1 thread, batch 1), against the unpruned float model too.

    python benchmarks/quantize_int8.py --model TRAINED.onnx [--baseline UNPRUNED.onnx]

Quantizes MODEL with `onnxprune quantize` (QDQ and QOperator, per-channel), then writes the
section "## int8 after pruning (issue 15): MODEL" of benchmarks/RESULTS.md (replaced when it exists).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.onnxprune_cli import CliFailed, run_json  # noqa: E402
from benchmarks.results_file import write_section  # noqa: E402

SECTION = "## int8 after pruning (issue 15)"  # + ": MODEL": one section per model, replaced on a rerun


def cli(*args: str) -> dict:
    try:
        return run_json(*args)
    except CliFailed as failed:
        raise SystemExit(str(failed)) from None


def test_slice(model: Path, count: int):
    """The first `count` CIFAR-10 test images (class-balanced), normalised with the model's recorded stats."""
    sys.path.insert(0, str(REPO))
    import onnx

    from trainers.data import load_dataset

    props = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    mean = np.asarray(json.loads(props["onnxprune.mean"]), np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(json.loads(props["onnxprune.std"]), np.float32).reshape(1, -1, 1, 1)
    data = load_dataset("cifar10", train_per_class=1, test_per_class=-(-count // 10)).limited(test=count)
    x = (data.test_x.numpy().astype(np.float32) / 255.0 - mean) / std
    return x.astype(np.float32), data.test_y.numpy()


def accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    hits = sum(int(session.run(None, {name: x[i : i + 1]})[0].argmax() == y[i]) for i in range(len(x)))
    return hits / len(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="trained pruned float model (output of train)")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=REPO / "build" / "zoo" / "vgg16_cifar.legacy.folded.onnx",
        help="the unpruned float model (size and latency only)",
    )
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "int8")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    int8 = {}
    for fmt in ("qdq", "qoperator"):
        int8[fmt] = args.out / f"{args.model.stem}.int8.{fmt}.onnx"
        cli(
            "quantize",
            str(args.model),
            "-o",
            str(int8[fmt]),
            "--calibrate",
            "cifar10",
            "--format",
            fmt,
            "--per-channel",
            "--calibration-images",
            str(args.calibration_images),
        )
    x, y = test_slice(args.model, args.test_images)
    models = {
        "unpruned float": args.baseline,
        "pruned float": args.model,
        "pruned int8 QDQ": int8["qdq"],
        "pruned int8 QOperator": int8["qoperator"],
    }
    acc = {label: accuracy(path, x, y) for label, path in models.items() if label != "unpruned float"}
    bench = cli("bench", *map(str, models.values()), "--threads", "1", "--batch", "1", "--runs", str(args.runs))
    latency = {label: row["latency_ms"]["median"] for label, row in zip(models, bench["models"])}
    size = {label: path.stat().st_size for label, path in models.items()}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    machine = bench["machine"]
    title = f"{SECTION}: {args.model.stem}"
    lines = [
        f"{title} — {started}",
        "",
        f"Command: `python benchmarks/quantize_int8.py --model {args.model} --baseline {args.baseline}` "
        f"(code: commit {commit}). Machine: {machine.get('cpu')} ({machine.get('arch')}), {machine.get('cores')} cores "
        f"({', '.join(machine.get('isa', []))}), Python {platform.python_version()}, onnxruntime {machine.get('onnxruntime')}.",
        f"int8: `onnxprune quantize --calibrate cifar10 --per-channel --calibration-images {args.calibration_images}` "
        f"(static, MinMax, int8 weights; QDQ int8 / QOperator uint8 activations). Accuracy: onnxruntime on the first "
        f"{len(y)} CIFAR-10 test images (class-balanced; the JPEG zip), normalised with the model's recorded mean/std. "
        f"Latency: `onnxprune bench --threads 1 --batch 1 --runs {args.runs}` median, a fresh process per model "
        f"(the CPU is shared with other jobs: compare ratios, not absolutes). The unpruned float model is the "
        f"zoo's untrained export: size and latency only.",
        "",
        "| model | file bytes | × unpruned | × pruned float | test accuracy | Δ vs pruned float | latency ms (median) | × unpruned | × pruned float |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base_acc = acc["pruned float"]
    for label in models:
        a = acc.get(label)
        lines.append(
            f"| {label} | {size[label]:,} | {size[label] / size['unpruned float']:.3f} | "
            f"{size[label] / size['pruned float']:.3f} | {'—' if a is None else f'{100 * a:.2f} %'} | "
            f"{'—' if a is None else f'{100 * (a - base_acc):+.2f} pt'} | {latency[label]:.3f} | "
            f"{latency[label] / latency['unpruned float']:.3f} | {latency[label] / latency['pruned float']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    write_section(args.results, text, f"{title} ")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
