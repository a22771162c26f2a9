"""One sweep run, self-contained so any executor (this process, a Ray worker) can run it.

`run_one(spec) -> row`: shrink (init="reinit") or re-initialise -> train -> bench the trained model
(onnxruntime CPU, 1 thread, batch 1). With a teacher (`sweep --teacher`): shrink (reinit, or keep with
the l1 criterion) -> distil from the teacher (trainers.distill_loop) -> bench. Files go into spec["run_dir"]; result.json is written by the
caller (the sweep, on the driver), so a run counts as finished only once the driver has its row.
`spec` holds plain values only (paths as strings), so it pickles to another machine.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

__all__ = ["run_one", "machine"]

# decoded data sets kept per process: the local executor and each long-lived Ray worker decode once
_DATASETS: dict[str, Any] = {}


def machine() -> dict[str, Any]:
    """Where this process runs: the host name and, inside a Ray worker, its node id."""
    node_id = None
    try:
        import ray

        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return {"hostname": socket.gethostname(), "node_id": node_id, "pid": os.getpid()}


def _dataset(data: str, config: dict):
    from trainers.evaluate import _load_data

    key = json.dumps([data, config], sort_keys=True, default=str)
    if key not in _DATASETS:
        _DATASETS.clear()  # one data set per process is enough; a sweep uses one
        _DATASETS[key] = _load_data(data, config, None)
    return _DATASETS[key]


def _score(result) -> tuple[float, str]:
    """The figure a run is plotted by: test accuracy; in a distillation without labels, top-1 agreement
    with the teacher, or, with no class output either, 1 - the held-out relative error."""
    if result.accuracy is not None:
        return result.accuracy, "test accuracy"
    if getattr(result, "agreement", None) is not None:
        return result.agreement, "top-1 agreement with the teacher"
    return max(0.0, 1.0 - result.relative_error), "1 - relative error vs the teacher"


def run_one(spec: dict, console=None) -> dict:
    """`console`: print each epoch of the training there (local runs only)."""
    import trainers  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
    from onnxprune.measure.bench import bench
    from onnxprune.read.io import load_model
    from onnxprune.read.save import save_model
    from trainers.loop import train

    started = time.perf_counter()
    mode, target, seed = spec["mode"], spec["target"], spec["seed"]
    model_path = Path(spec["model"])
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    source = load_model(model_path)
    # fixed symbolic input dims ({"NAME": [1, 3, H, W]}, --input-shape): only passed when given
    shaped = {"input_shapes": spec["input_shapes"]} if spec.get("input_shapes") else {}
    init = spec.get("init", "reinit")  # keep: the original's weights (a distillation sweep's recovery runs)
    if mode is None:
        import numpy as np

        from onnxprune.prune.initialize import reinitialize

        if init == "reinit":
            reinitialize(source, np.random.default_rng(seed))
        start_path = save_model(source, run_dir / "unpruned.onnx", model_path)
        report = None
    else:
        from onnxprune import shrink

        criterion = "l1" if init == "keep" else "random"
        pruned, report = shrink(
            source, mode=mode, target=target, seed=seed, step=spec["step"], init=init, criterion=criterion, **shaped
        )
        start_path = save_model(pruned, run_dir / "pruned.onnx", model_path)
    train_kwargs = {k: v for k, v in spec["train_kwargs"].items() if v is not None}
    common = dict(
        recipe=spec["recipe"],
        seed=seed,
        output=run_dir / "trained.onnx",
        progress=console is not None,
        console=console,
        **shaped,
        **train_kwargs,
    )
    if spec.get("teacher"):
        from trainers.distill_loop import distill

        common.pop("keep_bn", None)
        result = distill(
            start_path,
            spec["teacher"],
            spec["data"],
            student_init=init,
            shrink_report=report,
            **spec["distill"],
            **common,
        )
    else:
        result = train(start_path, _dataset(spec["data"], spec["config"]), **common)
    accuracy, metric = _score(result)
    bench_runs = spec["bench_runs"]
    measured = bench(
        run_dir / "trained.onnx", runs=bench_runs, warmup=min(10, bench_runs), threads=1, batch=1, **shaped
    )
    return {
        "name": spec["name"],
        "mode": mode,
        "target": target,
        "accuracy": accuracy,
        "metric": metric,
        "relative_error": getattr(result, "relative_error", None),
        "params": measured.params,
        "flops": measured.flops,
        "memory_bytes": measured.memory_bytes,
        "latency_ms": measured.median_ms,
        "energy_uj_per_image": measured.energy_uj_per_image,
        "train_wall_seconds": result.wall_seconds,
        "train_seconds": result.train_seconds,
        "images_per_s": result.images_per_s,
        "run_seconds": time.perf_counter() - started,
        "latency": measured.latency_ms,
        "throughput_ips": measured.throughput_ips,
        "shrink": None
        if report is None
        else {"before": report.get("before"), "after": report.get("after"), "iterations": report.get("iterations")},
        "files": {"start": start_path.name, "trained": "trained.onnx"},
        "norm": result.norm,
        "verdict": result.verdict,
        "machine": machine(),  # latency is only comparable between runs benched on the same machine
        "settings": spec["settings"],
    }
