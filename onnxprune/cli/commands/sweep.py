"""`onnxprune sweep MODEL --modes PA,FA,MA --targets 0.8,0.6,0.4,0.2 -o RUNDIR`: measured trade-offs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from onnxprune.cli.app import app, console, emit_json, err_console, input_shape_option, parse_input_shapes, seed_option
from onnxprune.cli.commands.train import distill_kwargs, distill_options
from onnxprune.errors import UserError
from onnxprune.read.save import check_outputs_writable
from onnxprune.report import LiteralTable, literal, nbytes, si

_D = distill_options()


@app.command("sweep")
def sweep_command(
    model: str = typer.Argument(..., metavar="MODEL", show_default=False, help="ONNX model file (never modified)"),
    output: str = typer.Option(..., "-o", "--output", help="run folder (created; an existing one is resumed)"),
    modes: str = typer.Option("PA,FA,MA", "--modes", help="comma-separated: PA, FA, MA, LA"),
    targets: str = typer.Option("0.8,0.6,0.4,0.2", "--targets", help="comma-separated fractions to keep, 0<t<1"),
    data: str = typer.Option("cifar10", "--data", help="cifar10 | cifar10=PATH | cifar100=PATH | folder=PATH"),
    recipe: Optional[str] = typer.Option(
        None, "--recipe", help="paper | cpu (default) | distill (default with --teacher; see `onnxprune train --help`)"
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="epochs (default: the recipe's)"),
    limit_train: Optional[int] = typer.Option(None, "--limit-train", help="train on the first N images; 0: all"),
    limit_test: Optional[int] = typer.Option(None, "--limit-test", help="test on the first N images; 0: all"),
    seed: int = seed_option("Seed for pruning, initialisation and training."),
    input_shape: Optional[List[str]] = input_shape_option(),
    bench_runs: int = typer.Option(50, "--bench-runs", help="timed inference runs per model (1 thread, batch 1)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="training CPU threads (default: all cores)"),
    device: str = typer.Option(
        "auto", "--device", help="training device: auto | cpu | cuda (benching is always onnxruntime on the CPU)"
    ),
    norm: str = typer.Option("auto", "--norm", help="auto | insert | none (see `onnxprune train --help`)"),
    guard: bool = typer.Option(True, "--guard/--no-guard", help="stop when a run does not learn (see `train`)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    train_progress: bool = typer.Option(False, "--train-progress", help="also print each training's epoch lines"),
    json_out: bool = typer.Option(False, "--json", help="print all results as JSON on stdout"),
    executor: str = typer.Option(
        "local",
        "--executor",
        help="local (one run after another here) | ray (each run a Ray task; see docs/cluster.md)",
    ),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray cluster to join (default: start a local Ray on loopback, stopped at the end)"
    ),
    gpus_per_run: float = typer.Option(0, "--gpus-per-run", help="GPUs each Ray run reserves"),
    cpus_per_run: float = typer.Option(1, "--cpus-per-run", help="CPUs each Ray run reserves"),
    teacher: Optional[str] = typer.Option(
        None,
        "--teacher",
        help="distil every run from this model (usually MODEL itself, trained) instead of training on labels; "
        "--data images=PATH then works too",
    ),
    init: str = typer.Option(
        "reinit",
        "--init",
        help="reinit (from scratch, the paper's) | keep (with --teacher: recover from MODEL's weights)",
    ),
    alpha: Optional[float] = _D["alpha"],
    temperature: Optional[float] = _D["temperature"],
    hints: Optional[str] = _D["hints"],
    hint_weight: Optional[float] = _D["hint_weight"],
    recalibrate: Optional[bool] = _D["recalibrate"],
    output_loss: Optional[List[str]] = _D["output_loss"],
    teacher_runtime: Optional[str] = _D["teacher_runtime"],
    mean: Optional[str] = _D["mean"],
    std: Optional[str] = _D["std"],
) -> None:
    """Shrink MODEL at every mode x target, train each from scratch, bench it, and plot the trade-offs.

    The unpruned model, re-initialised and trained with the same settings, is the baseline point. Each run gets a folder, RUNDIR/<MODE>-<target>/ (RUNDIR/baseline/ for the baseline), with pruned.onnx (unpruned.onnx), trained.onnx and result.json; latency and energy are measured on trained.onnx with onnxruntime, 1 thread, batch 1 (energy is an estimate from FLOPs and memory).

    A run with a result.json is skipped: re-running the same command resumes an interrupted sweep. Other settings in the same RUNDIR are refused. A run that fails is reported with its error and the others go on (exit 1 at the end).

    --teacher ORIGINAL.onnx distils every run from ORIGINAL instead (see `train --teacher`); without labels the plots show top-1 agreement with the teacher.

    --executor ray runs each run as a Ray task, on a private local Ray (loopback only) or on the cluster at --address; see docs/cluster.md.

    After every run: RUNDIR/results.csv, RUNDIR/results.json, and PNG plots of test accuracy against params, FLOPs, memory, latency and energy, one curve per mode plus the unpruned point: RUNDIR/tradeoffs.png (all five panels) and RUNDIR/accuracy_vs_{params,flops,memory,latency,energy}.png.
    """
    from onnxprune.sweep.grid import parse_modes, parse_targets, sweep

    mode_list, target_list = parse_modes(modes), parse_targets(targets)  # fail before anything loads
    run_dir = Path(output)
    # the run folder (or, while it does not exist, the folder it goes in) must be writable before any work
    check_outputs_writable({"-o": run_dir / "results.json" if run_dir.is_dir() else run_dir}, model)
    shapes = parse_input_shapes(input_shape, model)
    distill = distill_kwargs(
        teacher,
        alpha=alpha,
        temperature=temperature,
        hints=hints,
        hint_weight=hint_weight,
        recalibrate=recalibrate,
        output_loss=output_loss,
        teacher_runtime=teacher_runtime,
        mean=mean,
        std=std,
    )
    from onnxprune.sweep.executors import RunsFailed, make_executor

    if executor == "ray" and device == "cuda" and not gpus_per_run:
        raise UserError(
            "--device cuda with --executor ray: give --gpus-per-run (e.g. 1), so that Ray reserves a GPU for each run"
        )

    runner = make_executor(
        executor,
        address=address,
        cpus_per_run=cpus_per_run,
        gpus_per_run=gpus_per_run,
        console=err_console if train_progress and not quiet else None,
    )
    try:
        rows = sweep(
            model,
            mode_list,
            target_list,
            data,
            output,
            recipe=recipe or ("distill" if teacher is not None else "cpu"),
            seed=seed,
            bench_runs=bench_runs,
            progress=not quiet,
            train_progress=train_progress and not quiet,
            console=err_console,
            epochs=epochs,
            limit_train=limit_train,
            limit_test=limit_test,
            threads=threads,
            device=device,
            norm=norm,
            guard=guard,
            executor=runner,
            input_shapes=shapes,
            teacher=teacher,
            init=init,
            distill=distill,
        )
    except RunsFailed as exc:
        if json_out:
            emit_json({"output": output, "runs": exc.rows, "failed": [{"name": n, "error": e} for n, e in exc.failed]})
        raise
    if json_out:
        emit_json({"output": output, "runs": rows})
        return
    table = LiteralTable(title=f"sweep of {model} → {output}")
    metric = next((r.get("metric") for r in rows if r.get("metric")), "accuracy")
    for column in ("run", metric, "params", "FLOPs", "memory", "latency ms", "energy µJ", "train s"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        energy = row.get("energy_uj_per_image")
        table.add_row(
            row["name"],
            f"{100 * row['accuracy']:.1f}%",
            si(row["params"]) if row["params"] else "-",
            si(row["flops"]) if row["flops"] else "-",
            nbytes(row["memory_bytes"]) if row["memory_bytes"] else "-",
            f"{row['latency_ms']:.3f}",
            f"{energy:.2f}" if energy is not None else "-",
            f"{row['train_wall_seconds']:.1f}",
        )
    console.print(table)
    console.print(
        literal(
            f"results: {output}/results.csv, {output}/results.json; plots: {output}/tradeoffs.png, "
            f"{output}/accuracy_vs_*.png"
        )
    )
