"""Training checkpoints: written atomically every epoch, loaded with `weights_only=True`, refused
with one clear line when unreadable or foreign."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import torch

from onnxprune.errors import UserError

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1


def save_checkpoint(folder: Path, state: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CHECKPOINT_NAME
    tmp = folder / f".{CHECKPOINT_NAME}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        raise UserError(
            f"{path}: the checkpoint is unreadable ({type(exc).__name__}); delete it, or train without --resume"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise UserError(f"{path}: not an onnxprune training checkpoint; delete it, or train without --resume")
    return state


RESUME_KEYS = (
    "model_sha",
    "data",
    "optimizer",
    "schedule",
    "lr",
    "weight_decay",
    "batch_size",
    "epochs",
    "seed",
    "limit_train",
    "limit_test",
    "augment",
    "norm",
)


def model_fingerprint(proto: onnx.ModelProto) -> str:
    import hashlib

    return hashlib.sha1(proto.SerializeToString()).hexdigest()[:16]
