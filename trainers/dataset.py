"""A dataset in memory (uint8 images, int64 labels) and the file conventions every image source shares:
the image suffixes read and the folder names taken as a test split (trainers.data, trainers.folders,
trainers.images)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from onnxprune.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TEST_SPLITS = ("test", "val", "valid", "validation")


@dataclass
class Dataset:
    """A dataset in memory: uint8 images (N, C, H, W), int64 labels."""

    name: str
    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str = ""
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def limited(self, train: int | None = None, test: int | None = None) -> "Dataset":
        """The first `train` / `test` images (class-balanced prefixes for image folders)."""

        def cut(x, y, n):
            if n is None:
                return x, y
            if n <= 0:
                raise UserError(f"a limit of {n} images leaves nothing to train or test on; give a positive number")
            return x[:n], y[:n]

        tx, ty = cut(self.train_x, self.train_y, train)
        vx, vy = cut(self.test_x, self.test_y, test)
        return Dataset(self.name, self.classes, tx, ty, vx, vy, self.source, self.mean, self.std)

    def with_stats(self) -> "Dataset":
        """Fill `mean`/`std` (per channel, in [0, 1] units) from the training images."""
        if self.mean and self.std:
            return self
        x = self.train_x[:10000]  # plenty for per-channel statistics
        c = x.shape[1]
        total = torch.zeros(c, dtype=torch.float64)
        total_sq = torch.zeros(c, dtype=torch.float64)
        count = 0
        for start in range(0, x.shape[0], 4096):
            chunk = x[start : start + 4096].to(torch.float64) / 255.0
            total += chunk.sum(dim=(0, 2, 3))
            total_sq += chunk.pow(2).sum(dim=(0, 2, 3))
            count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
        mean = total / max(count, 1)
        std = (total_sq / max(count, 1) - mean.pow(2)).clamp_min(1e-12).sqrt()
        self.mean = tuple(round(float(v), 6) for v in mean)
        self.std = tuple(round(float(v), 6) for v in std)
        return self
