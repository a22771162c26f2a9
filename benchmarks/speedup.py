"""Issue 6: does a pruned model really get faster? Realised onnxruntime speed-up against the
FLOPs ratio (1 thread, batch 1), and mode LA against FA at the same measured-latency target.

    .venv/bin/python benchmarks/speedup.py [--runs 300] [--results benchmarks/RESULTS.md]
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnxprune  # noqa: E402
from onnxprune.bench import bench, machine_info  # noqa: E402
from onnxprune.io import save_model  # noqa: E402
from models.export import ensure_zoo  # noqa: E402

MODELS = ("vgg16_cifar", "mobilenetv2_cifar")


def measure(path: Path, runs: int):
    return bench(path, runs=runs, warmup=20, threads=1, batch=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--out", default=str(ROOT / "build" / "bench"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    zoo = ensure_zoo(ROOT / "build" / "zoo", names=list(MODELS), exporters=["legacy"], bns=["folded"])
    rows, la_rows = [], []
    for path in zoo:
        name = path.name.split(".")[0]
        base = measure(path, args.runs)
        pruned = {}
        for mode in ("FA", "MA", "LA"):
            model, report = onnxprune.shrink(path, mode=mode, target=args.target, seed=args.seed)
            target_path = out / f"{name}.{mode}-{args.target}.onnx"
            save_model(model, target_path, path)
            result = measure(target_path, args.runs)
            pruned[mode] = (result, report)
            speedup = base.median_ms / result.median_ms
            flops_ratio = base.flops / result.flops
            rows.append((name, mode, base.median_ms, result.median_ms, speedup, flops_ratio, speedup / flops_ratio,
                         result.params / base.params))
            print(f"{name} {mode}: {base.median_ms:.3f} -> {result.median_ms:.3f} ms, speed-up {speedup:.2f}x, "
                  f"FLOPs ratio {flops_ratio:.2f}x, efficiency {speedup / flops_ratio:.2f}")
        for mode in ("LA", "FA"):
            result, report = pruned[mode]
            la_rows.append((name, mode, result.median_ms / base.median_ms, result.flops / base.flops,
                            result.params / base.params))
    lines = [
        "",
        f"## Realised speed-up and mode LA (issue 6) — {datetime.date.today().isoformat()}",
        "",
        f"Command: `.venv/bin/python benchmarks/speedup.py --runs {args.runs} --target {args.target}`; machine: "
        f"{machine_info().get('cpu', platform.processor())}, {machine_info().get('cores', '?')} cores, onnxruntime "
        f"1 thread, batch 1, median of {args.runs} runs after 20 warm-up, each model in a fresh process; "
        f"BN-folded legacy exports; seed {args.seed}. The 2-core machine was shared with other work, "
        f"so absolute times are noisy; ratios were taken within minutes of each other.",
        "",
        "| model | mode | base ms | pruned ms | speed-up | FLOPs ratio | speed-up / FLOPs ratio | params kept |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {n} | {m} | {b:.3f} | {p:.3f} | {s:.2f}x | {f:.2f}x | {e:.2f} | {k:.1%} |"
              for n, m, b, p, s, f, e, k in rows]
    lines += ["", f"LA against FA at the same target ({args.target} of measured latency for LA, of FLOPs for FA):",
              "", "| model | mode | measured latency kept | FLOPs kept | params kept |", "|---|---|---:|---:|---:|"]
    lines += [f"| {n} | {m} | {lat:.1%} | {f:.1%} | {k:.1%} |" for n, m, lat, f, k in la_rows]
    with open(args.results, "a") as handle:
        handle.write("\n".join(lines) + "\n")
    print(f"results appended to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
