"""Images without labels, for distillation: `--data images=PATH`.

PATH is a folder, searched recursively, or a zip; every file ending in an image suffix counts, in
sorted path order; labels and class folders are ignored. When PATH holds both a `train/` and a
`test/` (or `val/`) folder, those are the training and held-out images (the CIFAR-10 zip works as
is). Otherwise the held-out images (for the per-epoch error against the teacher) are spread evenly
over the sorted list, not taken from its tail (a class-folder tree sorted by path would hold out
one class): `--limit-test N` of them, by default a tenth, at most 256, and the rest train.
`--limit-train N` / `--limit-test N` pick N images spread evenly over their split. Only the images
used are decoded.

Decoding (Pillow): RGB, and an image with more pixels than the model's input is resized to the
input's height x width at once (bilinear), so a folder of photos never sits in memory at full
size; when the images kept end up of several sizes, all are resized to the input's. Images of one
size no larger than the input (CIFAR's 32x32) stay as they are and are resized per batch
(trainers.preprocess). A file Pillow cannot read is skipped and counted (`skipped`, in the log);
a folder with no readable image is refused, naming it.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from onnxprune.errors import UserError

from .dataset import IMAGE_SUFFIXES, TEST_SPLITS, Dataset
from .folders import member_names

DEFAULT_HELD_OUT = 256
MIN_IMAGES = 2


@dataclass
class Skipped:
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, name: str, reason: str) -> None:
        self.count += 1
        if len(self.examples) < 3:
            self.examples.append(f"{name} ({reason})")


def list_images(path: Path, spec: str) -> list[str]:
    """Image members of a folder (recursive, relative paths) or a zip, sorted."""
    names = member_names(path, spec)
    found = sorted(n for n in names if n.lower().endswith(IMAGE_SUFFIXES))
    if not found:
        raise UserError(f"--data {spec!r}: no image files ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    return found


def spread(count: int, take: int | None) -> list[int]:
    """`take` positions out of `count`, spread evenly (all of them when `take` is None or larger)."""
    if take is None or take >= count:
        return list(range(count))
    return sorted({int(v) for v in np.linspace(0, count, take, endpoint=False)})


def split_members(members: list[str], limit_train: int | None, limit_test: int | None) -> tuple[list[str], list[str]]:
    """(train, held-out) members: the folder's own train/ and test/ (or val/) splits when it has both,
    else held-out images spread evenly over the list; limits pick images spread evenly too."""
    top = {m.split("/", 1)[0].lower() for m in members if "/" in m}
    test_name = next((t for t in TEST_SPLITS if t in top), None)
    if "train" in top and test_name is not None:
        train = [m for m in members if m.split("/", 1)[0].lower() == "train"]
        test = [m for m in members if m.split("/", 1)[0].lower() == test_name]
    else:
        if len(members) < MIN_IMAGES:
            raise UserError(
                f"{len(members)} image(s): distillation needs at least {MIN_IMAGES} (one to train on, one held out)"
            )
        n_test = limit_test if limit_test is not None else min(DEFAULT_HELD_OUT, max(1, len(members) // 10))
        held = set(spread(len(members), min(n_test, len(members) - 1)))
        test = [m for i, m in enumerate(members) if i in held]
        train = [m for i, m in enumerate(members) if i not in held]
    train = [train[i] for i in spread(len(train), limit_train)]
    test = [test[i] for i in spread(len(test), limit_test)]
    return train, test


def _decode(path: Path, members: list[str], size: tuple[int, int], skipped: Skipped) -> list[np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    height, width = size
    archive = zipfile.ZipFile(path) if path.is_file() else None
    out = []
    try:
        for member in members:
            try:
                raw = archive.read(member) if archive is not None else (path / member).read_bytes()
                with Image.open(io.BytesIO(raw)) as image:
                    image = image.convert("RGB")
                    if image.width * image.height > width * height:
                        image = image.resize((width, height), Image.BILINEAR)
                    out.append(np.asarray(image, dtype=np.uint8))
            except (OSError, ValueError, UnidentifiedImageError, zipfile.BadZipFile) as exc:
                skipped.add(member, type(exc).__name__)
    finally:
        if archive is not None:
            archive.close()
    return out


def _stack(arrays: list[np.ndarray], size: tuple[int, int], resize: bool) -> torch.Tensor:
    """uint8 (N, 3, H, W): as decoded, or every image not of `size` resized to it."""
    from PIL import Image

    if resize:
        arrays = [
            a
            if a.shape[:2] == size
            else np.asarray(Image.fromarray(a).resize((size[1], size[0]), Image.BILINEAR), dtype=np.uint8)
            for a in arrays
        ]
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2)))


def load_images(
    spec: str,
    path: Path,
    size: tuple[int, int],
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
    log=None,
) -> tuple[Dataset, Skipped]:
    """The unlabeled images of `path` as a Dataset with labels -1 (module docstring)."""
    members = list_images(path, spec)
    train_members, test_members = split_members(members, limit_train, limit_test)
    if not train_members or not test_members:
        raise UserError(f"--data {spec!r}: {path} leaves no image to {'train on' if not train_members else 'hold out'}")
    skipped = Skipped()
    if log:
        log(f"decoding {len(train_members) + len(test_members)} of the {len(members)} images in {path}")
    arrays_train = _decode(path, train_members, size, skipped)
    arrays_test = _decode(path, test_members, size, skipped)
    if not arrays_train and not arrays_test:
        raise UserError(
            f"--data {spec!r}: none of the {len(train_members) + len(test_members)} image files read in {path} could be "
            f"decoded (e.g. {skipped.examples[0] if skipped.examples else '?'})"
        )
    if not arrays_train or not arrays_test:
        raise UserError(
            f"--data {spec!r}: after skipping {skipped.count} unreadable file(s), {path} leaves no image to "
            f"{'train on' if not arrays_train else 'hold out'}"
        )
    resize = len({a.shape for a in arrays_train + arrays_test}) > 1  # several sizes: all to the input's
    train_x, test_x = _stack(arrays_train, size, resize), _stack(arrays_test, size, resize)
    data = Dataset(
        f"images:{path.name}",
        [],
        train_x,
        torch.full((train_x.shape[0],), -1, dtype=torch.int64),
        test_x,
        torch.full((test_x.shape[0],), -1, dtype=torch.int64),
        source=str(path),
    )
    return data, skipped
