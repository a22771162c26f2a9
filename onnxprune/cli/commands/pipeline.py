"""`onnxprune pipeline scratch|finetune|distill MODEL --mode M --target T -o RUNDIR`: prune, then train.

* `scratch`: shrink with re-initialised weights, train the small network once.
* `finetune`: train the unpruned network, shrink keeping the largest-L1 channels, fine-tune.
* `distill`: shrink keeping the largest-L1 channels, distil from MODEL on any images (no labels), bench.

The runs themselves are functions in onnxprune.cli.pipelines (`run_scratch`, `run_finetune`,
`run_distill`, re-exported here); this module is the verbs' flags and their printing.
"""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from onnxprune.cli.app import app, console, emit_json, parse_input_shapes
from onnxprune.cli.commands.shrink import far_under_target
from onnxprune.cli.commands.train import distill_kwargs, distill_options, train_options
from onnxprune.cli.pipeline_distill import run_distill  # noqa: F401  (re-exported)
from onnxprune.cli.pipelines import (  # noqa: F401  (re-exported: the Python API of `pipeline`)
    FIGURES,
    INT8_NAME,
    RESULT_NAME,
    check_run_dir,
    run_finetune,
    run_scratch,
)

pipeline_app = typer.Typer(
    no_args_is_help=True,
    help="Prune then train: from scratch, train-prune-fine-tune, or distil from the original (no labels).",
)
app.add_typer(pipeline_app, name="pipeline")


