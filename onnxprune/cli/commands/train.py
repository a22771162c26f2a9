"""`onnxprune train MODEL.onnx --data cifar10 -o TRAINED.onnx`: train a (pruned) ONNX model;
`--teacher ORIGINAL.onnx`: distil it from the original instead, on any images, no labels needed.

torch is imported only when the verb runs: the core CLI works without the `train` extra.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, List, Optional

import typer

from onnxprune.cli.app import app, console, emit_json, err_console, input_shape_option, parse_input_shapes, seed_option
from onnxprune.errors import UserError
from onnxprune.read.save import check_outputs_writable


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
        data=typer.Option(
            "cifar10",
            "--data",
            help="cifar10 | cifar10=PATH | cifar100=PATH | folder=PATH | images=PATH (with --teacher: a folder, "
            "searched recursively, or a zip of images without labels)",
        ),
        epochs=typer.Option(None, "--epochs", help="epochs (default: the recipe's)"),
        batch_size=typer.Option(None, "--batch-size", help="batch size (default: the recipe's)"),
        optimizer=typer.Option(None, "--optimizer", help="sgd | rmsprop | adam (default: the recipe's)"),
        lr=typer.Option(None, "--lr", help="(peak) learning rate (default: the recipe's)"),
        schedule=typer.Option(None, "--schedule", help="cosine | onecycle | none (default: the recipe's)"),
        weight_decay=typer.Option(None, "--weight-decay", help="weight decay (default: the recipe's)"),
        recipe=typer.Option(
            None,
            "--recipe",
            help="paper (RMSprop 1e-3, batch 128, 150 epochs) | cpu (short SGD one-cycle run for a 2-core CPU; "
            "the default) | distill (Adam 1e-3, a tenth for a student that kept its weights, batch 16, 2 epochs, "
            "cosine; the default with --teacher)",
        ),
        seed=seed_option("Random seed (weights order, shuffling, augmentation), a non-negative integer."),
        input_shape=input_shape_option(),
        device=typer.Option("auto", "--device", help="auto | cpu | cuda"),
        limit_train=typer.Option(None, "--limit-train", help="train on the first N (class-balanced) images; 0: all"),
        limit_test=typer.Option(None, "--limit-test", help="test on the first N images; 0: all"),
        threads=typer.Option(None, "--threads", help="CPU threads (default: the cores available)"),
        augment=typer.Option(
            None,
            "--augment/--no-augment",
            help="random crop + flip while training (default: on, except with --teacher for a student that kept its "
            "weights, which learns the teacher's outputs on the images as they are)",
            show_default=False,
        ),
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


def distill_options() -> dict[str, Any]:
    """The typer options of distillation (`train --teacher`, `pipeline distill`, `sweep --teacher`)."""
    return dict(
        alpha=typer.Option(
            None, "--alpha", help="with labelled data: weight of the label loss, 0 (teacher only, default) to 1"
        ),
        temperature=typer.Option(None, "--temperature", help="KL temperature for class-score outputs (default 2)"),
        hints=typer.Option(
            None,
            "--hints",
            help="auto (default): feature losses on the pruned layers' outputs, matched by name on the kept "
            "channels | none",
        ),
        hint_weight=typer.Option(None, "--hint-weight", help="weight of the feature hints' loss (default 1)"),
        recalibrate=typer.Option(
            None,
            "--recalibrate/--no-recalibrate",
            help="before training, refit every layer to the teacher's tensors by least squares, in graph order (default on)",
        ),
        keep_best=typer.Option(
            None,
            "--keep-best/--no-keep-best",
            help="export the student closest to its teacher on 256 training images: the refit start or an epoch "
            "(default on)",
        ),
        shrink_report=typer.Option(
            None, "--shrink-report", help="shrink --report JSON: the kept channels of each layer, for the hints"
        ),
        output_loss=typer.Option(
            None, "--output-loss", metavar="NAME=kl|mse", help="override an output's loss (repeatable)"
        ),
        teacher_runtime=typer.Option(
            None, "--teacher-runtime", help="auto (torch, else onnxruntime) | torch | onnxruntime"
        ),
        student_init=typer.Option(
            None,
            "--student-init",
            help="keep | reinit: whether the student kept the original's weights (default: the model's "
            "onnxprune.init metadata, else keep); reinit trains BatchNorm statistics and inserts BatchNorm "
            "under --norm auto",
        ),
        mean=typer.Option(
            None,
            "--mean",
            help="per-channel mean of the input normalisation, in [0, 1] units (default: the teacher's "
            "metadata, else 0: pixels scaled to [0, 1])",
        ),
        std=typer.Option(None, "--std", help="per-channel std of the input normalisation (default: metadata, else 1)"),
    )


def distill_kwargs(teacher: str | None, **given) -> dict[str, Any] | None:
    """Parsed distillation flags (only those given), for trainers.distill_loop.distill; None without a
    teacher, where any of them given is refused in one line."""
    if teacher is None:
        named = [k for k, v in given.items() if v is not None and v != [] and v != ()]
        if named:
            raise UserError(f"--{named[0].replace('_', '-')} is a distillation setting: give --teacher ORIGINAL.onnx")
        return None
    require_torch()
    from trainers.preprocess import parse_stats

    out = {k: v for k, v in given.items() if v is not None and k not in ("mean", "std", "output_loss", "recalibrate")}
    if given.get("recalibrate") is not None:
        out["recalibration"] = given["recalibrate"]
    for key in ("mean", "std"):
        if given.get(key) is not None:
            out[key] = parse_stats(given[key], f"--{key}")
    if given.get("output_loss"):
        pairs = {}
        for item in given["output_loss"]:
            name, sep, loss = item.rpartition("=")
            if not sep or not name:
                raise UserError(f"--output-loss {item!r}: give NAME=kl or NAME=mse")
            pairs[name] = loss.strip().lower()
        out["output_loss"] = pairs
    return out


_O = train_options()
_D = distill_options()


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
    recipe: Optional[str] = _O["recipe"],
    seed: int = _O["seed"],
    input_shape: Optional[List[str]] = _O["input_shape"],
    device: str = _O["device"],
    limit_train: Optional[int] = _O["limit_train"],
    limit_test: Optional[int] = _O["limit_test"],
    threads: Optional[int] = _O["threads"],
    augment: Optional[bool] = _O["augment"],
    norm: str = _O["norm"],
    guard: bool = _O["guard"],
    teacher: Optional[str] = typer.Option(
        None,
        "--teacher",
        help="the original model (never modified): distil MODEL from it on --data's images, no labels needed "
        "(see trainers/README.md, 'Distillation')",
    ),
    alpha: Optional[float] = _D["alpha"],
    temperature: Optional[float] = _D["temperature"],
    hints: Optional[str] = _D["hints"],
    hint_weight: Optional[float] = _D["hint_weight"],
    recalibrate: Optional[bool] = _D["recalibrate"],
    keep_best: Optional[bool] = _D["keep_best"],
    shrink_report: Optional[str] = _D["shrink_report"],
    output_loss: Optional[List[str]] = _D["output_loss"],
    teacher_runtime: Optional[str] = _D["teacher_runtime"],
    student_init: Optional[str] = _D["student_init"],
    mean: Optional[str] = _D["mean"],
    std: Optional[str] = _D["std"],
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="save a checkpoint here after every epoch"),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="continue from --checkpoint DIR's last checkpoint (with --teacher: from its refitted weights, not refitted again)",
    ),
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
    """Train MODEL on a dataset (PyTorch) and write the trained network as ONNX; with --teacher, distil it."""
    # every output location is checked before torch loads or any image is decoded
    check_outputs_writable({"-o": output, "--log": log or Path(output).with_suffix(".train.jsonl")}, model, teacher)
    shapes = parse_input_shapes(input_shape, model)
    distilling = distill_kwargs(
        teacher,
        alpha=alpha,
        temperature=temperature,
        hints=hints,
        hint_weight=hint_weight,
        recalibrate=recalibrate,
        keep_best=keep_best,
        shrink_report=shrink_report,
        output_loss=output_loss,
        teacher_runtime=teacher_runtime,
        student_init=student_init,
        mean=mean,
        std=std,
    )
    require_torch()
    common = dict(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        schedule=schedule,
        weight_decay=weight_decay,
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
        augment=augment,
        console=err_console,
        norm=norm,
        guard=guard,
        input_shapes=shapes,
    )
    with verdict_on_stdout(json_out):
        if teacher is not None:
            from trainers.distill_loop import distill

            result = distill(model, teacher, data, recipe=recipe or "distill", **common, **distilling)
        else:
            from trainers.loop import train

            result = train(model, data, recipe=recipe or "cpu", keep_bn=keep_bn, **common)
    if json_out:
        emit_json(result.to_dict())
        return
    if teacher is not None:
        print_distill_summary(model, result)
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


def print_distill_summary(model: str, result, title: str | None = None) -> None:
    from onnxprune.report import LiteralTable

    table = LiteralTable(title=title or f"{model} → {result.output_path} (distilled)", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    cfg = result.config
    table.add_row("teacher", f"{result.teacher['path']} in {result.teacher['runtime']}")
    table.add_row(
        "data",
        f"{cfg.get('data')}" + (f", {result.skipped_images} unreadable skipped" if result.skipped_images else ""),
    )
    table.add_row(
        "recipe",
        f"{cfg.get('recipe')}: {cfg.get('optimizer')} lr {cfg.get('lr')} {cfg.get('schedule')}, batch "
        f"{cfg.get('batch_size')}, {cfg.get('epochs')} epochs, T {cfg.get('temperature')}, alpha {cfg.get('alpha')}, "
        f"{len(result.hints)} hints",
    )
    table.add_row(
        "held-out error",
        f"relative error {result.relative_error_before:.4f} before → {result.relative_error:.4f} after",
    )
    changed = [r for r in result.refit if r.get("lambda") is not None]
    if changed and result.heldout_recalibrated:
        table.add_row(
            "refit",
            f"{len(changed)} of {len(result.refit)} layers, relative error "
            f"{result.heldout_recalibrated['relative_error']:.4f} before any step",
        )
    if result.selected.get("enabled") and result.selected.get("epoch") is not None:
        epoch = result.selected["epoch"]
        table.add_row("exported", "the refit (no epoch came closer)" if epoch == 0 else f"epoch {epoch}")
    if result.agreement is not None:
        table.add_row(
            "top-1 agreement",
            f"{100 * (result.agreement_before or 0):.1f}% before → {100 * result.agreement:.1f}% after",
        )
    if result.accuracy is not None:
        table.add_row("test accuracy", f"{100 * result.accuracy:.2f}%")
    table.add_row("time", f"{result.wall_seconds:.1f} s in total, {result.train_seconds:.1f} s training")
    if result.onnx_check:
        worst = max(result.onnx_check["max_relative_error"].values(), default=0.0)
        table.add_row("ONNX check", f"onnxruntime equals torch within {worst:.2g} (relative) on held-out images")
    table.add_row("verdict", result.verdict.get("status", ""))
    if result.export:
        table.add_row("export", result.export)
    if result.log_path:
        table.add_row("log", result.log_path)
    console.print(table)
