"""Training batches: shuffled, augmented (4-pixel zero pad + random crop, horizontal flip) and
normalised on whole uint8 tensors at once, so data loading is never the bottleneck."""

from __future__ import annotations

from typing import Iterator

import torch


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop after zero padding, and horizontal flip, of a uint8 (B, C, H, W) batch at once.

    One `torch.gather` over the flattened padded images picks every output pixel: the crop
    offsets and the flip only change the index, so there is no loop over images.
    """
    b, c, h, w = x.shape
    width = w + 2 * pad
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)).reshape(b, c, -1)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    rows = oy[:, None] + torch.arange(h)[None, :]
    ar = torch.arange(w)[None, :]
    cols = ox[:, None] + torch.where(flips[:, None], w - 1 - ar, ar)
    index = (rows[:, :, None] * width + cols[:, None, :]).reshape(b, 1, h * w).to(x.device)
    return torch.gather(padded, 2, index.expand(b, c, h * w)).reshape(b, c, h, w)


class Batches:
    """Shuffled, augmented, normalised batches from a uint8 tensor dataset (no per-image loops)."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        mean,
        std,
        *,
        device="cpu",
        train: bool = False,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
        augment: bool = True,
        transform=None,
    ):
        self.x = x.to(device)
        self.y = y.to(device)
        self.batch_size = batch_size
        self.train = train
        self.augment = augment
        self.generator = generator
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.transform = transform  # uint8 batch -> model input (distillation), instead of mean/std
        m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * s)
        self.shift = -m / s

    def __len__(self) -> int:
        n = self.x.shape[0]
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest > 1 or (rest == 1 and not self.train) or full == 0 else 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.x.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.train else None
        for k in range(len(self)):
            if order is not None:
                idx = order[k * self.batch_size : (k + 1) * self.batch_size].to(self.device)
                xb, yb = self.x[idx], self.y[idx]
                if self.augment:
                    xb = augment_batch(xb, self.generator)
            else:
                xb = self.x[k * self.batch_size : (k + 1) * self.batch_size]
                yb = self.y[k * self.batch_size : (k + 1) * self.batch_size]
            xf = self.transform(xb) if self.transform is not None else xb.to(torch.float32) * self.scale + self.shift
            if self.channels_last:
                xf = xf.contiguous(memory_format=torch.channels_last)
            yield xf, yb
