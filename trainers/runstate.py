"""What a training run and a distillation run share: the input shape check, checkpoints and resume,
and the JSONL log (created with the first epoch's line, rewritten from the history on resume)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch

from onnxprune.errors import UserError

from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_NAME, load_checkpoint, save_checkpoint


def first_input_shape(proto: onnx.ModelProto, input_shapes: dict[str, list[int]] | None) -> list[int] | None:
    """`--input-shape` values -> the shape the converter gives the first input (the image input).

    A symbolic dimension other than the batch, with no shape given, is refused naming the option to
    type; so is a shape for an input the model lacks or that training cannot fix (not the first)."""
    from onnxprune.read.shapes import input_shape_hint

    initializers = {i.name for i in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in initializers]
    names = [v.name for v in inputs]
    given = dict(input_shapes or {})
    for name, dims in given.items():
        if name not in names:
            raise UserError(f"--input-shape {name}=...: the model has no input {name!r}; its inputs are {names}")
        if name != names[0]:
            raise UserError(f"--input-shape {name}=...: training fixes the first input's shape only ({names[0]!r})")
        have = inputs[0].type.tensor_type.shape.dim
        if len(have) and len(have) != len(dims):
            raise UserError(f"--input-shape {name}: the model's input has rank {len(have)}, got {len(dims)} dims")
    for value in inputs:
        if value.name in given:
            continue
        if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in list(value.type.tensor_type.shape.dim)[1:]):
            raise UserError(
                f"input {value.name!r} has a symbolic dimension other than the batch; give it with "
                f"--input-shape {input_shape_hint(value)}"
            )
    return given.get(names[0]) if names else None


def open_checkpoint(
    checkpoint, resume: bool, config: dict, keys: tuple[str, ...], say
) -> tuple[Path | None, dict | None]:
    """(folder, saved state or None); a resume with other settings is refused, naming the first."""
    ckpt_dir = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt_dir is None:
        raise UserError("--resume needs --checkpoint DIR (the folder the interrupted run saved into)")
    if ckpt_dir is not None and ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise UserError(f"--checkpoint {ckpt_dir}: is a file; give a folder")
    if not resume:
        return ckpt_dir, None
    if not (ckpt_dir / CHECKPOINT_NAME).exists():
        if say:
            say(f"no checkpoint in {ckpt_dir} yet: starting from epoch 1")
        return ckpt_dir, None
    state = load_checkpoint(ckpt_dir / CHECKPOINT_NAME)
    saved = state.get("config", {})
    for key in keys:
        if saved.get(key) != config.get(key):
            raise UserError(
                f"{ckpt_dir / CHECKPOINT_NAME}: made with {key}={saved.get(key)!r}, this run has "
                f"{key}={config.get(key)!r}; resume with the same settings or use a new --checkpoint folder"
            )
    return ckpt_dir, state


def restore(state: dict, module, opt, generator: torch.Generator, dev: torch.device, ckpt_dir: Path):
    """Load a checkpoint into the run: (start epoch, optimizer step, history, seconds trained before)."""
    try:
        module.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        step = int(state["scheduler"]["step"])
        history = list(state.get("history", []))
        prior_seconds = float(state.get("train_seconds", 0.0))
        torch.set_rng_state(state["rng"]["torch"])
        generator.set_state(state["rng"]["generator"])
        if dev.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(list(state["rng"]["cuda"]))
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{ckpt_dir / CHECKPOINT_NAME}: does not fit this model or is incomplete "
            f"({first[:120]}); delete it, or train without --resume"
        ) from None
    return start_epoch, step, history, prior_seconds


def save(
    ckpt_dir: Path,
    *,
    epoch: int,
    module,
    opt,
    config: dict,
    keys,
    step: int,
    total: int,
    generator,
    dev,
    history,
    seconds,
    extra=None,
) -> None:
    rng = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if dev.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    save_checkpoint(
        ckpt_dir,
        {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "model": module.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": {"name": config["schedule"], "step": step, "total": total},
            "rng": rng,
            "config": {k: config.get(k) for k in keys},
            "history": history,
            "train_seconds": seconds,
            **(extra or {}),
        },
    )


class EpochLog:
    """The JSONL log: nothing on disk until the first epoch's line; a resumed run rewrites its history."""

    def __init__(self, path: Path | None, history: list[dict]):
        self.path = path
        self.started = bool(history)
        if path is not None and history:
            with open(path, "w") as handle:
                for record in history:
                    handle.write(json.dumps(record) + "\n")

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        with open(self.path, "a" if self.started else "w") as handle:
            handle.write(json.dumps(record) + "\n")
        self.started = True