def _print(payload: dict) -> None:
    from onnxprune.report import LiteralTable, nbytes, si

    table = LiteralTable(
        title=f"pipeline {payload['pipeline']}: {payload['model']} ({payload['mode']} target {payload['target']})",
        show_header=True,
    )
    for column in ("figure", "before", "after", "kept"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for figure in FIGURES:
        c = payload["complexity"][figure]
        fmt = nbytes if figure == "memory_bytes" else si
        ratio = f"{100 * c['ratio']:.1f}%" if c["ratio"] is not None else "-"
        table.add_row(figure, fmt(c["before"]), fmt(c["after"]), ratio)
    console.print(table)
    times = LiteralTable(title="accuracy and time", show_header=False)
    times.add_column("", style="bold")
    times.add_column("", justify="right")
    if "baseline_accuracy" in payload:
        times.add_row("baseline accuracy (unpruned)", f"{100 * payload['baseline_accuracy']:.2f}%")
        times.add_row("accuracy right after pruning", f"{100 * payload['pruned_accuracy_before_finetune']:.2f}%")
    if payload.get("pipeline") == "distill":
        times.add_row(
            "held-out relative error vs the original",
            f"{payload['relative_error_before']:.4f} pruned → {payload['relative_error']:.4f} distilled",
        )
        if payload.get("agreement") is not None:
            times.add_row(
                "top-1 agreement with the original",
                f"{100 * (payload['agreement_before'] or 0):.1f}% → {100 * payload['agreement']:.1f}%",
            )
        bench = payload["bench"]
        times.add_row(
            "latency (onnxruntime, 1 thread)",
            f"{bench['original']['median_ms']:.3f} ms → {bench['distilled']['median_ms']:.3f} ms "
            f"({bench['speedup']:.2f}x)",
        )
    if payload.get("accuracy") is not None:
        times.add_row("final test accuracy", f"{100 * payload['accuracy']:.2f}%")
    if payload.get("quantize"):
        q = payload["quantize"]
        times.add_row(
            "int8 model",
            f"{q['output']} ({q['format']}), top-1 equals float on "
            f"{100 * q['top1_agreement']:.1f}% of {q['calibration_images']} calibration images",
        )
    for stage, seconds in payload["seconds"].items():
        times.add_row(f"{stage} time", f"{seconds:.1f} s")
    times.add_row("results", payload["result_path"])
    console.print(times)
    complexity, shrunk = payload["complexity"], payload["shrink"]
    landing = far_under_target(
        shrunk["mode"],
        shrunk["target"],
        shrunk.get("round_to_used"),
        {k: c["before"] for k, c in complexity.items()},
        {k: c["after"] for k, c in complexity.items()},
    )
    if landing:
        console.print(landing, markup=False, highlight=False)


def _train_kwargs(**kwargs) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


_S = train_options()
_ROUND_TO = typer.Option(
    "auto", "--round-to", help="channel counts: auto (kernel multiples) | 1 (exact) | R; as shrink's"
)
_F = train_options()


@pipeline_app.command("scratch")
def scratch_command(
    model: str = typer.Argument(..., help="ONNX model (never modified)"),
    output: str = typer.Option(..., "-o", "--output", help="run folder for models, logs and pipeline.json"),
    mode: str = typer.Option(..., "--mode", help="PA (params), FA (FLOPs) or MA (memory)"),
    target: float = typer.Option(..., "--target", help="fraction of the baseline to keep, 0<T<1"),
    step: float = typer.Option(0.1, "--step", help="fraction of a drawn group's channels removed per step"),
    round_to: str = _ROUND_TO,
    data: str = _S["data"],
    epochs: Optional[int] = _S["epochs"],
    batch_size: Optional[int] = _S["batch_size"],
    optimizer: Optional[str] = _S["optimizer"],
    lr: Optional[float] = _S["lr"],
    schedule: Optional[str] = _S["schedule"],
    weight_decay: Optional[float] = _S["weight_decay"],
    recipe: str = _S["recipe"],
    seed: int = _S["seed"],
    device: str = _S["device"],
    input_shape: Optional[List[str]] = _S["input_shape"],
    limit_train: Optional[int] = _S["limit_train"],
    limit_test: Optional[int] = _S["limit_test"],
    threads: Optional[int] = _S["threads"],
    augment: Optional[bool] = _S["augment"],
    norm: str = _S["norm"],
    guard: bool = _S["guard"],
    quantize: bool = typer.Option(
        False,
        "--quantize",
        help=f"also write RUNDIR/{INT8_NAME}: the trained model "
        "quantized to int8, calibrated on --data's training images",
    ),
    quantize_format: str = typer.Option("qdq", "--quantize-format", help="qdq | qoperator (see `quantize --help`)"),
    quantize_per_channel: bool = typer.Option(False, "--quantize-per-channel", help="one weight scale per channel"),
    calibration_images: Optional[int] = typer.Option(
        None, "--calibration-images", metavar="N", help="calibration images for --quantize (default: quantize's)"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    json_out: bool = typer.Option(False, "--json", help="print pipeline.json on stdout"),
) -> None:
    """Shrink MODEL with fresh weights, then train it from scratch."""
    payload = run_scratch(
        model,
        output,
        mode=mode,
        target=target,
        step=step,
        seed=seed,
        round_to=round_to,
        progress=not quiet,
        input_shapes=parse_input_shapes(input_shape, model),
        quantize=dict(fmt=quantize_format, per_channel=quantize_per_channel, calibration_images=calibration_images)
        if quantize
        else None,
        **_train_kwargs(
            data=data,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            schedule=schedule,
            weight_decay=weight_decay,
            recipe=recipe,
            device=device,
            limit_train=limit_train,
            limit_test=limit_test,
            threads=threads,
            augment=augment,
            norm=norm,
            guard=guard,
        ),
    )
    emit_json(payload) if json_out else _print(payload)


@pipeline_app.command("finetune")
def finetune_command(
    model: str = typer.Argument(..., help="ONNX model (never modified)"),
    output: str = typer.Option(..., "-o", "--output", help="run folder for models, logs and pipeline.json"),
    mode: str = typer.Option(..., "--mode", help="PA (params), FA (FLOPs) or MA (memory)"),
    target: float = typer.Option(..., "--target", help="fraction of the baseline to keep, 0<T<1"),
    finetune_epochs: int = typer.Option(..., "--finetune-epochs", help="epochs of fine-tuning after pruning"),
    finetune_lr: Optional[float] = typer.Option(None, "--finetune-lr", help="default: a tenth of the lr"),
    step: float = typer.Option(0.1, "--step", help="fraction of a drawn group's channels removed per step"),
    round_to: str = _ROUND_TO,
    data: str = _F["data"],
    epochs: Optional[int] = _F["epochs"],
    batch_size: Optional[int] = _F["batch_size"],
    optimizer: Optional[str] = _F["optimizer"],
    lr: Optional[float] = _F["lr"],
    schedule: Optional[str] = _F["schedule"],
    weight_decay: Optional[float] = _F["weight_decay"],
    recipe: str = _F["recipe"],
    seed: int = _F["seed"],
    device: str = _F["device"],
    input_shape: Optional[List[str]] = _F["input_shape"],
    limit_train: Optional[int] = _F["limit_train"],
    limit_test: Optional[int] = _F["limit_test"],
    threads: Optional[int] = _F["threads"],
    augment: Optional[bool] = _F["augment"],
    norm: str = _F["norm"],
    guard: bool = _F["guard"],
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    json_out: bool = typer.Option(False, "--json", help="print pipeline.json on stdout"),
) -> None:
    """Train MODEL, shrink it keeping the largest-L1 channels' weights, then fine-tune."""
    payload = run_finetune(
        model,
        output,
        mode=mode,
        target=target,
        finetune_epochs=finetune_epochs,
        finetune_lr=finetune_lr,
        step=step,
        seed=seed,
        round_to=round_to,
        progress=not quiet,
        input_shapes=parse_input_shapes(input_shape, model),
        **_train_kwargs(
            data=data,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            schedule=schedule,
            weight_decay=weight_decay,
            recipe=recipe,
            device=device,
            limit_train=limit_train,
            limit_test=limit_test,
            threads=threads,
            augment=augment,
            norm=norm,
            guard=guard,
        ),
    )
    emit_json(payload) if json_out else _print(payload)


_T = train_options()
_DD = distill_options()


@pipeline_app.command("distill")
def distill_command(
    model: str = typer.Argument(..., help="ONNX model: pruned, then the teacher (never modified)"),
    output: str = typer.Option(..., "-o", "--output", help="run folder for models, logs and pipeline.json"),
    mode: str = typer.Option(..., "--mode", help="PA (params), FA (FLOPs) or MA (memory)"),
    target: float = typer.Option(..., "--target", help="fraction of the baseline to keep, 0<T<1"),
    step: float = typer.Option(0.1, "--step", help="fraction of a drawn group's channels removed per step"),
    round_to: str = _ROUND_TO,
    init: str = typer.Option("keep", "--init", help="keep (the original's weights, recovery) | reinit (from scratch)"),
    criterion: str = typer.Option("l1", "--criterion", help="l1 (largest-L1 channels kept) | random"),
    bench_runs: int = typer.Option(50, "--bench-runs", help="timed onnxruntime runs per model (1 thread, batch 1)"),
    data: str = _T["data"],
    epochs: Optional[int] = _T["epochs"],
    batch_size: Optional[int] = _T["batch_size"],
    optimizer: Optional[str] = _T["optimizer"],
    lr: Optional[float] = _T["lr"],
    schedule: Optional[str] = _T["schedule"],
    weight_decay: Optional[float] = _T["weight_decay"],
    recipe: Optional[str] = _T["recipe"],
    seed: int = _T["seed"],
    device: str = _T["device"],
    input_shape: Optional[List[str]] = _T["input_shape"],
    limit_train: Optional[int] = _T["limit_train"],
    limit_test: Optional[int] = _T["limit_test"],
    threads: Optional[int] = _T["threads"],
    augment: Optional[bool] = _T["augment"],
    norm: str = _T["norm"],
    guard: bool = _T["guard"],
    alpha: Optional[float] = _DD["alpha"],
    temperature: Optional[float] = _DD["temperature"],
    hints: Optional[str] = _DD["hints"],
    hint_weight: Optional[float] = _DD["hint_weight"],
    recalibrate: Optional[bool] = _DD["recalibrate"],
    output_loss: Optional[List[str]] = _DD["output_loss"],
    teacher_runtime: Optional[str] = _DD["teacher_runtime"],
    mean: Optional[str] = _DD["mean"],
    std: Optional[str] = _DD["std"],
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    json_out: bool = typer.Option(False, "--json", help="print pipeline.json on stdout"),
) -> None:
    """Shrink MODEL, distil the pruned graph from MODEL itself on --data's images (no labels), bench both."""
    payload = run_distill(
        model,
        output,
        mode=mode,
        target=target,
        step=step,
        seed=seed,
        round_to=round_to,
        init=init,
        criterion=criterion,
        bench_runs=bench_runs,
        progress=not quiet,
        input_shapes=parse_input_shapes(input_shape, model),
        **_train_kwargs(
            data=data,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            schedule=schedule,
            weight_decay=weight_decay,
            recipe=recipe,
            device=device,
            limit_train=limit_train,
            limit_test=limit_test,
            threads=threads,
            augment=augment,
            norm=norm,
            guard=guard,
        ),
        **distill_kwargs(
            model,
            alpha=alpha,
            temperature=temperature,
            hints=hints,
            hint_weight=hint_weight,
            recalibrate=recalibrate,
            output_loss=output_loss,
            teacher_runtime=teacher_runtime,
            mean=mean,
            std=std,
        ),
    )
    emit_json(payload) if json_out else _print(payload)
