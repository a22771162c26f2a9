"""`make arm-check`: the core CLI on emulated aarch64 (qemu-aarch64-static, environment built by
benchmarks/arm/env.sh). Runs profile, shrink, check, bench and latency on a zoo model and checks
each answer; exit 0 when all pass, 1 with the failing step otherwise.

    python benchmarks/arm/check.py [--model build/zoo/mobilenetv2_cifar.legacy.folded.onnx]

Emulated timings are an instruction-cost proxy, not board latency (docs/edge.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARM = Path(os.environ.get("ARM_DIR", ROOT / "build" / "arm"))
PYTHON = ARM / "bin" / "python3.11"
MODEL = ROOT / "build" / "zoo" / "mobilenetv2_cifar.legacy.folded.onnx"


def emulated_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ARM / 'site'}", PYTHONDONTWRITEBYTECODE="1")


def run(*args: str, expect: int = 0) -> str:
    """One onnxprune command under emulation; its stdout. Fails the check on another exit code."""
    command = [str(PYTHON), "-m", "onnxprune", *args]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=emulated_env())
    shown = " ".join(str(Path(a).relative_to(ROOT)) if a.startswith(str(ROOT)) else a for a in args)
    print(f"  aarch64$ onnxprune {shown}  -> exit {done.returncode} ({time.perf_counter() - start:.1f} s)", flush=True)
    if done.returncode != expect:
        raise SystemExit(
            f"arm-check: FAILED: `onnxprune {shown}` exited {done.returncode}, expected {expect}\n"
            f"{done.stderr.strip()[-2000:]}"
        )
    return done.stdout


def need(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"arm-check: FAILED: {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--out", type=Path, default=ARM / "out")
    args = parser.parse_args()
    need(PYTHON.exists(), f"{PYTHON} missing: run benchmarks/arm/env.sh first (make arm-check does)")
    need(args.model.exists(), f"{args.model} missing: run `make models` first")
    args.out.mkdir(parents=True, exist_ok=True)
    model, pruned = str(args.model.resolve()), str((args.out / "pruned.FA-0.5.onnx").resolve())
    lat = str((args.out / "latency.aarch64.json").resolve())
    print(f"arm-check: {args.model.name} under qemu-aarch64-static")

    arch = subprocess.run(
        [str(PYTHON), "-c", "import platform, onnxruntime; print(platform.machine(), onnxruntime.__version__)"],
        capture_output=True,
        text=True,
        env=emulated_env(),
    ).stdout
    need(arch.startswith("aarch64 "), f"emulated interpreter reports {arch!r}, expected aarch64")

    profile = json.loads(run("profile", model, "--json"))
    flops = profile["totals"]["flops"]
    need(flops > 0, "profile: no FLOPs")

    report = json.loads(run("shrink", model, "--mode", "FA", "--target", "0.5", "-o", pruned, "--json"))
    need(report["after"]["flops"] <= 0.5 * flops, f"shrink: FLOPs {report['after']['flops']} over half of {flops}")

    verdict = json.loads(run("check", pruned, "--max-flops", str(int(0.5 * flops)), "--json"))
    need(verdict["ok"] is True, f"check: {verdict}")
    run("check", model, "--max-flops", str(int(0.5 * flops)), expect=1)  # the unpruned model must fail

    bench = json.loads(run("bench", model, pruned, "--runs", "3", "--warmup", "1", "--json"))
    need(bench["machine"]["arch"] == "aarch64", f"bench: machine {bench['machine']}")
    need(all(m["isolated"] for m in bench["models"]), "bench: not measured in fresh processes")
    speedup = bench["models"][1]["vs_baseline"]["speedup"]

    run("latency", pruned, "-o", lat, "--runs", "2", "--json")
    need(json.loads(Path(lat).read_text())["machine"] == "aarch64", "latency: profile not marked aarch64")

    print(
        f"arm-check: OK (aarch64 onnxruntime {arch.split()[1]}; FA 0.5: FLOPs {flops} -> {report['after']['flops']}, "
        f"emulated speed-up {speedup:.2f}x, an instruction-cost proxy)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
