"""`onnxprune quantize MODEL -o INT8.onnx --calibrate DATA`: static int8 quantization (onnxruntime).

Calibration images come from `train`'s data loaders (torch, imported only here and only for a
dataset spec) or from a .npy file of float32 images already normalised for the model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from onnxprune.cli.app import app, console, emit_json, input_shape_option, parse_input_shapes
from onnxprune.errors import UserError
from onnxprune.measure.quantize import DEFAULT_CALIBRATION_IMAGES, FORMATS, MIN_CALIBRATION_IMAGES

if TYPE_CHECKING:  # pragma: no cover  (imported where used: `--help` loads this module)
    import numpy as np
    import onnx

CALIBRATE_HELP = (
    "calibration images: cifar10 | cifar10=PATH | cifar100=PATH | folder=PATH (as train's --data; "
    "the first training images, class-balanced) or IMAGES.npy (float32 N x C x H x W, normalised)"
)


def _normalisation(model: onnx.ModelProto) -> tuple[list[float], list[float]] | None:
    """The per-channel mean/std `train` records in the model's metadata, if any."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        return json.loads(props["onnxprune.mean"]), json.loads(props["onnxprune.std"])
    except (KeyError, ValueError):
        return None


def load_calibration_images(spec: str, count: int, model: onnx.ModelProto) -> np.ndarray:
    """`count` float32 images normalised like `train` does (the model's recorded mean/std, else the
    slice's own statistics)."""
    import numpy as np

    if spec.lower().endswith(".npy"):
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"--calibrate {spec}: no such file")
        try:
            images = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"--calibrate {spec}: not a readable .npy array ({exc})") from None
        if images.dtype.kind != "f":
            raise UserError(f"--calibrate {spec}: {images.dtype} images; give float32 images, normalised for the model")
        return images[:count].astype(np.float32)
    from onnxprune.cli.commands.train import require_torch

    require_torch()
    from trainers.data import load_dataset, parse_data_spec

    kind, _ = parse_data_spec(spec)
    classes = {"cifar10": 10, "cifar100": 100}.get(kind, 1)
    dataset = load_dataset(spec, train_per_class=math.ceil(count / classes), test_per_class=1).limited(train=count)
    stats = _normalisation(model)
    if stats is None:
        dataset = dataset.with_stats()
        stats = (list(dataset.mean), list(dataset.std))
    mean = np.asarray(stats[0], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(stats[1], np.float32).reshape(1, -1, 1, 1)
    return ((dataset.train_x.numpy().astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def quantize_file(
    model: str,
    output: str,
    calibrate: Optional[str],
    *,
    fmt: str = "qdq",
    per_channel: bool = False,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    input_shapes: dict | None = None,
):
    """Everything `quantize` does but printing (for `pipeline ... --quantize` too): checks, calibration
    images, quantization, the atomic write. Returns (summary dict, QuantizeResult)."""
    from onnxprune.measure.quantize import quantize, refuse_unquantizable
    from onnxprune.read.io import load_model
    from onnxprune.read.save import check_outputs_writable, save_outputs

    if not calibrate:
        raise UserError(
            "--calibrate DATA is required: static quantization needs calibration images "
            "(e.g. --calibrate cifar10 or --calibrate images.npy)"
        )
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if calibration_images < MIN_CALIBRATION_IMAGES:
        raise UserError(
            f"--calibration-images {calibration_images}: at least {MIN_CALIBRATION_IMAGES} images are "
            f"needed for meaningful activation ranges"
        )
    check_outputs_writable([("-o", output)], model)
    proto = load_model(model)
    refuse_unquantizable(proto, model)
    images = load_calibration_images(calibrate, calibration_images, proto)
    if len(images) < MIN_CALIBRATION_IMAGES:
        raise UserError(
            f"--calibrate {calibrate}: only {len(images)} images; at least {MIN_CALIBRATION_IMAGES} are needed"
        )
    result = quantize(proto, images, fmt=fmt, per_channel=per_channel, input_shapes=input_shapes, where=model)
    save_outputs([(output, result.model)], model)
    summary = {
        "model": model,
        "output": output,
        "format": fmt,
        "per_channel": per_channel,
        "calibrate": calibrate,
        **result.summary(),
    }
    return summary, result


@app.command("quantize")
def quantize_command(
    model: str = typer.Argument(..., help="float32 ONNX model (never modified)"),
    output: str = typer.Option(..., "-o", "--output", help="where to write the int8 model"),
    calibrate: Optional[str] = typer.Option(None, "--calibrate", metavar="DATA", help=CALIBRATE_HELP),
    fmt: str = typer.Option(
        "qdq",
        "--format",
        help="qdq (QuantizeLinear/DequantizeLinear pairs around float ops) "
        "| qoperator (QLinearConv, QLinearMatMul, ...)",
    ),
    per_channel: bool = typer.Option(False, "--per-channel", help="one weight scale per output channel"),
    calibration_images: int = typer.Option(
        DEFAULT_CALIBRATION_IMAGES,
        "--calibration-images",
        metavar="N",
        help=f"images to calibrate on (at least {MIN_CALIBRATION_IMAGES})",
    ),
    input_shape: Optional[List[str]] = input_shape_option(),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON on stdout"),
) -> None:
    """Quantize MODEL to int8 (static, onnxruntime.quantization), calibrated on DATA's images."""
    shapes = parse_input_shapes(input_shape, model)
    summary, result = quantize_file(
        model,
        output,
        calibrate,
        fmt=fmt,
        per_channel=per_channel,
        calibration_images=calibration_images,
        input_shapes=shapes,
    )
    if json_out:
        emit_json(summary)
        return
    from rich.table import Table

    table = Table(title=f"{model} → {output} (int8, {fmt}{', per-channel' if per_channel else ''})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("calibration", f"{result.images} images from {calibrate}")
    table.add_row(
        "model bytes",
        f"{result.float_bytes:,} → {result.int8_bytes:,} ({result.int8_bytes / max(result.float_bytes, 1):.2f}x)",
    )
    table.add_row(
        "agreement",
        f"int8 top-1 equals float on {100 * result.agreement:.1f}% of the calibration "
        f"images (max |diff| {result.max_abs_diff:.3g})",
    )
    console.print(table)
