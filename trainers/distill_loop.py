"""Distillation: train a pruned graph to reproduce its original (`train PRUNED --teacher ORIGINAL`).

`distill(student, teacher, data, ...)` needs no labels and no task loss: the student learns the
teacher's outputs on any images of the domain (trainers.distill: KL at a temperature for class
scores, normalised MSE otherwise) and, with `hints="auto"`, the teacher's intermediate tensors on
the channels the student kept (trainers.hints). Labelled data may mix cross-entropy in by `alpha`.

Order of work: both graphs are loaded and compared (inputs, outputs: trainers.teacher.check_pair),
converted and probed side by side (batch axes, output shapes, losses, hints) before any image is
decoded; then the images (trainers.images or trainers.data, preprocessed per trainers.preprocess),
the calibration pass, a held-out measurement *before* training, the epochs (progress bar, JSONL
log with held-out error and agreement per epoch, checkpoints, `--resume`, the guard), and the export:
the trained weights written back into the student graph (same nodes and names), checked with
onnxruntime against torch on held-out images.

A student that kept its weights (trainers/README.md, "Distillation") trains at a tenth of the
recipe's rate unless `--lr` says otherwise, gets no BatchNorm inserted under `--norm auto`, and
computes as its teacher does while training: the original's BatchNorm statistics, no Dropout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import onnx
import torch

from onnxprune.errors import UserError
from onnxprune.read.io import ModelLike, load_model
from onnxprune.read.save import validate_output_path

from .batches import Batches
from .checkpoint import CHECKPOINT_NAME, RESUME_KEYS, model_fingerprint
from .convert import convert
from .convert.norms import insert_norms
from .distill_setup import (
    DistillResult,
    Objective,
    check_options,
    epoch_line,
    epoch_record,
    export_check,
    heldout,
    label_index,
    load_data,
    pair_up,
    start_point,
    student_init_of,
    train_mode,
)
from .export_trained import export_trained
from .guard import check_distill_epoch, check_step, distill_verdict
from .keep_best import BestState
from .memory import keep_freed_memory
from .preprocess import input_spec
from .progress import TrainingProgress
from .recalibrate import IMAGES as REFIT_IMAGES
from .recipes import default_augment, lr_at, make_optimizer, resolve_config, resolve_device, set_threads
from .runstate import EpochLog, first_input_shape, open_checkpoint, restore, save
from .teacher import Teacher, check_pair

DISTILL_KEYS = RESUME_KEYS + (
    "teacher_sha",
    "alpha",
    "temperature",
    "hints",
    "hint_weight",
    "mean",
    "std",
    "output_loss",
)


def distill(
    model: ModelLike,
    teacher: ModelLike,
    data="cifar10",
    *,
    alpha: float = 0.0,
    temperature: float = 2.0,
    hints: str = "auto",
    hint_weight: float = 1.0,
    recalibration: bool = True,
    keep_best: bool = True,
    shrink_report=None,
    output_loss: dict[str, str] | None = None,
    teacher_runtime: str = "auto",
    student_init: str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    schedule: str | None = None,
    weight_decay: float | None = None,
    recipe: str = "distill",
    seed: int = 0,
    device: str = "auto",
    limit_train: int | None = None,
    limit_test: int | None = None,
    checkpoint=None,
    resume: bool = False,
    log=None,
    output=None,
    progress: bool = True,
    threads: int | None = None,
    augment: bool | None = None,
    console=None,
    norm: str = "auto",
    guard: bool = True,
    input_shapes: dict[str, list[int]] | None = None,
) -> DistillResult:
    """Distil `teacher` (the original ONNX model) into `model` (its pruned graph); see the module docstring."""
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
    check_options(alpha, temperature, hints, hint_weight, norm)
    config.update(
        seed=int(seed),
        data=data if isinstance(data, str) else f"dataset:{data.name}",
        norm=norm,
        alpha=float(alpha),
        temperature=float(temperature),
        hints=hints,
        hint_weight=float(hint_weight),
        recalibrate=bool(recalibration),
        keep_best=bool(keep_best),
        output_loss=sorted((output_loss or {}).items()),
    )
    where = str(model) if not isinstance(model, onnx.ModelProto) else "model"
    t_where = str(teacher) if not isinstance(teacher, onnx.ModelProto) else "teacher"
    proto, t_proto = load_model(model), load_model(teacher)
    check_pair(proto, t_proto, t_where)
    init = student_init_of(proto, student_init)
    if init not in ("keep", "reinit"):
        raise UserError(f"--student-init {init!r}: expected keep or reinit")
    config["augment"] = default_augment(True, init) if augment is None else bool(augment)
    if lr is None and init == "keep":  # near its teacher already: the recipe's full rate wrecks it first
        config["lr"] = config["lr"] / 10.0
    out_path = validate_output_path(output, model, teacher) if output is not None else None
    log_path = Path(log) if log is not None else (out_path.with_suffix(".train.jsonl") if out_path else None)
    if log_path is not None and not log_path.parent.resolve().is_dir():
        raise UserError(f"--log {log_path}: folder {log_path.parent} does not exist; create it first")
    labelled = not isinstance(data, str) or not data.strip().lower().startswith("images")
    if float(alpha) > 0 and not labelled:
        raise UserError(f"--alpha {alpha}: --data {data!r} has no labels; use --alpha 0 or a labelled dataset")
    config["model_sha"], config["teacher_sha"] = model_fingerprint(proto), model_fingerprint(t_proto)
    dev = resolve_device(device)
    n_threads = set_threads(threads)
    keep_freed_memory()
    if progress and console is None:
        from rich.console import Console

        console = Console(stderr=True)
    say = console.print if progress else None

    # both networks converted and probed, every loss chosen: before any image is decoded
    shape = first_input_shape(proto, input_shapes)
    module = convert(proto, input_shape=shape)
    spec = input_spec(proto, module.input_shape, mean=mean, std=std, defaults_from=t_proto, where=where)
    config["mean"], config["std"] = list(spec.mean), list(spec.std)
    ckpt_dir, state = open_checkpoint(checkpoint, resume, config, DISTILL_KEYS, say)
    teacher_net = Teacher(t_proto, shape, dev, set(), teacher_runtime)
    module.to(dev)
    pair = pair_up(
        module,
        proto,
        teacher_net,
        spec,
        hints_mode=hints,
        report=shrink_report,
        overrides=output_loss,
        where=t_where,
        device=dev,
    )
    if say:
        say(teacher_net.describe())
        say(spec.describe())
        for rule in pair.rules:
            say(f"output {rule.output!r}: {rule.kind} ({rule.reason}), compared on {rule.tensor!r}")
        say(
            f"feature hints: {len(pair.hints)} tensors"
            + (f" ({', '.join(h.node for h in pair.hints[:4])}, ...)" if pair.hints else "")
        )

    # images=PATH: only explicit limits (its held-out share is its own); labelled sets: the recipe's too
    limits = config if labelled else {"limit_train": limit_train or None, "limit_test": limit_test or None}
    dataset, skipped = load_data(data, spec, limits, say)
    if skipped.count and say:
        say(f"skipped {skipped.count} unreadable image(s), e.g. {', '.join(skipped.examples)}")
    label_at = label_index(pair.rules, pair.student.sample[0], pair.student.names, dataset.num_classes)
    if float(alpha) > 0 and label_at is None:
        raise UserError(
            f"--alpha {alpha}: the student has no (batch, {dataset.num_classes}) class output for the labels of {data!r}"
        )
    effective = "none" if norm == "auto" and init != "reinit" else norm
    as_original = init != "reinit"  # kept weights: BatchNorm statistics and Dropout as the original runs
    inserted = insert_norms(module, proto, effective)
    if say:
        say(
            f"normalisation (--norm {norm}, student weights {init}): "
            + (f"BatchNorm inserted after {len(inserted)} layers" if inserted else "none inserted")
        )
    module.to(dev)
    torch.manual_seed(config["seed"])
    generator = torch.Generator().manual_seed(config["seed"])
    make = dict(mean=(0.0,), std=(1.0,), device=dev, transform=spec.to_input)
    train_batches = Batches(
        dataset.train_x,
        dataset.train_y,
        config["batch_size"],
        train=True,
        generator=generator,
        augment=config["augment"],
        **make,
    )
    test_batches = Batches(dataset.test_x, dataset.test_y, config["batch_size"], **make)
    calibration = Batches(dataset.train_x, dataset.train_y, config["batch_size"], **make)

    objective = Objective(
        pair.rules, pair.hints, pair.student.names, float(temperature), float(hint_weight), float(alpha), label_at
    )
    saved, before, refit, recalibrated = start_point(
        pair, objective, module, teacher_net, calibration, test_batches, state, recalibration, say
    )
    opt = make_optimizer(config["optimizer"], module.parameters(), config["lr"], config["weight_decay"])
    steps_per_epoch = len(train_batches)
    total_steps = steps_per_epoch * config["epochs"]
    history: list[dict] = []
    start_epoch, step, prior_seconds = 0, 0, 0.0
    if state is not None:
        start_epoch, step, history, prior_seconds = restore(state, module, opt, generator, dev, ckpt_dir)
        if say:
            say(f"resuming from {ckpt_dir / CHECKPOINT_NAME} after epoch {start_epoch}")
    epoch_log = EpochLog(log_path, history)
    kept = {h.tensor: h.kept.tolist() for h in pair.aligned}
    extra = {"distill": {"kept": kept, "before": before, "recalibrated": recalibrated, "refit": refit}}
    best = BestState.on_training_images(
        bool(keep_best),
        (dataset.train_x, dataset.train_y),
        REFIT_IMAGES if recalibration else 0,
        lambda x, y: Batches(x, y, config["batch_size"], **make),
        lambda batches: heldout(pair, objective, batches, module)["relative_error"],
    )
    if state is None:
        best.offer(0, module)
    else:
        best.load(saved.get("best"))

    train_images, train_time, train_loss, measured = 0, 0.0, float("nan"), {}
    with TrainingProgress(progress, console) as bar:
        for epoch in range(start_epoch, config["epochs"]):
            epoch_start = time.perf_counter()
            train_mode(module, as_original)
            task = bar.task(f"epoch {epoch + 1}/{config['epochs']}", steps_per_epoch)
            loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            seen = 0
            lr_now = config["lr"]
            for step_in_epoch, (xb, yb) in enumerate(train_batches):
                lr_now = lr_at(step, total_steps, config["lr"], config["schedule"])
                for group in opt.param_groups:
                    group["lr"] = lr_now
                with torch.no_grad():
                    target = pair.teacher(xb)
                loss, _s, _t = objective(pair.student(xb), target, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                seen += xb.shape[0]
                loss_sum += loss.detach().double() * xb.shape[0]
                if step_in_epoch % 10 == 0 or step_in_epoch == steps_per_epoch - 1:
                    check_step(float(loss_sum), epoch + 1, step_in_epoch, history)
                if bar.enabled:
                    elapsed = time.perf_counter() - epoch_start
                    bar.update(
                        task, loss=f"{float(loss_sum) / seen:.4f}", **{"img/s": f"{seen / max(elapsed, 1e-9):.0f}"}
                    )
            train_loss = float(loss_sum) / max(seen, 1)
            train_elapsed = time.perf_counter() - epoch_start
            train_images += seen
            train_time += train_elapsed
            measured = heldout(pair, objective, test_batches, module)
            record = epoch_record(
                epoch + 1,
                train_loss,
                measured,
                lr_now,
                time.perf_counter() - epoch_start,
                seen / max(train_elapsed, 1e-9),
            )
            record.update(steps=steps_per_epoch, skipped_images=skipped.count)
            history.append(record)
            if guard:
                check_distill_epoch(epoch + 1, steps_per_epoch, before["loss"], measured["loss"], history)
            best.offer(epoch + 1, module)
            extra["distill"]["best"] = best.state()
            epoch_log.write(record)
            bar.print(epoch_line(record, measured))
            if ckpt_dir is not None:
                save(
                    ckpt_dir,
                    epoch=epoch + 1,
                    module=module,
                    opt=opt,
                    config=config,
                    keys=DISTILL_KEYS,
                    step=step,
                    total=total_steps,
                    generator=generator,
                    dev=dev,
                    history=history,
                    seconds=prior_seconds + train_time,
                    extra=extra,
                )

    if best.restore(module, config["epochs"]):
        measured = {}
        if say:
            say(
                f"kept the student of epoch {best.epoch} (0: the refit, before any step): the closest to its teacher on "
                f"training images {best.images[0]}-{best.images[1] - 1}"
            )
    after = measured if measured else heldout(pair, objective, test_batches, module)
    outcome = distill_verdict(history, before["loss"], guard)
    check, how = None, None
    if out_path is not None:
        module.eval()
        metadata = {
            "onnxprune.mean": json.dumps(list(spec.mean)),
            "onnxprune.std": json.dumps(list(spec.std)),
            "onnxprune.teacher_sha": config["teacher_sha"],
            "onnxprune.distill_relative_error": f"{after['relative_error']:.6f}",
            "onnxprune.verdict": outcome["status"],
        }
        exported, how = export_trained(
            module, proto, out_path, keep_bn=True, refuse=(model, teacher), metadata=metadata
        )
        check = export_check(exported, pair, test_batches)
    return DistillResult(
        accuracy=after.get("accuracy"),
        relative_error=after["relative_error"],
        relative_error_before=before["relative_error"],
        agreement=after.get("agreement"),
        agreement_before=before.get("agreement"),
        heldout=after,
        heldout_before=before,
        heldout_recalibrated=recalibrated,
        refit=refit,
        selected=best.describe(),
        train_loss=train_loss,
        epochs=config["epochs"],
        wall_seconds=time.perf_counter() - started,
        train_seconds=prior_seconds + train_time,
        images_per_s=train_images / train_time if train_time > 0 else 0.0,
        log_path=str(log_path) if log_path else None,
        output_path=str(out_path) if out_path else None,
        device=dev.type + (f" ({n_threads} threads)" if dev.type == "cpu" else ""),
        teacher={"path": t_where, "runtime": teacher_net.runtime, "why": teacher_net.why},
        outputs=[r.describe() for r in pair.rules],
        hints=[h.describe() for h in pair.hints],
        input={
            "layout": spec.layout,
            "channels": spec.channels,
            "size": [spec.height, spec.width],
            "mean": list(spec.mean),
            "std": list(spec.std),
            "from": spec.normalisation,
        },
        skipped_images=skipped.count,
        config={k: v for k, v in config.items() if k not in ("model_sha", "teacher_sha")},
        history=history,
        onnx_check=check,
        params=sum(p.numel() for p in module.parameters()),
        resumed_from_epoch=start_epoch,
        norm={
            "mode": norm,
            "applied": effective,
            "student_init": init,
            "inserted": inserted,
            "batchnorm_statistics": "frozen (the original's)" if as_original else "trained",
            "dropout": "off while training (as the teacher runs)" if as_original else "as in the graph",
        },
        verdict=outcome,
        export=how,
    )
