"""Pruning quantized graphs (issue 25, item 6b), measured on the zoo: each CIFAR model quantized by
onnxruntime (QDQ per channel and per tensor, QOperator per channel: `onnxprune quantize`; dynamic:
`quantize_dynamic`), then `shrink --mode FA --target 0.5 --init keep --verify`.

    python benchmarks/quantized_pruning.py [--models vgg16_cifar,...] [--calibration-images 16]

Per graph: FLOPs before and after, the zero-mask error `shrink --verify` reports (QDQ: on the
dequantized graphs), and, for the same keep sets, the error of the quantized graphs themselves with
onnxruntime's optimizations off (float emulation of QDQ) and on (integer kernels where onnxruntime
fuses them). Writes the section "## Pruning quantized graphs (issue 25)" of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.onnxprune_cli import CliFailed, run_json  # noqa: E402
from benchmarks.results_file import write_section  # noqa: E402

SECTION = "## Pruning quantized graphs (issue 25)"
FORMATS = {
    "QDQ per channel": ["--format", "qdq", "--per-channel"],
    "QDQ per tensor": ["--format", "qdq"],
    "QOperator per channel": ["--format", "qoperator", "--per-channel"],
    "dynamic (ConvInteger/MatMulInteger)": None,
}


def quantize(source: Path, out: Path, flags: list[str] | None, images: int) -> None:
    if flags is None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(source, out, weight_type=QuantType.QInt8)
        return
    run_json(
        "quantize", str(source), "-o", str(out), "--calibrate", "cifar10", "--calibration-images", str(images), *flags
    )


def raw_errors(source: Path, report: dict) -> tuple[float, float]:
    """The report's keep set: pruned vs zero-masked quantized graphs, optimizations off and on."""
    import onnx
    import onnxruntime as ort

    from onnxprune.analysis.groups import channel_groups
    from onnxprune.measure.verify import max_relative_error, random_feeds, zero_mask

    deps = channel_groups(str(source))
    keep = deps.keep_from_layers({row["node"]: row["kept"] for row in report["layers"]})
    pruned, masked = onnx.load(report["output"]), zero_mask(deps, keep)
    errors = []
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level, options.intra_op_num_threads, options.log_severity_level = level, 1, 3
        outs = []
        for model in (pruned, masked):
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            outs.append(session.run(None, random_feeds(session, 0))[0])
        errors.append(max_relative_error(*outs))
    return errors[0], errors[1]


def _cpu() -> str:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
        return line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16_cifar,resnet50_cifar,mobilenetv2_cifar,alexnet_cifar")
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "quantized_pruning")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for name in args.models.split(","):
        source = REPO / "build" / "zoo" / f"{name}.legacy.folded.onnx"
        for label, flags in FORMATS.items():
            tag = label.split(" (")[0].replace(" ", "-").lower()
            quantized, pruned = args.out / f"{name}.{tag}.onnx", args.out / f"{name}.{tag}.FA-0.5.onnx"
            quantize(source, quantized, flags, args.calibration_images)
            try:
                report = run_json(
                    "shrink", str(quantized), "--mode", "FA", "--target", "0.5", "--init", "keep", "--verify",
                    "-o", str(pruned),
                )  # fmt: skip
            except CliFailed as failed:
                rows.append(f"| {name} | {label} | — | — | refused or failed: {failed.reason} | — | — |")
                continue
            off, on = raw_errors(quantized, report)
            verify = report["verify"]
            rows.append(
                f"| {name} | {label} | {report['before']['flops']:,} → {report['after']['flops']:,} | "
                f"{len(report['layers'])} | {verify['zero_mask_max_rel_error']:.1e} | {off:.1e} | {on:.1e} |"
            )
            print(rows[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    lines = [
        f"{SECTION} — {started}",
        "",
        f"Command: `python benchmarks/quantized_pruning.py --models {args.models} --calibration-images "
        f"{args.calibration_images}` (code: commit {commit.stdout.strip()}). Machine: {_cpu()} ({platform.machine()}), "
        f"{os.cpu_count()} cores, Python {platform.python_version()}. The zoo's untrained CIFAR exports (BN folded), quantized by onnxruntime "
        "(static: `onnxprune quantize --calibrate cifar10`, int8 weights; dynamic: `quantize_dynamic`, int8 "
        'weights), then `shrink --mode FA --target 0.5 --init keep --verify` (seed 0). "verify": the zero-mask '
        "error shrink reports (QDQ graphs: compared with their activation quantize/dequantize pairs taken out, "
        '`verify.dequantized`). "quantized, opt. off/on": the same keep set, pruned vs zero-masked quantized '
        "graphs as they are, onnxruntime's graph optimizations off (QDQ emulated in float) and on (QDQ fused "
        "into integer kernels where onnxruntime can). Errors: max relative to the output's largest magnitude.",
        "",
        "| model | quantization | FLOPs (MACs) before → after | layers cut | verify zero-mask error "
        "| quantized, opt. off | quantized, opt. on |",
        "|---|---|---|---:|---:|---:|---:|",
        *rows,
    ]
    text = "\n".join(lines) + "\n"
    write_section(args.results, text, SECTION + " ")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
