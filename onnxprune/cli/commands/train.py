"""`onnxprune train MODEL.onnx --data cifar10 -o TRAINED.onnx`: train a (pruned) ONNX model.

torch is imported only when the verb runs: the core CLI works without the `train` extra.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, List, Optional

import typer

from onnxprune.cli.app import app, console, emit_json, err_console, input_shape_option, parse_input_shapes, seed_option
from onnxprune.errors import UserError
from onnxprune.read.io import check_outputs_writable


def require_torch() -> None:
    """Import the trainer (and torch) or explain how to get them."""
    try:
        import torch  # noqa: F401

        import trainers  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
    except ImportError:
        raise UserError(
            "training needs PyTorch, which is not installed: install onnxprune[train] (pip install 'onnxprune[train]')"
        ) from None


def train_options() -> dict[str, Any]:
    """The typer options shared by `train` and `pipeline` (one place for names and help)."""
    return dict(
        data=typer.Option("cifar10", "--data", help="cifar10 | cifar10=PATH | cifar100=PATH | folder=PATH"),
        epochs=typer.Option(None, "--epochs", help="epochs (default: the recipe's)"),
        batch_size=typer.Option(None, "--batch-size", help="batch size (default: the recipe's)"),
        optimizer=typer.Option(None, "--optimizer", help="sgd | rmsprop | adam (default: the recipe's)"),
        lr=typer.Option(None, "--lr", help="(peak) learning rate (default: the recipe's)"),
        schedule=typer.Option(None, "--schedule", help="cosine | onecycle | none (default: the recipe's)"),
        weight_decay=typer.Option(None, "--weight-decay", help="weight decay (default: the recipe's)"),
        recipe=typer.Option(
            "cpu",
            "--recipe",
            help="paper (RMSprop 1e-3, batch 128, 150 epochs) | cpu (short SGD one-cycle run for a 2-core CPU)",
        ),
        seed=seed_option("Random seed (weights order, shuffling, augmentation), a non-negative integer."),
        input_shape=input_shape_option(),
        device=typer.Option("auto", "--device", help="auto | cpu | cuda"),
        limit_train=typer.Option(None, "--limit-train", help="train on the first N (class-balanced) images; 0: all"),
        limit_test=typer.Option(None, "--limit-test", help="test on the first N images; 0: all"),
        threads=typer.Option(None, "--threads", help="CPU threads (default: the cores available)"),
        augment=typer.Option(True, "--augment/--no-augment", help="random crop + flip while training"),
        norm=typer.Option(
            "auto",
            "--norm",
            help="auto | insert | none: insert a trainable BatchNorm after each "
            "conv/linear layer without normalisation (auto: when the graph has "
            "none, e.g. BN folded at export), folded back at export",
        ),
        guard=typer.Option(
            True,
            "--guard/--no-guard",
            help="stop (exit 2, nothing written) when the first epoch "
            "leaves the loss at ln(classes), i.e. nothing learned",
        ),
    )


_O = train_options()


@app.command("train")
def train_command(
    model: str = typer.Argument(..., help="ONNX model to train (never modified)"),
    output: str = typer.Option(..., "-o", "--output", help="where to write the trained ONNX model"),
    data: str = _O["data"],
    epochs: Optional[int] = _O["epochs"],
    batch_size: Optional[int] = _O["batch_size"],
    optimizer: Optional[str] = _O["optimizer"],
    lr: Optional[float] = _O["lr"],
    schedule: Optional[str] = _O["schedule"],
    weight_decay: Optional[float] = _O["weight_decay"],
    recipe: str = _O["recipe"],
    seed: int = _O["seed"],
    input_shape: Optional[List[str]] = _O["input_shape"],
    device: str = _O["device"],
    limit_train: Optional[int] = _O["limit_train"],
    limit_test: Optional[int] = _O["limit_test"],
    threads: Optional[int] = _O["threads"],
    augment: bool = _O["augment"],
    norm: str = _O["norm"],
    guard: bool = _O["guard"],
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="save a checkpoint here after every epoch"),
    resume: bool = typer.Option(False, "--resume", help="continue from --checkpoint DIR's last checkpoint"),
    log: Optional[str] = typer.Option(
        None, "--log", help="JSONL log, one line per epoch (default: OUTPUT with .train.jsonl)"
    ),
    keep_bn: bool = typer.Option(
        False,
        "--keep-bn",
        help="keep the graph's own BatchNormalization nodes in the "
        "output (default: folded into the convolutions; a graph "
        "without BN keeps its exact structure either way)",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON on stdout"),
) -> None:
    """Train MODEL on a dataset (PyTorch) and write the trained network as ONNX."""
    # every output location is checked before torch loads or any image is decoded
    check_outputs_writable({"-o": output, "--log": log or Path(output).with_suffix(".train.jsonl")}, model)
    shapes = parse_input_shapes(input_shape, model)
    require_torch()
    from trainers.loop import train

    with verdict_on_stdout(json_out):
        result = train(
            model,
            data,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            schedule=schedule,
            weight_decay=weight_decay,
            recipe=recipe,
            seed=seed,
            device=device,
            limit_train=limit_train,
            limit_test=limit_test,
            checkpoint=checkpoint,
            resume=resume,
            log=log,
            output=output,
            progress=not quiet,
            threads=threads,
            keep_bn=keep_bn,
            augment=augment,
            console=err_console,
            norm=norm,
            guard=guard,
            input_shapes=shapes,
        )
    if json_out:
        emit_json(result.to_dict())
        return
    print_summary(model, result)


@contextmanager
def verdict_on_stdout(json_out: bool):
    """A run the guard stopped still prints its verdict with --json; the error line and exit 2 follow."""
    from trainers.guard import DidNotLearn

    try:
        yield
    except DidNotLearn as exc:
        if json_out:
            emit_json({"verdict": exc.verdict})
        raise


def print_summary(model: str, result, title: str | None = None) -> None:
    from onnxprune.report import LiteralTable

    table = LiteralTable(title=title or f"{model} → {result.output_path}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    cfg = result.config
    limits = ", ".join(f"{k.split('_')[1]} {cfg[k]}" for k in ("limit_train", "limit_test") if cfg.get(k))
    table.add_row("data", f"{cfg.get('data')}" + (f" ({limits} images)" if limits else ""))
    table.add_row(
        "recipe",
        f"{cfg.get('recipe')}: {cfg.get('optimizer')} lr {cfg.get('lr')} {cfg.get('schedule')}, "
        f"batch {cfg.get('batch_size')}, {cfg.get('epochs')} epochs, seed {cfg.get('seed')}",
    )
    table.add_row("test accuracy", f"{100 * result.accuracy:.2f}%")
    if result.train_accuracy == result.train_accuracy:  # not NaN
        table.add_row(
            "train accuracy", f"{100 * result.train_accuracy:.2f}%" + (" (augmented)" if cfg.get("augment") else "")
        )
    table.add_row("parameters", f"{result.params:,}")
    table.add_row("throughput", f"{result.images_per_s:.0f} images/s on {result.device}")
    table.add_row("time", f"{result.wall_seconds:.1f} s in total, {result.train_seconds:.1f} s training")
    if result.onnx_agreement is not None:
        table.add_row(
            "ONNX check", f"onnxruntime agrees with torch on {100 * result.onnx_agreement:.1f}% of test images"
        )
    inserted = (getattr(result, "norm", None) or {}).get("inserted") or []
    if inserted:
        table.add_row(
            "normalisation", f"BatchNorm inserted after {len(inserted)} layers for training, folded at export"
        )
    if getattr(result, "verdict", None):
        table.add_row("verdict", result.verdict.get("status", ""))
    if getattr(result, "export", None):
        table.add_row("export", result.export)
    if result.log_path:
        table.add_row("log", result.log_path)
    console.print(table)
