"""Helpers for the trainer's tests: onnxruntime comparisons, tiny CNNs as ONNX, tiny datasets."""

from __future__ import annotations

import io
import pickle
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from .convert import OnnxModule, convert, export_onnx
from .dataset import Dataset

# ---------------------------------------------------------------------- comparisons with onnxruntime

ATOL = 1e-5
RTOL = 1e-5


def run_ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(actual - expected).max()) <= atol * scale + rtol * scale, (
        f"max abs diff {np.abs(actual - expected).max():.3g}"
    )


def round_trip(model: onnx.ModelProto, tmp_path: Path, shape=(1, 3, 32, 32), name="rt.onnx") -> "OnnxModule":
    """torch(eval) == ORT(source) and ORT(exported) == ORT(source); the export takes batch 3 too."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = run_ort(model, x)
    module = convert(model).eval()
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    assert_close(got, expected)
    exported = export_onnx(module, None, tmp_path / name)
    assert [o.name for o in exported.graph.output] == [o.name for o in model.graph.output]
    assert exported.graph.input[0].name == model.graph.input[0].name
    assert_close(run_ort(exported, x), expected)
    x3 = np.random.default_rng(1).standard_normal((3,) + tuple(shape[1:])).astype(np.float32)
    with torch.no_grad():
        assert_close(run_ort(exported, x3), module(torch.from_numpy(x3)).numpy())
    return module


def only_bn_buffers(module: nn.Module) -> None:
    """Every weight is a Parameter: besides BatchNorm statistics, buffers hold scalars at most."""
    others = [
        n
        for n, b in module.named_buffers()
        if not n.endswith(("running_mean", "running_var", "num_batches_tracked")) and b.numel() > 1
    ]
    assert not others, others


# ------------------------------------------------------------------------------------- builders


def export_torch(
    module: nn.Module,
    exporter: str = "legacy",
    *,
    shape=(1, 3, 32, 32),
    keep_bn: bool = True,
    dynamic_batch: bool = False,
    opset: int | None = None,
) -> onnx.ModelProto:
    """Export `module` (eval mode) with the legacy (`dynamo=False`) or the dynamo exporter."""
    module = module.eval()
    x = torch.randn(*shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            import logging

            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            kwargs = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamic_batch else {}
            program = torch.onnx.export(
                module,
                (x,),
                dynamo=True,
                input_names=["input"],
                output_names=["logits"],
                verbose=False,
                optimize=not keep_bn,
                opset_version=opset or 18,
                **kwargs,
            )
            return program.model_proto
        buffer = io.BytesIO()
        torch.onnx.export(
            module,
            (x,),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            opset_version=opset or 17,
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None,
            training=torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL,
        )
        return onnx.load_from_string(buffer.getvalue())


def calibrate(module: nn.Module, shape=(8, 3, 32, 32), steps: int = 3, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics."""
    torch.manual_seed(seed)
    module.train()
    with torch.no_grad():
        for _ in range(steps):
            module(torch.randn(*shape))
    return module.eval()


def tiny_classifier(bn: bool = True, width: int = 16, classes: int = 10) -> nn.Module:
    def block(c, o):
        return [nn.Conv2d(c, o, 3, padding=1)] + ([nn.BatchNorm2d(o)] if bn else []) + [nn.ReLU()]

    return nn.Sequential(
        *block(3, width),
        nn.MaxPool2d(2),
        *block(width, 2 * width),
        nn.MaxPool2d(2),
        *block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, classes),
    )


