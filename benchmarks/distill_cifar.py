"""Issue 26, acceptance 1: distillation against labels on CIFAR-10 VGG-16, pruned to FLOPs 0.5.

The teacher is the zoo's VGG-16 (BatchNorm kept) trained with `train --recipe cpu --keep-bn`. Each
seed prunes it at FA 0.5 twice -- `--init keep --criterion l1` and `--init reinit` -- and trains four
variants on the same images for the same epochs:

  (a) keep + l1, `--teacher`, no labels     (b) keep + l1, labels only (train-prune-fine-tune)
  (c) reinit, `--teacher`, no labels         (d) reinit, labels only (the paper's, today's `scratch`)

"No labels": the data is CIFAR-10 itself, so that all four see the same images in the same order, but
`--alpha 0` -- the loss never reads a label; test accuracy is measured on the test split. Settings per
variant are the tool's defaults for them: (a) and (c) the `distill` recipe's optimizer (Adam 1e-3,
cosine), (b) and (d) the `cpu` recipe's (SGD one-cycle, peak 0.05; (b) at a tenth of it, as
`pipeline finetune` fine-tunes), all with `--batch-size` and the image budget below. Verdicts use
docs/paper.md's rule: the difference of two means is "no difference" within 2 standard errors
(seed spread, never below the binomial error of the test set).

Full protocol (hours of CPU): the defaults. A reduced run: e.g.
    PYTHONPATH=. .venv/bin/python benchmarks/distill_cifar.py --teacher-limit 10000 --teacher-epochs 2 \\
        --limit-train 5000 --epochs 2 --seeds 0
Each finished run is saved in the JSON at once and skipped when the script runs again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.onnxprune_cli import CliFailed, run_json  # noqa: E402

VARIANTS = {
    "a": ("keep", True, "keep + l1, --teacher, no labels"),
    "b": ("keep", False, "keep + l1, labels only (fine-tune)"),
    "c": ("reinit", True, "reinit, --teacher, no labels"),
    "d": ("reinit", False, "reinit, labels only (scratch)"),
}


def _cli(*args: str) -> dict:
    try:
        return run_json(*args)
    except CliFailed as failed:
        return {"error": failed.reason}


def run(args, results: dict, key: str, *cli_args: str) -> dict:
    if key in results["runs"] and not results["runs"][key].get("error"):
        return results["runs"][key]
    started = time.perf_counter()
    payload = _cli(*cli_args)
    payload["wall_seconds"] = round(time.perf_counter() - started, 1)
    results["runs"][key] = {k: payload.get(k) for k in ("accuracy", "error", "wall_seconds", "relative_error", "agreement", "relative_error_before", "agreement_before")}  # fmt: skip
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(key, json.dumps(results["runs"][key]), flush=True)
    return results["runs"][key]


def verdict(a: list[float], b: list[float], test_images: int) -> dict:
    """docs/paper.md's rule for mean(a) - mean(b)."""
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    sd = lambda v: math.sqrt(sum((x - mean(v)) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0  # noqa: E731
    delta = mean(a) - mean(b)
    p = mean(b)
    floor = math.sqrt(p * (1 - p) / test_images)
    se = max(math.sqrt(sd(a) ** 2 / len(a) + sd(b) ** 2 / len(b)), floor)
    word = "no difference" if abs(delta) <= 2 * se else ("gain" if delta > 0 else "loss")
    return {"delta_points": round(100 * delta, 2), "se_points": round(100 * se, 2), "verdict": word}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-limit", type=int, default=20000, help="teacher's training images (cpu recipe)")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--limit-train", type=int, default=20000, help="every variant's training images")
    parser.add_argument("--limit-test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--variants", default="a,b,c,d", help="which to run (e.g. a,b and c,d side by side, each with its --json)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "build" / "distill-cifar"))
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "distill_cifar.json"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    from onnxprune.measure.bench import machine_info

    results["settings"] = {
        "command": "PYTHONPATH=. .venv/bin/python benchmarks/distill_cifar.py " + " ".join(sys.argv[1:]),
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "machine": machine_info(),
        **{
            k: getattr(args, k)
            for k in (
                "teacher_limit",
                "teacher_epochs",
                "limit_train",
                "limit_test",
                "epochs",
                "batch_size",
                "seeds",
                "variants",
                "threads",
            )
        },  # fmt: skip
    }
    common = ["--data", "cifar10", "--limit-test", str(args.limit_test), "--threads", str(args.threads), "-q"]
    zoo = ROOT / "build" / "zoo" / "vgg16_cifar.legacy.kept.onnx"
    teacher = out / "teacher.onnx"
    made = run(
        args, results, "teacher", "train", str(zoo), "--recipe", "cpu", "--keep-bn", "--seed", "0",
        "--limit-train", str(args.teacher_limit), "--epochs", str(args.teacher_epochs), "-o", str(teacher), *common,
    )  # fmt: skip
    if made.get("error"):
        return 1
    budget = [
        "--limit-train",
        str(args.limit_train),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
    ]
    for seed in [int(s) for s in args.seeds.split(",")]:
        for init in ("keep", "reinit"):
            pruned = out / f"{init}-s{seed}.onnx"
            if not pruned.exists():
                extra = ["--criterion", "l1"] if init == "keep" else []
                done = _cli(
                    "shrink", str(teacher), "--mode", "FA", "--target", "0.5", "--init", init, "--seed", str(seed),
                    *extra, "-o", str(pruned), "--report", str(out / f"{init}-s{seed}.report.json"),
                )  # fmt: skip
                if done.get("error"):
                    print(done["error"])
                    return 1
        for name, (init, distil, _what) in VARIANTS.items():
            if name not in args.variants.split(","):
                continue
            pruned = out / f"{init}-s{seed}.onnx"
            target = ["-o", str(out / f"{name}-s{seed}.onnx"), "--seed", str(seed)]
            if distil:
                cli = ["train", str(pruned), "--teacher", str(teacher), "--alpha", "0", "--student-init", init]
                cli += ["--shrink-report", str(out / f"{init}-s{seed}.report.json")]
            else:
                cli = ["train", str(pruned), "--recipe", "cpu", "--keep-bn"]
                if init == "keep":
                    cli += ["--lr", "0.005"]  # pipeline finetune's default: a tenth of the recipe's
            run(args, results, f"{name}-s{seed}", *cli, *common, *budget, *target)
    acc = {
        name: [r["accuracy"] for k, r in results["runs"].items() if k.startswith(f"{name}-s") and r.get("accuracy")]
        for name in VARIANTS
    }
    teacher_acc = results["runs"]["teacher"]["accuracy"]
    summary = {name: {"accuracies": v, "mean": sum(v) / len(v) if v else None} for name, v in acc.items()}
    if acc["a"]:
        summary["a_vs_teacher"] = verdict(acc["a"], [teacher_acc], args.limit_test)
    if acc["c"] and acc["d"]:
        summary["c_vs_d"] = verdict(acc["c"], acc["d"], args.limit_test)
    if acc["a"] and acc["b"]:
        summary["a_vs_b"] = verdict(acc["a"], acc["b"], args.limit_test)
    results["summary"] = summary
    path.write_text(json.dumps(results, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
