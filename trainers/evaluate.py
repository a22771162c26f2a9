"""Test accuracy of a classifier (its own or after `train`), the data a training run loads, and the
check that a model fits that data before any step."""

from __future__ import annotations

from typing import Callable

import onnx
import torch
import torch.nn.functional as F

from onnxprune.errors import UserError
from onnxprune.read.io import ModelLike, load_model

from .convert import OnnxModule, convert
from .data import Batches, Dataset, load_dataset, parse_data_spec, per_class_for
from .recipes import resolve_config, resolve_device, set_threads
from .runstate import first_input_shape


def evaluate(module: torch.nn.Module, batches: Batches) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over `batches`, in eval mode."""
    was_training = module.training
    module.eval()
    total_loss = torch.zeros((), dtype=torch.float64)
    correct = 0
    count = 0
    with torch.no_grad():
        for xb, yb in batches:
            logits = module(xb)
            total_loss += F.cross_entropy(logits, yb, reduction="sum").double().cpu()
            correct += int((logits.argmax(1) == yb).sum())
            count += yb.shape[0]
    module.train(was_training)
    return float(total_loss) / max(count, 1), correct / max(count, 1)


def _load_data(spec: str, config: dict, log: Callable[[str], None] | None) -> Dataset:
    kind, _path = parse_data_spec(spec)
    classes = 100 if kind == "cifar100" else 10
    data = load_dataset(
        spec,
        train_per_class=per_class_for(config.get("limit_train"), classes),
        test_per_class=per_class_for(config.get("limit_test"), classes),
        log=log,
    )
    data = data.limited(config.get("limit_train"), config.get("limit_test"))
    if data.train_x.shape[0] == 0 or data.test_x.shape[0] == 0:
        raise UserError(f"--data {spec!r}: no training or no test images")
    return data.with_stats()


KNOWN_DATA = {"cifar10": (10, (3, 32, 32)), "cifar100": (100, (3, 32, 32))}


def _check_fit(module: OnnxModule, data: Dataset | None, where: str, spec: str | None = None) -> None:
    """The model fits the data: checked on the spec alone before any image is decoded, then on the data."""
    classes, have = (data.num_classes, tuple(data.image_shape)) if data is not None else (None, None)
    if data is None and spec is not None:
        classes, have = KNOWN_DATA.get(parse_data_spec(spec)[0], (None, None))
    want = tuple(module.input_shape[1:])
    if have is not None and want != have:
        raise UserError(
            f"{where}: the model takes inputs of {'x'.join(map(str, want))}, the dataset's images are "
            f"{'x'.join(map(str, have))}; use a model made for this dataset"
        )
    with torch.no_grad():
        was = module.training
        module.eval()
        out = module(module.sample_input(1))
        module.train(was)
    if isinstance(out, tuple) or out.dim() != 2:
        raise UserError(
            f"{where}: the model must output one (batch, classes) tensor of logits to be trained with cross-entropy"
        )
    if classes is not None and out.shape[1] != classes:
        raise UserError(f"{where}: the model has {out.shape[1]} outputs, the dataset {classes} classes")


def evaluate_model(
    model: ModelLike,
    data: str | Dataset = "cifar10",
    *,
    recipe: str = "cpu",
    limit_train: int | None = None,
    limit_test: int | None = None,
    batch_size: int = 256,
    device: str = "auto",
    threads: int | None = None,
    input_shapes: dict[str, list[int]] | None = None,
) -> dict[str, float]:
    """Test accuracy/loss of an ONNX model as is (normalised like `train` with the same limits)."""
    config = resolve_config(recipe, limit_train=limit_train, limit_test=limit_test)
    proto = load_model(model)
    dev = resolve_device(device)
    set_threads(threads)
    if isinstance(data, Dataset):
        dataset = data.limited(config.get("limit_train"), config.get("limit_test")).with_stats()
    else:
        dataset = _load_data(data, config, None)
    module = convert(proto, input_shape=first_input_shape(proto, input_shapes))
    _check_fit(module, dataset, str(model) if not isinstance(model, onnx.ModelProto) else "model")
    module.to(dev)
    batches = Batches(dataset.test_x, dataset.test_y, batch_size, dataset.mean, dataset.std, device=dev)
    loss, acc = evaluate(module, batches)
    return {"accuracy": acc, "test_loss": loss}
