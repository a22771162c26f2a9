"""Tiny graphs and images for the distillation tests: a teacher exported from torch (random weights
scaled so its outputs vary from image to image), its FLOPs-0.5 shrink keeping the largest-L1
channels, and folders of textured images without labels."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn


class TwoHeads(nn.Module):
    """Class scores (Softmax) and a 4-value regression head."""

    def __init__(self, channels: int = 1, bias: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1, bias=bias),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2, bias=bias),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classes = nn.Linear(32, 5)
        self.boxes = nn.Linear(32, 4)

    def forward(self, x):
        f = self.pool(self.body(x)).flatten(1)
        return torch.softmax(self.classes(f), dim=1), self.boxes(f)


class Nhwc(nn.Module):
    """Channels-last input, as keras2onnx graphs take it (`rank3`: the logits as (N, 1, 6), for a refusal)."""

    def __init__(self, rank3: bool = False):
        super().__init__()
        self.rank3 = rank3
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 24, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(24, 6),
        )

    def forward(self, x):
        out = self.net(x.permute(0, 3, 1, 2))
        return out.unsqueeze(1) if self.rank3 else out


class SequenceFirst(nn.Module):
    """A CRNN-like head: (time, batch, classes) logits, the batch on axis 1."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d((8, 1))
        )
        self.head = nn.Linear(32, 7)

    def forward(self, x):
        f = self.body(x).squeeze(2).permute(2, 0, 1)  # (W, N, C)
        return self.head(f)


def _scale_weights(module: nn.Module, factor: float) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() > 1:
                p.mul_(factor)
    return module


def export(module: nn.Module, shape, path: Path, outputs=("logits",)) -> Path:
    """Legacy export with a dynamic batch on every input and output (axis 1 for a sequence-first one)."""
    module = module.eval()
    buffer = io.BytesIO()
    axes = {"input": {0: "batch"}}
    for name in outputs:
        axes[name] = {1: "batch"} if isinstance(module, SequenceFirst) else {0: "batch"}
    torch.onnx.export(
        module,
        (torch.randn(*shape),),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=list(outputs),
        opset_version=17,
        dynamic_axes=axes,
    )
    path.write_bytes(buffer.getvalue())
    return path


def teacher_and_student(kind: str, folder: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """(teacher.onnx, student.onnx, shrink report .json) for `kind`: two_heads | nhwc | gray | no_bias | sequence."""
    from onnxprune import shrink

    torch.manual_seed(seed)
    if kind == "two_heads":
        module, shape, outputs = TwoHeads(3), (1, 3, 16, 16), ("scores", "boxes")
    elif kind == "gray":
        module, shape, outputs = TwoHeads(1), (1, 1, 16, 16), ("scores", "boxes")
    elif kind == "no_bias":  # convolutions without a bias: the refit gives them one
        module, shape, outputs = TwoHeads(1, bias=False), (1, 1, 16, 16), ("scores", "boxes")
    elif kind == "nhwc":
        module, shape, outputs = Nhwc(), (1, 16, 16, 3), ("logits",)
    else:
        module, shape, outputs = SequenceFirst(), (1, 1, 8, 24), ("logits",)
    _scale_weights(module, 2.0)
    teacher = export(module, shape, folder / f"{kind}.onnx", outputs)
    pruned, report = shrink(str(teacher), mode="FA", target=0.5, seed=seed, init="keep", criterion="l1")
    student = folder / f"{kind}.pruned.onnx"
    onnx.save(pruned, student)
    report_path = folder / f"{kind}.report.json"
    report_path.write_text(json.dumps(report, default=str))
    return teacher, student, report_path


def texture_images(folder: Path, count: int = 48, size: int = 16, seed: int = 0, broken: int = 0) -> Path:
    """`count` PNGs of random smooth textures (no labels), and `broken` files that are not images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
        noise = rng.integers(-30, 31, (size, size, 3))
        pixels = np.clip(np.asarray(image, dtype=np.int64) + noise, 0, 255).astype(np.uint8)
        sub = folder / ("a" if i % 2 else "b")  # searched recursively
        sub.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(sub / f"{i:04d}.png")
    for i in range(broken):
        (folder / f"broken{i}.jpg").write_bytes(b"not an image at all")
    return folder