def dropout_model(channels: int = 8, classes: int = 10, size: int = 8, seed: int = 0) -> onnx.ModelProto:
    """Conv -> BN -> Relu -> Dropout -> GlobalAveragePool -> Flatten -> Gemm, built by hand."""
    rng = np.random.default_rng(seed)

    def init(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        init("w", channels, 3, 3, 3),
        init("b", channels),
        numpy_helper.from_array(np.ones(channels, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(channels, np.float32), "beta"),
        numpy_helper.from_array(np.zeros(channels, np.float32), "mean"),
        numpy_helper.from_array(np.ones(channels, np.float32), "var"),
        numpy_helper.from_array(np.array(0.25, np.float32), "ratio"),
        init("fc_w", classes, channels),
        init("fc_b", classes),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node(
            "BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"], name="bn", epsilon=1e-5, momentum=0.9
        ),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Dropout", ["r", "ratio"], ["d"], name="drop"),
        helper.make_node("GlobalAveragePool", ["d"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "dropout_net",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def synthetic_dataset(n_train: int = 96, n_test: int = 40, classes: int = 10, size: int = 8, seed: int = 0) -> Dataset:
    """Random uint8 images whose mean colour depends on the class (learnable in a few steps)."""
    gen = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.arange(n) % classes
        base = (y.float() / classes * 200 + 20).view(-1, 1, 1, 1)
        noise = torch.randint(-20, 21, (n, 3, size, size), generator=gen).float()
        x = (base + noise).clamp(0, 255).to(torch.uint8)
        return x, y

    tx, ty = make(n_train)
    vx, vy = make(n_test)
    return Dataset("synthetic", [f"c{i}" for i in range(classes)], tx, ty, vx, vy, source="synthetic")


def write_cifar_pickles(
    root: Path, *, hundred: bool = False, per_batch: int = 6, n_test: int = 5, seed: int = 0, as_tar: bool = False
) -> Path:
    """A tiny `cifar-10-batches-py/` (or `cifar-100-python/`) under `root`; returns it (or the .tar.gz)."""
    rng = np.random.default_rng(seed)
    count = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n, offset):
        labels = [(offset + i) % count for i in range(n)]
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        key = b"fine_labels" if hundred else b"labels"
        extra = {b"coarse_labels": [lab % 20 for lab in labels]} if hundred else {}
        return {b"data": data, key: labels, b"batch_label": b"x", **extra}

    files: dict[str, dict] = {}
    if hundred:
        files["train"] = batch(per_batch * 5, 0)
        files["test"] = batch(n_test, 3)
        files["meta"] = {
            b"fine_label_names": [f"f{i}".encode() for i in range(count)],
            b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
        }
    else:
        for i in range(1, 6):
            files[f"data_batch_{i}"] = batch(per_batch, i)
        files["test_batch"] = batch(n_test, 7)
        files["batches.meta"] = {
            b"label_names": [
                c.encode()
                for c in ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
            ]
        }
    for name, payload in files.items():
        with open(folder / name, "wb") as handle:
            pickle.dump(payload, handle)
    if as_tar:
        tar_path = root / (folder.name + ".tar.gz")
        with tarfile.open(tar_path, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
        return tar_path
    return folder


def write_image_folder(
    root: Path,
    classes: Sequence[str] = ("a", "b", "c"),
    per_class: int = 4,
    n_test: int = 2,
    size: int = 8,
    suffix: str = ".png",
    as_zip: bool = False,
    seed: int = 0,
) -> Path:
    """`root/train/<class>/NNNN.png` and `root/test/...` with class-coloured images (or a zip of them)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    entries: dict[str, bytes] = {}
    for split, count in (("train", per_class), ("test", n_test)):
        for label, cls in enumerate(classes):
            for i in range(count):
                pixels = np.full((size, size, 3), 30 + 60 * label, dtype=np.uint8)
                pixels[0, 0] = rng.integers(0, 256, 3, dtype=np.uint8)
                pixels[0, 1] = (i, label, 7)  # identity stamp: which image this is
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG" if suffix == ".png" else "JPEG", quality=100)
                entries[f"{split}/{cls}/{i:04d}{suffix}"] = buffer.getvalue()
    if as_zip:
        path = root.with_suffix(".zip") if root.suffix != ".zip" else root
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
        return path
    for name, data in entries.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def deep_cnn(width: int = 8, depth: int = 6, classes: int = 10) -> nn.Module:
    """A plain VGG-like CNN with BatchNorm: deep enough that, folded and re-initialised, SGD at the cpu
    recipe's learning rate does not train it without normalisation (issue 19's VGG-16, in small)."""
    layers: list[nn.Module] = []
    channels = 3
    for i in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        channels = width
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 32), nn.ReLU(), nn.Linear(32, classes)
    )


def folded_cnn(size: int = 16, seed: int = 0, reinit: bool = True, classes: int = 10) -> onnx.ModelProto:
    """`deep_cnn` exported for inference (BatchNorm folded into the convolutions, static batch 1) and,
    like `shrink`'s default `--init reinit`, re-initialised."""
    from onnxprune.prune.initialize import reinitialize

    torch.manual_seed(seed)
    proto = export_torch(
        calibrate(deep_cnn(classes=classes), shape=(8, 3, size, size)),
        "legacy",
        keep_bn=False,
        shape=(1, 3, size, size),
    )
    assert not {"BatchNormalization"} & {n.op_type for n in proto.graph.node}
    if reinit:
        reinitialize(proto, np.random.default_rng(seed))
    return proto
