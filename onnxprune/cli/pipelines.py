"""The pipelines behind `onnxprune pipeline`, as functions (no CLI here): prune, then train.

* `run_scratch`: shrink with re-initialised weights (`init="reinit"`), train the small network once.
* `run_finetune`: train the unpruned network, shrink it keeping the trained weights of the channels
  with the largest L1 norms (`criterion="l1", init="keep"`), then fine-tune it.
* `run_distill`: shrink (by default `init="keep", criterion="l1"`), distil the pruned graph from the
  original (trainers.distill_loop: no labels needed), bench both with onnxruntime.

Every run writes its models, per-epoch logs and one `pipeline.json` into RUNDIR: test accuracy (or,
for `distill`, the held-out error against the original), params / FLOPs / memory before and after,
and the wall time of every stage and in total. Each returns that dict.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from onnxprune.cli.app import err_console
from onnxprune.cli.commands.train import require_torch
from onnxprune.errors import UserError
from onnxprune.read.save import check_outputs_writable, save_json

RESULT_NAME = "pipeline.json"
INT8_NAME = "trained.int8.onnx"
FIGURES = ("params", "flops", "memory_bytes")


def check_run_dir(output: str | os.PathLike, model: str | os.PathLike, names: tuple[str, ...] = (RESULT_NAME,)) -> Path:
    """Refuse a run folder that cannot be written (a file, `-`, the input, a missing or read-only
    parent, a read-only existing folder) before any work, creating nothing."""
    out = Path(output)
    if str(output) != "-" and out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: is a file; give a folder for the run's outputs")
    if Path(model).exists() and Path(model).resolve() == out.resolve():
        raise UserError(f"-o {out}: is the input model")
    # an existing folder must take the run's files; a new one must be creatable in its parent
    check_outputs_writable([("-o", out / name) for name in names] if out.is_dir() else [("-o", out)], model)
    return out


def _run_dir(output: str | os.PathLike, model: str | os.PathLike) -> Path:
    out = check_run_dir(output, model)
    out.mkdir(exist_ok=True)
    return out


def checked_round_to(value: int | str) -> int | str:
    """--round-to parsed before any work, so a bad value fails first (imported here: the CLI's start-up
    loads this module, and the pruning package pulls in onnx)."""
    from onnxprune.prune.rounding import parse_round_to

    return parse_round_to(value)


# What pipeline.json keeps of the shrink report: the settings, and the rounding actually used.
SHRINK_KEYS = ("mode", "target", "seed", "step", "init", "criterion", "round_to", "round_to_used", "iterations")


def _shrink(
    model,
    mode: str,
    target: float,
    seed: int,
    step: float,
    init: str,
    criterion: str,
    input_shapes: dict | None = None,
    round_to: int | str = "auto",
):
    try:
        from onnxprune import shrink
    except ImportError:  # pragma: no cover - the lead's API is part of the package
        raise UserError("this onnxprune has no shrink(); update it") from None
    mode = mode.upper()
    if mode not in ("PA", "FA", "MA"):
        raise UserError(f"--mode {mode!r}: choose PA (params), FA (FLOPs) or MA (memory)")
    if not 0.0 < float(target) < 1.0:
        raise UserError(f"--target {target}: a fraction of the baseline to keep, 0 < T < 1")
    return shrink(
        model,
        mode=mode,
        target=float(target),
        seed=seed,
        step=step,
        init=init,
        criterion=criterion,
        input_shapes=input_shapes,
        round_to=round_to,
    )


def _complexity(report: dict) -> dict[str, Any]:
    out = {}
    for figure in FIGURES:
        before, after = report["before"].get(figure), report["after"].get(figure)
        out[figure] = {"before": before, "after": after, "ratio": (after / before) if before else None}
    return out


def _train_summary(result) -> dict[str, Any]:
    keep = (
        "accuracy",
        "test_loss",
        "train_loss",
        "train_accuracy",
        "epochs",
        "wall_seconds",
        "train_seconds",
        "images_per_s",
        "log_path",
        "output_path",
        "device",
        "onnx_agreement",
        "params",
        "config",
        "norm",
        "verdict",
        "export",
    )
    return {k: getattr(result, k) for k in keep}


def _check_train_args(train_kwargs: dict) -> None:
    """Bad flags or a missing dataset fail before any stage runs."""
    from trainers.data import parse_data_spec
    from trainers.loop import resolve_config

    data = train_kwargs.get("data", "cifar10")
    if isinstance(data, str):
        parse_data_spec(data)
    keys = ("epochs", "batch_size", "optimizer", "lr", "schedule", "weight_decay", "limit_train", "limit_test")
    resolve_config(train_kwargs.get("recipe", "cpu"), **{k: train_kwargs.get(k) for k in keys})
    from trainers.convert.norms import NORM_MODES

    if train_kwargs.get("norm", "auto") not in NORM_MODES:
        raise UserError(f"--norm {train_kwargs['norm']!r}: expected one of {', '.join(NORM_MODES)}")


def _check_quantize(quantize: dict | None, train_kwargs: dict) -> None:
    """`--quantize` settings are refused before any stage runs, not after the training."""
    if quantize is None:
        return
    from onnxprune.measure.quantize import FORMATS, MIN_CALIBRATION_IMAGES

    if quantize.get("fmt", "qdq") not in FORMATS:
        raise UserError(f"--quantize-format {quantize['fmt']!r}: expected one of {', '.join(FORMATS)}")
    count = quantize.get("calibration_images")
    if count is not None and count < MIN_CALIBRATION_IMAGES:
        raise UserError(
            f"--calibration-images {count}: at least {MIN_CALIBRATION_IMAGES} images are needed for "
            f"meaningful activation ranges"
        )
    if not isinstance(train_kwargs.get("data", "cifar10"), str):
        raise UserError("--quantize calibrates on the --data images: give data as a spec (e.g. cifar10=PATH)")


def _quantize(trained_path: str, run: Path, quantize: dict, data: str, input_shapes: dict | None) -> dict:
    from onnxprune.cli.commands.quantize import quantize_file

    options = {k: v for k, v in quantize.items() if v is not None}
    summary, _ = quantize_file(
        str(trained_path), str(run / INT8_NAME), calibrate=data, input_shapes=input_shapes, **options
    )
    return summary


def run_scratch(
    model: str,
    output: str,
    *,
    mode: str,
    target: float,
    step: float = 0.1,
    seed: int = 0,
    round_to: int | str = "auto",
    progress: bool = True,
    input_shapes: dict | None = None,
    quantize: dict | None = None,
    **train_kwargs,
) -> dict[str, Any]:
    """Shrink (reinit) then train once; writes RUNDIR/{pruned.onnx, trained.onnx, train.jsonl, pipeline.json}.
    `input_shapes` ({"NAME": [1, 3, H, W]}) fixes symbolic input dimensions for both stages. `quantize`
    ({"fmt": "qdq", "per_channel": False, "calibration_images": N}) adds RUNDIR/trained.int8.onnx,
    calibrated on the training images of `data`."""
    check_run_dir(output, model, (RESULT_NAME, INT8_NAME) if quantize is not None else (RESULT_NAME,))
    round_to = checked_round_to(round_to)
    _check_quantize(quantize, train_kwargs)
    require_torch()
    _check_train_args(train_kwargs)
    from onnxprune.read.io import load_model
    from onnxprune.read.save import save_model
    from trainers.loop import first_input_shape, train

    started = time.perf_counter()
    source = load_model(model)  # fail on a bad input before creating anything
    first_input_shape(source, input_shapes)  # a symbolic H/W needs --input-shape
    run = _run_dir(output, model)
    t0 = time.perf_counter()
    pruned, report = _shrink(source, mode, target, seed, step, "reinit", "random", input_shapes, round_to)
    pruned_path = save_model(pruned, run / "pruned.onnx", model)
    shrink_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = train(
        pruned_path,
        seed=seed,
        output=run / "trained.onnx",
        log=run / "train.jsonl",
        progress=progress,
        console=err_console if progress else None,
        input_shapes=input_shapes,
        **train_kwargs,
    )
    train_s = time.perf_counter() - t0
    quantized, quantize_s = None, None
    if quantize is not None:
        t0 = time.perf_counter()
        quantized = _quantize(result.output_path, run, quantize, train_kwargs.get("data", "cifar10"), input_shapes)
        quantize_s = round(time.perf_counter() - t0, 3)
    payload = {
        "pipeline": "scratch",
        "model": str(model),
        "mode": report["mode"],
        "target": report.get("target"),
        "seed": seed,
        "accuracy": result.accuracy,
        "complexity": _complexity(report),
        "files": {"pruned": str(pruned_path), "trained": result.output_path, "log": result.log_path},
        "seconds": {
            "shrink": round(shrink_s, 3),
            "train": round(train_s, 3),
            "total": round(time.perf_counter() - started, 3),
        },
        "train": _train_summary(result),
        "shrink": {k: report.get(k) for k in SHRINK_KEYS},
    }
    if quantized is not None:
        payload["files"]["int8"] = quantized["output"]
        payload["quantize"] = quantized
        payload["seconds"] = {**payload["seconds"], "quantize": quantize_s}
        payload["seconds"]["total"] = round(time.perf_counter() - started, 3)
    save_json(payload, run / RESULT_NAME, model)
    payload["result_path"] = str(run / RESULT_NAME)
    return payload


def run_finetune(
    model: str,
    output: str,
    *,
    mode: str,
    target: float,
    finetune_epochs: int,
    finetune_lr: float | None = None,
    step: float = 0.1,
    seed: int = 0,
    round_to: int | str = "auto",
    progress: bool = True,
    input_shapes: dict | None = None,
    **train_kwargs,
) -> dict[str, Any]:
    """Train the unpruned model, shrink (l1, keep), fine-tune; writes RUNDIR/{baseline,pruned,finetuned}.onnx."""
    check_run_dir(output, model)
    round_to = checked_round_to(round_to)
    require_torch()
    from onnxprune.read.io import load_model
    from onnxprune.read.save import save_model
    from trainers.loop import evaluate_model, first_input_shape, resolve_config, train

    if finetune_epochs is None or int(finetune_epochs) < 1:
        raise UserError(f"--finetune-epochs {finetune_epochs}: must be at least 1")
    _check_train_args(train_kwargs)
    started = time.perf_counter()
    first_input_shape(load_model(model), input_shapes)  # fail on a bad input before creating anything
    run = _run_dir(output, model)
    console_ = err_console if progress else None
    t0 = time.perf_counter()
    if progress:
        err_console.print("[bold]stage 1/3: train the unpruned model")
    # BN is kept in the baseline so that the pruned network fine-tunes with BatchNorm, as trained
    base = train(
        model,
        seed=seed,
        output=run / "baseline.onnx",
        log=run / "baseline.train.jsonl",
        keep_bn=True,
        progress=progress,
        console=console_,
        input_shapes=input_shapes,
        **train_kwargs,
    )
    base_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pruned, report = _shrink(base.output_path, mode, target, seed, step, "keep", "l1", input_shapes, round_to)
    pruned_path = save_model(pruned, run / "pruned.onnx", model)
    shrink_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    eval_keys = ("recipe", "limit_train", "limit_test", "device", "threads")
    after_prune = evaluate_model(
        pruned_path,
        train_kwargs.get("data", "cifar10"),
        input_shapes=input_shapes,
        **{k: train_kwargs[k] for k in eval_keys if k in train_kwargs},
    )
    eval_s = time.perf_counter() - t0
    config = resolve_config(train_kwargs.get("recipe", "cpu"), lr=train_kwargs.get("lr"))
    tune_kwargs = dict(train_kwargs)
    tune_kwargs["epochs"] = int(finetune_epochs)
    tune_kwargs["lr"] = finetune_lr if finetune_lr is not None else config["lr"] / 10.0
    t0 = time.perf_counter()
    if progress:
        err_console.print(f"[bold]stage 3/3: fine-tune the pruned model (lr {tune_kwargs['lr']:g})")
    tuned = train(
        pruned_path,
        seed=seed,
        output=run / "finetuned.onnx",
        log=run / "finetune.jsonl",
        progress=progress,
        console=console_,
        input_shapes=input_shapes,
        **tune_kwargs,
    )
    tune_s = time.perf_counter() - t0
    payload = {
        "pipeline": "finetune",
        "model": str(model),
        "mode": report["mode"],
        "target": report.get("target"),
        "seed": seed,
        "accuracy": tuned.accuracy,
        "baseline_accuracy": base.accuracy,
        "pruned_accuracy_before_finetune": after_prune["accuracy"],
        "complexity": _complexity(report),
        "files": {
            "baseline": base.output_path,
            "pruned": str(pruned_path),
            "finetuned": tuned.output_path,
            "baseline_log": base.log_path,
            "finetune_log": tuned.log_path,
        },
        "seconds": {
            "train_baseline": round(base_s, 3),
            "shrink": round(shrink_s, 3),
            "evaluate_pruned": round(eval_s, 3),
            "finetune": round(tune_s, 3),
            "total": round(time.perf_counter() - started, 3),
        },
        "baseline": _train_summary(base),
        "finetune": _train_summary(tuned),
        "shrink": {k: report.get(k) for k in SHRINK_KEYS},
    }
    save_json(payload, run / RESULT_NAME, model)
    payload["result_path"] = str(run / RESULT_NAME)
    return payload
