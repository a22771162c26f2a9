"""`pipeline distill` as a function: shrink (keeping the largest-L1 channels' weights by default),
distil the pruned graph from the original on any images (trainers.distill_loop: no labels), and
bench both with onnxruntime. Shares the run-folder and shrink helpers of onnxprune.cli.pipelines."""

from __future__ import annotations

import time
from typing import Any

from onnxprune.cli.app import err_console
from onnxprune.cli.commands.train import require_torch
from onnxprune.cli.pipelines import (
    RESULT_NAME,
    SHRINK_KEYS,
    _check_train_args,
    _complexity,
    _run_dir,
    _shrink,
    check_run_dir,
    checked_round_to,
)
from onnxprune.errors import UserError
from onnxprune.read.save import save_json

DISTILL_FILES = ("pruned.onnx", "shrink.json", "distilled.onnx", "distill.jsonl", RESULT_NAME)


def _bench_pair(original: str, distilled: str, runs: int, input_shapes: dict | None) -> dict:
    from onnxprune.measure.bench import bench

    shaped = {"input_shapes": input_shapes} if input_shapes else {}
    figures = {}
    for name, path in (("original", original), ("distilled", distilled)):
        result = bench(path, runs=runs, warmup=min(10, runs), threads=1, batch=1, **shaped)
        figures[name] = {"median_ms": result.latency_ms["median"], "flops": result.flops, "params": result.params}
    figures["speedup"] = figures["original"]["median_ms"] / max(figures["distilled"]["median_ms"], 1e-9)
    figures["settings"] = {"runs": runs, "threads": 1, "batch": 1}
    return figures


def run_distill(
    model: str,
    output: str,
    *,
    mode: str,
    target: float,
    step: float = 0.1,
    seed: int = 0,
    init: str = "keep",
    criterion: str = "l1",
    round_to: int | str = "auto",
    bench_runs: int = 50,
    progress: bool = True,
    input_shapes: dict | None = None,
    **distill_kwargs,
) -> dict[str, Any]:
    """Shrink, distil the pruned graph from MODEL (no labels needed), bench both; writes RUNDIR/{pruned.onnx,
    shrink.json, distilled.onnx, distill.jsonl, pipeline.json}. `distill_kwargs` go to
    trainers.distill_loop.distill (data, recipe, epochs, alpha, temperature, hints, ...)."""
    check_run_dir(output, model, DISTILL_FILES)
    round_to = checked_round_to(round_to)
    if init not in ("keep", "reinit"):
        raise UserError(f"--init {init!r}: expected keep or reinit")
    if not isinstance(bench_runs, int) or bench_runs < 1:
        raise UserError(f"--bench-runs {bench_runs}: must be an integer >= 1")
    require_torch()
    _check_train_args({**distill_kwargs, "recipe": distill_kwargs.get("recipe", "distill")})
    from onnxprune.read.io import load_model
    from onnxprune.read.save import save_model
    from trainers.distill_loop import distill
    from trainers.loop import first_input_shape

    started = time.perf_counter()
    source = load_model(model)
    first_input_shape(source, input_shapes)  # a symbolic H/W needs --input-shape
    run = _run_dir(output, model)
    t0 = time.perf_counter()
    pruned, report = _shrink(source, mode, target, seed, step, init, criterion, input_shapes, round_to)
    pruned_path = save_model(pruned, run / "pruned.onnx", model)
    save_json(report, run / "shrink.json", model)
    shrink_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = distill(
        pruned_path,
        model,
        seed=seed,
        shrink_report=report,
        student_init=init,
        output=run / "distilled.onnx",
        log=run / "distill.jsonl",
        progress=progress,
        console=err_console if progress else None,
        input_shapes=input_shapes,
        **{"recipe": "distill", **distill_kwargs},
    )
    distill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    benched = _bench_pair(str(model), result.output_path, bench_runs, input_shapes)
    bench_s = time.perf_counter() - t0
    summary = {k: v for k, v in result.to_dict().items() if k not in ("history", "heldout", "heldout_before")}
    payload = {
        "pipeline": "distill",
        "model": str(model),
        "mode": report["mode"],
        "target": report.get("target"),
        "seed": seed,
        "accuracy": result.accuracy,
        "relative_error_before": result.relative_error_before,
        "relative_error": result.relative_error,
        "agreement_before": result.agreement_before,
        "agreement": result.agreement,
        "complexity": _complexity(report),
        "bench": benched,
        "files": {
            "pruned": str(pruned_path),
            "shrink_report": str(run / "shrink.json"),
            "distilled": result.output_path,
            "log": result.log_path,
        },
        "seconds": {
            "shrink": round(shrink_s, 3),
            "distill": round(distill_s, 3),
            "bench": round(bench_s, 3),
            "total": round(time.perf_counter() - started, 3),
        },
        "distill": summary,
        "shrink": {k: report.get(k) for k in SHRINK_KEYS},
    }
    save_json(payload, run / RESULT_NAME, model)
    payload["result_path"] = str(run / RESULT_NAME)
    return payload
