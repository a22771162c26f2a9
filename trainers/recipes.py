"""Training settings: the recipes, their resolution against explicit flags, the learning-rate
schedules, optimizer and device choice.

Recipes (explicit arguments override them):

* `paper` -- the paper's: RMSprop, lr 1e-3, batch 128, 150 epochs, constant learning rate.
* `distill` -- the default of `train --teacher`: Adam, lr 1e-3 (a student that kept its weights: 1e-4),
  batch 16, 2 epochs, cosine schedule, no weight decay (labelled sets: the same 20,000 / 2,000-image
  limits as `cpu`).
* `cpu` -- what a 2-core CPU can do in 10-20 minutes on a VGG-16 pruned to ~20% of its
  parameters: SGD (momentum 0.9, Nesterov, wd 5e-4), one-cycle schedule peaking at lr 0.05,
  batch 128, 3 epochs over a class-balanced 20,000-image subset of the training set, tested on
  2,000 images. See `CPU_RECIPE_NOTE` for the measurements behind it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from onnxprune.errors import UserError

RECIPES: dict[str, dict[str, Any]] = {
    "paper": dict(
        optimizer="rmsprop",
        lr=1e-3,
        batch_size=128,
        epochs=150,
        schedule="none",
        weight_decay=0.0,
        limit_train=None,
        limit_test=None,
    ),
    "cpu": dict(
        optimizer="sgd",
        lr=0.05,
        batch_size=128,
        epochs=3,
        schedule="onecycle",
        weight_decay=5e-4,
        limit_train=20000,
        limit_test=2000,
    ),
    # `train --teacher` (distillation) by default: a pruned graph that kept its weights, often with no
    # BatchNorm left to condition it, is wrecked by the cpu recipe's SGD peak of 0.05; Adam with small
    # batches, at a tenth of this rate for a student that kept its weights (trainers.distill_loop)
    "distill": dict(
        optimizer="adam",
        lr=1e-3,
        batch_size=16,
        epochs=2,
        schedule="cosine",
        weight_decay=0.0,
        limit_train=20000,
        limit_test=2000,
    ),
}

CPU_RECIPE_NOTE = (
    "cpu recipe: measured on this project's 2-core CPU machine (AVX2, shared with other jobs), a CIFAR "
    "VGG-16 pruned to ~20% of its parameters (3.0 M params, 127 M MACs) trains at 53-106 images/s "
    "(batch 128, 2 threads), so 10-20 minutes buy ~60k training images: 3 epochs of a 20k "
    "class-balanced subset, with SGD + one-cycle (warm-up to 0.05, cosine to ~0), the schedule that "
    "gets furthest in few epochs. Measured: 63.9% test accuracy (2k test images) in 12.5 minutes "
    "(84 images/s on average, other jobs running); 2 epochs gave 58.0% in 9.8 minutes. "
    "Testing on 2k images keeps evaluation at ~15 s per epoch."
)


OPTIMIZERS = ("sgd", "rmsprop", "adam")
SCHEDULES = ("cosine", "onecycle", "none")
DEVICES = ("auto", "cpu", "cuda")


def resolve_config(recipe: str = "cpu", **overrides) -> dict[str, Any]:
    """Recipe defaults, with every explicitly given (non-None) argument overriding them."""
    if recipe not in RECIPES:
        raise UserError(f"--recipe {recipe!r}: expected one of {', '.join(RECIPES)}")
    config = dict(RECIPES[recipe])
    config["recipe"] = recipe
    for key, value in overrides.items():
        if value is not None:
            config[key] = value
    if config["optimizer"] not in OPTIMIZERS:
        raise UserError(f"--optimizer {config['optimizer']!r}: expected one of {', '.join(OPTIMIZERS)}")
    if config["schedule"] not in SCHEDULES:
        raise UserError(f"--schedule {config['schedule']!r}: expected one of {', '.join(SCHEDULES)}")
    for key, flag in (("epochs", "--epochs"), ("batch_size", "--batch-size")):
        if int(config[key]) < 1:
            raise UserError(f"{flag} {config[key]}: must be at least 1")
        config[key] = int(config[key])
    for key, flag in (("limit_train", "--limit-train"), ("limit_test", "--limit-test")):
        if config.get(key) is not None:
            if int(config[key]) < 0:
                raise UserError(f"{flag} {config[key]}: must be a positive number of images (0: all of them)")
            config[key] = int(config[key]) or None  # 0: no limit (overrides a recipe's)
    if not float(config["lr"]) > 0 or not math.isfinite(float(config["lr"])):
        raise UserError(f"--lr {config['lr']}: must be a positive number")
    if float(config["weight_decay"]) < 0:
        raise UserError(f"--weight-decay {config['weight_decay']}: must not be negative")
    config["lr"] = float(config["lr"])
    config["weight_decay"] = float(config["weight_decay"])
    return config


def lr_at(step: int, total: int, base: float, schedule: str) -> float:
    """The learning rate at optimizer step `step` of `total` (a pure function: resumable)."""
    if schedule == "none" or total <= 1:
        return base
    t = min(step / total, 1.0)
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * t))
    # one-cycle: 25% linear warm-up from base/25, then cosine down to base/1e4
    warm = 0.25
    if t < warm:
        return base / 25.0 + (base - base / 25.0) * (t / warm)
    return base / 1e4 + (base - base / 1e4) * 0.5 * (1.0 + math.cos(math.pi * (t - warm) / (1.0 - warm)))


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def default_augment(distilling: bool, student_init: str | None) -> bool:
    """`--augment` when not given: random crop + flip, except for a student that kept its weights and
    learns its teacher's outputs on the images as they are (trainers/README.md, "Distillation")."""
    return not distilling or student_init == "reinit"


def resolve_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise UserError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available to torch; use --device cpu")
    return torch.device(device)


def set_threads(threads: int | None) -> int:
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            threads = os.cpu_count() or 1
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    return threads
