"""Training loop: ONNX model in, trained ONNX model out.

`train(model, data="cifar10", ...)` converts the graph to torch (trainers.convert), trains it on
an in-memory dataset (trainers.data), evaluates on the test split after every epoch, writes one
JSON line per epoch, optionally checkpoints every epoch (`checkpoint=DIR`, `resume=True`), and
exports the trained network to ONNX (written back into the source graph, or through torch with
BatchNorm folded: trainers.export_trained), checking that onnxruntime predicts what torch predicts.

The recipes live in trainers.recipes, checkpoints in trainers.checkpoint, the progress bar in
trainers.progress.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F

from onnxprune.errors import UserError
from onnxprune.read.io import ModelLike, load_model
from onnxprune.read.save import validate_output_path

from .checkpoint import CHECKPOINT_NAME, RESUME_KEYS, model_fingerprint
from .convert import convert
from .convert.norms import NORM_MODES, insert_norms
from .data import Batches
from .dataset import Dataset
from .evaluate import _check_fit, _load_data, evaluate, evaluate_model
from .export_trained import export_trained, onnx_agreement
from .guard import check_epoch, check_step, verdict
from .memory import keep_freed_memory
from .progress import TrainingProgress
from .recipes import (
    CPU_RECIPE_NOTE,
    RECIPES,
    default_augment,
    lr_at,
    make_optimizer,
    resolve_config,
    resolve_device,
    set_threads,
)
from .runstate import EpochLog, first_input_shape, open_checkpoint, restore, save

__all__ = [
    "train",
    "TrainResult",
    "RECIPES",
    "CPU_RECIPE_NOTE",
    "resolve_config",
    "evaluate",
    "evaluate_model",
    "first_input_shape",
]


@dataclass
class TrainResult:
    accuracy: float  # final test accuracy, 0..1
    test_loss: float
    train_loss: float
    train_accuracy: float
    epochs: int
    wall_seconds: float  # the whole call: data, conversion, training, export
    train_seconds: float  # the epochs alone (train + test passes)
    images_per_s: float  # training throughput
    log_path: str | None
    output_path: str | None
    device: str
    config: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    onnx_agreement: float | None = None  # share of test images where onnxruntime agrees with torch
    mean: tuple = ()
    std: tuple = ()
    params: int = 0
    resumed_from_epoch: int = 0
    norm: dict = field(default_factory=dict)  # {"mode", "inserted": [{"layer", "op", "channels"}]}
    verdict: dict = field(default_factory=dict)  # {"status": "learned" | "did not learn", "guard": bool}
    export: str | None = None  # how the trained model was written

    def to_dict(self) -> dict:
        return asdict(self)


# -------------------------------------------------------------------------------------------- loop


def train(
    model: ModelLike,
    data: str | Dataset = "cifar10",
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    schedule: str | None = None,
    weight_decay: float | None = None,
    recipe: str = "cpu",
    seed: int = 0,
    device: str = "auto",
    limit_train: int | None = None,
    limit_test: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    log: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
    threads: int | None = None,
    keep_bn: bool = False,
    augment: bool | None = True,
    console=None,
    norm: str = "auto",
    guard: bool = True,
    input_shapes: dict[str, list[int]] | None = None,
) -> TrainResult:
    """Train an ONNX model (path or ModelProto) and, with `output`, save the trained ONNX model.

    Explicit arguments override the recipe's. `data` is a spec (see trainers.data) or a loaded
    Dataset. The output keeps the input's input/output names and gets a dynamic batch axis when the
    graph allows it; a graph without BatchNorm of its own (or any graph with `keep_bn`) gets its
    trained weights written back into its own nodes (trainers.export_trained); a graph with BN is
    exported through torch with BN folded. Its metadata records the input normalisation
    (`onnxprune.mean` / `onnxprune.std`, per channel, for pixels scaled to [0, 1]).

    `norm` (auto | insert | none): BatchNorm inserted for training after layers without
    normalisation (auto: only when the graph has none; see trainers.convert.norms), folded back at
    export. `guard`: stop with DidNotLearn (exit 2, nothing written) when the first epoch leaves
    the loss at the uninformed level (trainers.guard); a NaN/inf loss always stops the run.
    `input_shapes` ({"NAME": [1, 3, H, W]}, as `--input-shape`) fixes symbolic input dimensions.
    """
    started = time.perf_counter()
    config = resolve_config(
        recipe,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        schedule=schedule,
        weight_decay=weight_decay,
        limit_train=limit_train,
        limit_test=limit_test,
    )
    config["seed"] = int(seed)
    augment = default_augment(False, None) if augment is None else bool(augment)
    config["augment"] = augment
    config["data"] = data if isinstance(data, str) else f"dataset:{data.name}"
    config["norm"] = norm
    if norm not in NORM_MODES:
        raise UserError(f"--norm {norm!r}: expected one of {', '.join(NORM_MODES)}")
    where = str(model) if not isinstance(model, onnx.ModelProto) else "model"
    proto = load_model(model)
    out_path = validate_output_path(output, model) if output is not None else None
    log_path = Path(log) if log is not None else (out_path.with_suffix(".train.jsonl") if out_path else None)
    if log_path is not None and not log_path.parent.resolve().is_dir():
        raise UserError(f"--log {log_path}: folder {log_path.parent} does not exist; create it first")
    config["model_sha"] = model_fingerprint(proto)
    dev = resolve_device(device)
    n_threads = set_threads(threads)
    keep_freed_memory()  # trainers.memory: a step no longer page-faults its activations back in
    if progress and console is None:
        from rich.console import Console

        console = Console(stderr=True)
    say = console.print if progress else None

    ckpt_dir, state = open_checkpoint(checkpoint, resume, config, RESUME_KEYS, say)

    # the model first (every op converts, its output fits the data): seconds, before decoding images
    module = convert(proto, input_shape=first_input_shape(proto, input_shapes))
    _check_fit(module, data if isinstance(data, Dataset) else None, where, data if isinstance(data, str) else None)
    dataset = data if isinstance(data, Dataset) else _load_data(data, config, say)
    if isinstance(data, Dataset):
        dataset = dataset.limited(config.get("limit_train"), config.get("limit_test")).with_stats()
    _check_fit(module, dataset, where)

    torch.manual_seed(config["seed"])
    generator = torch.Generator().manual_seed(config["seed"])
    inserted = insert_norms(module, proto, norm)
    if say:
        say(_norm_line(norm, inserted))
    module.to(dev)
    module.train()
    opt = make_optimizer(config["optimizer"], module.parameters(), config["lr"], config["weight_decay"])
    train_batches = Batches(
        dataset.train_x,
        dataset.train_y,
        config["batch_size"],
        dataset.mean,
        dataset.std,
        device=dev,
        train=True,
        generator=generator,
        augment=augment,
    )
    test_batches = Batches(
        dataset.test_x,
        dataset.test_y,
        max(config["batch_size"], 256),
        dataset.mean,
        dataset.std,
        device=dev,
        train=False,
    )
    steps_per_epoch = len(train_batches)
    total_steps = steps_per_epoch * config["epochs"]

    history: list[dict] = []
    start_epoch, step, prior_seconds = 0, 0, 0.0
    if state is not None:
        start_epoch, step, history, prior_seconds = restore(state, module, opt, generator, dev, ckpt_dir)
        if say:
            say(f"resuming from {ckpt_dir / CHECKPOINT_NAME} after epoch {start_epoch}")
    epoch_log = EpochLog(log_path, history)

    train_images, train_time = 0, 0.0
    with TrainingProgress(progress, console) as bar:
        for epoch in range(start_epoch, config["epochs"]):
            epoch_start = time.perf_counter()
            module.train()
            task = bar.task(f"epoch {epoch + 1}/{config['epochs']}", steps_per_epoch)
            loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            correct = torch.zeros((), dtype=torch.int64, device=dev)
            seen = 0
            lr_now = config["lr"]
            tail_from = steps_per_epoch - max(1, steps_per_epoch // 4)  # the guard reads the last quarter
            tail_sum = torch.zeros((), dtype=torch.float64, device=dev)
            tail_seen = 0
            for step_in_epoch, (xb, yb) in enumerate(train_batches):
                lr_now = lr_at(step, total_steps, config["lr"], config["schedule"])
                for group in opt.param_groups:
                    group["lr"] = lr_now
                logits = module(xb)
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                seen += yb.shape[0]
                loss_sum += loss.detach().double() * yb.shape[0]
                if step_in_epoch >= tail_from:
                    tail_sum += loss.detach().double() * yb.shape[0]
                    tail_seen += yb.shape[0]
                if step_in_epoch % 10 == 0 or step_in_epoch == steps_per_epoch - 1:
                    check_step(float(loss_sum), epoch + 1, step_in_epoch, history)
                correct += (logits.detach().argmax(1) == yb).sum()
                if bar.enabled:
                    elapsed = time.perf_counter() - epoch_start
                    bar.update(
                        task,
                        loss=f"{float(loss_sum) / seen:.3f}",
                        acc=f"{int(correct) / seen:.3f}",
                        **{"img/s": f"{seen / max(elapsed, 1e-9):.0f}"},
                    )
            train_loss = float(loss_sum) / max(seen, 1)
            check_step(train_loss, epoch + 1, steps_per_epoch - 1, history)
            tail_loss = float(tail_sum) / max(tail_seen, 1)
            train_acc = int(correct) / max(seen, 1)
            train_elapsed = time.perf_counter() - epoch_start
            train_images += seen
            train_time += train_elapsed
            test_loss, test_acc = evaluate(module, test_batches)
            seconds = time.perf_counter() - epoch_start
            record = {
                "epoch": epoch + 1,
                "train_loss": round(train_loss, 6),
                "train_acc": round(train_acc, 6),
                "test_loss": round(test_loss, 6),
                "test_acc": round(test_acc, 6),
                "lr": lr_now,
                "seconds": round(seconds, 3),
                "images_per_s": round(seen / max(train_elapsed, 1e-9), 2),
                "train_loss_tail": round(tail_loss, 6),
                "steps": steps_per_epoch,
            }
            history.append(record)
            if guard:
                check_epoch(epoch + 1, steps_per_epoch, tail_loss, test_acc, dataset.num_classes, history)
            epoch_log.write(record)
            bar.print(
                f"epoch {epoch + 1}: train loss {train_loss:.4f} acc {train_acc:.3f} | test loss {test_loss:.4f} "
                f"acc {test_acc:.3f} | {record['images_per_s']:.0f} img/s, {seconds:.1f} s"
            )
            if ckpt_dir is not None:
                save(
                    ckpt_dir,
                    epoch=epoch + 1,
                    module=module,
                    opt=opt,
                    config=config,
                    keys=RESUME_KEYS,
                    step=step,
                    total=total_steps,
                    generator=generator,
                    dev=dev,
                    history=history,
                    seconds=prior_seconds + train_time,
                )

    if history:
        final = history[-1]
    else:  # epochs already done (resumed a finished run) or none: evaluate as is
        test_loss, test_acc = evaluate(module, test_batches)
        final = {"train_loss": float("nan"), "train_acc": float("nan"), "test_loss": test_loss, "test_acc": test_acc}
    if dev.type == "cuda":
        torch.cuda.synchronize()

    agreement, how = None, None
    outcome = verdict(history, dataset.num_classes, guard)
    if out_path is not None:
        module.eval()
        metadata = {
            "onnxprune.mean": json.dumps(list(dataset.mean)),
            "onnxprune.std": json.dumps(list(dataset.std)),
            "onnxprune.classes": json.dumps(dataset.classes),
            "onnxprune.test_accuracy": f"{final['test_acc']:.6f}",
            "onnxprune.verdict": outcome["status"],
        }
        exported, how = export_trained(
            module.cpu(), proto, out_path, keep_bn=keep_bn, refuse=(model,), metadata=metadata
        )
        agreement = onnx_agreement(module, exported, test_batches)
        module.to(dev)
    wall = time.perf_counter() - started
    return TrainResult(
        accuracy=float(final["test_acc"]),
        test_loss=float(final["test_loss"]),
        train_loss=float(final["train_loss"]),
        train_accuracy=float(final["train_acc"]),
        epochs=config["epochs"],
        wall_seconds=wall,
        train_seconds=prior_seconds + train_time,
        images_per_s=(train_images / train_time)
        if train_time > 0
        else (history[-1]["images_per_s"] if history else 0.0),
        log_path=str(log_path) if log_path else None,
        output_path=str(out_path) if out_path else None,
        device=f"{dev.type}" + (f" ({n_threads} threads)" if dev.type == "cpu" else ""),
        config={k: v for k, v in config.items() if k != "model_sha"},
        history=history,
        onnx_agreement=agreement,
        mean=tuple(dataset.mean),
        std=tuple(dataset.std),
        params=sum(p.numel() for p in module.parameters()),
        resumed_from_epoch=start_epoch,
        norm={"mode": norm, "inserted": inserted},
        verdict=outcome,
        export=how,
    )


def _norm_line(mode: str, inserted: list[dict]) -> str:
    if not inserted:
        return f"normalisation (--norm {mode}): none inserted"
    names = ", ".join(entry["layer"] for entry in inserted[:4]) + (", ..." if len(inserted) > 4 else "")
    return (
        f"normalisation (--norm {mode}): BatchNorm inserted after {len(inserted)} layers without one ({names}); "
        f"trained, then folded back into their weights at export"
    )
