"""Datasets for training: CIFAR-10/100 and image folders, held in memory as uint8 tensors.

`--data` specs:

* `cifar10` -- found by `datapath.locate_cifar10`: `$ONNXPRUNE_CIFAR10`, else `cifar10-jpeg.zip`,
  `cifar-10-python.tar.gz` or `cifar-10-batches-py/` in `$ONNXPRUNE_DATA`, `~/.cache/onnxprune/`
  or the checkout's `../shared/datasets/`;
* `cifar10=PATH` -- that zip elsewhere, an image folder, the pickled `cifar-10-batches-py/` folder
  (or its parent, or `cifar-10-python.tar.gz`);
* `cifar100=PATH` -- the pickled `cifar-100-python/` folder (or its parent, or the .tar.gz);
* `folder=PATH` -- any image folder, a directory or a zip: `<split>/<class>/*.png|jpg`, with the
  splits `train` and `test` (or `val`).

Images are decoded once with Pillow (two processes) and cached as uint8 `.npy` files under
`$ONNXPRUNE_CACHE` (default `~/.cache/onnxprune/`), keyed by the source's path, size and mtime,
so a changed file is decoded again; later loads read the arrays in well under a second.

Image folders are ordered class-interleaved (the first image of every class, then the second,
...), so any prefix -- `--limit-train N` -- is class-balanced, and decoding only the first `k`
images per class yields exactly that prefix without decoding the rest.

`Batches` yields normalised float batches; augmentation (4-pixel zero pad + random crop,
horizontal flip) is one vectorised gather per batch on the whole uint8 batch, never a
per-image Python loop, driven by a `torch.Generator` so runs are reproducible.

Modules: this one (specs, readers, `load_dataset`), trainers.cache (the on-disk cache),
trainers.batches (`Batches`, augmentation).
"""

from __future__ import annotations

import math
import os
import pickle
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from onnxprune.errors import UserError

from ._decode import decode_images
from .batches import Batches, augment_batch
from .cache import cache_dir, cache_path, read_cache, write_cache
from .datapath import SHARED_DATASETS, find_cifar10, locate_cifar10

__all__ = [
    "Dataset",
    "Batches",
    "load_dataset",
    "parse_data_spec",
    "cache_dir",
    "DEFAULT_CIFAR10",
    "CIFAR10_CLASSES",
    "augment_batch",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
# `--data cifar10` without a path: $ONNXPRUNE_CIFAR10, $ONNXPRUNE_DATA, ~/.cache/onnxprune, the shared folder
DEFAULT_CIFAR10 = find_cifar10() or (SHARED_DATASETS / "cifar10-jpeg.zip").resolve()
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TEST_SPLITS = ("test", "val", "valid", "validation")
PARALLEL_MIN = 4000
DATA_KINDS = (
    "cifar10",
    "cifar100",
    "folder",
    "images",
)  # images: no labels, distillation only (trainers.images)  # fewer images than this decode in-process (process start-up would cost more)


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


# ------------------------------------------------------------------------------------------ specs


def parse_data_spec(spec: str) -> tuple[str, Path]:
    """`cifar10`, `cifar10=PATH`, `cifar100=PATH`, `folder=PATH`, `images=PATH` -> (kind, path)."""
    kind, sep, raw = spec.partition("=")
    kind = kind.strip().lower().replace("-", "")
    if kind not in DATA_KINDS:
        raise UserError(
            f"--data {spec!r}: expected cifar10, cifar10=PATH, cifar100=PATH, folder=PATH or images=PATH (with --teacher)"
        )
    if not sep:
        if kind != "cifar10":
            raise UserError(f"--data {spec!r}: give the dataset's location, e.g. {kind}=PATH")
        path = locate_cifar10(spec)  # resolved now: the environment may have changed since import
    else:
        if not raw.strip():
            raise UserError(f"--data {spec!r}: the path after '=' is empty")
        path = Path(raw.strip()).expanduser()
    if not path.exists():
        raise UserError(f"--data {spec!r}: dataset path {path} does not exist")
    return kind, path


def load_dataset(
    spec: str = "cifar10",
    *,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    use_cache: bool = True,
    workers: int | None = None,
    log=None,
) -> Dataset:
    """Load a dataset spec. `*_per_class` decode only the first k images per class of an image
    folder (the class-balanced prefix); a full decode is cached, and a cached full decode serves
    limited requests too."""
    kind, path = parse_data_spec(spec)
    if kind == "images":
        raise UserError(
            f"--data {spec!r}: these images have no labels; distil from the original model with --teacher "
            f"ORIGINAL.onnx, or give a labelled dataset"
        )
    if kind == "cifar100":
        return _load_pickled(path, hundred=True, spec=spec).limited(
            None if train_per_class is None else train_per_class * 100,
            None if test_per_class is None else test_per_class * 100,
        )
    pickled = _find_pickled_cifar10(path)
    if kind == "cifar10" and pickled is not None:
        data = _load_pickled(pickled, hundred=False, spec=spec)
        return data.limited(
            None if train_per_class is None else train_per_class * 10,
            None if test_per_class is None else test_per_class * 10,
        )
    data = _load_image_folder(path, spec, train_per_class, test_per_class, use_cache, workers, log)
    if kind == "cifar10" and data.classes != CIFAR10_CLASSES:
        raise UserError(f"--data {spec!r}: the classes {data.classes[:4]}... are not CIFAR-10's; use folder=PATH")
    data.name = kind if kind == "cifar10" else f"folder:{path.name}"
    return data


# ---------------------------------------------------------------------------------------- pickles


def _find_pickled_cifar10(path: Path) -> Path | None:
    if path.is_file() and (path.name.endswith(".tar.gz") or path.name.endswith(".tgz")):
        return path
    if path.is_dir():
        if (path / "data_batch_1").is_file():
            return path
        if (path / "cifar-10-batches-py" / "data_batch_1").is_file():
            return path / "cifar-10-batches-py"
    return None


def _unpickle(handle) -> dict:
    try:
        return pickle.load(handle, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - any junk in a pickle file is bad input
        raise ValueError(f"not a CIFAR pickle ({type(exc).__name__})") from None


def _get(d: dict, key: str):
    return d[key.encode()] if key.encode() in d else d[key]


def _load_pickled(path: Path, *, hundred: bool, spec: str) -> Dataset:
    """The python-pickle CIFAR format: a folder, its parent, or the .tar.gz."""
    folder_name = "cifar-100-python" if hundred else "cifar-10-batches-py"
    train_names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    test_names = ["test"] if hundred else ["test_batch"]
    meta_name = "meta" if hundred else "batches.meta"
    label_key = "fine_labels" if hundred else "labels"
    names_key = "fine_label_names" if hundred else "label_names"

    files: dict[str, dict] = {}
    try:
        if path.is_file():
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    base = Path(member.name).name
                    if member.isfile() and base in train_names + test_names + [meta_name]:
                        files[base] = _unpickle(tar.extractfile(member))
        else:
            root = path / folder_name if (path / folder_name).is_dir() else path
            for base in train_names + test_names + [meta_name]:
                if (root / base).is_file():
                    with open(root / base, "rb") as handle:
                        files[base] = _unpickle(handle)
    except (ValueError, OSError, tarfile.TarError) as exc:
        raise UserError(f"--data {spec!r}: cannot read {path}: {exc}") from None
    missing = [n for n in train_names[:1] + test_names if n not in files]
    if missing:
        raise UserError(f"--data {spec!r}: {path} has no {missing[0]!r} file of the {folder_name} format")

    def stack(names):
        xs, ys = [], []
        for name in names:
            if name not in files:
                continue
            d = files[name]
            try:
                x = np.asarray(_get(d, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(_get(d, label_key), dtype=np.int64)
            except (KeyError, ValueError) as exc:
                raise UserError(f"--data {spec!r}: {name} is not in the {folder_name} format ({exc})") from None
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    train_x, train_y = stack(train_names)
    test_x, test_y = stack(test_names)
    classes = None
    if meta_name in files:
        try:
            classes = [c.decode() if isinstance(c, bytes) else str(c) for c in _get(files[meta_name], names_key)]
        except KeyError:
            classes = None
    count = 100 if hundred else 10
    if not classes:
        classes = CIFAR10_CLASSES if not hundred else [str(i) for i in range(100)]
    if int(max(train_y.max(), test_y.max())) >= count:
        raise UserError(f"--data {spec!r}: labels go beyond the {count} classes of the format")
    return Dataset(
        "cifar100" if hundred else "cifar10", classes[:count], train_x, train_y, test_x, test_y, source=str(path)
    )


# ---------------------------------------------------------------------------------- image folders


def _list_folder(path: Path, spec: str) -> tuple[list[str], dict[str, dict[str, list[str]]]]:
    """{split: {class: [members sorted]}} for a folder or a zip."""
    if path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"--data {spec!r}: {path} is not a readable zip ({exc})") from None
    elif path.is_dir():
        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    else:
        raise UserError(f"--data {spec!r}: {path} is neither a folder nor a zip")
    tree: dict[str, dict[str, list[str]]] = {}
    for name in names:
        parts = name.split("/")
        if len(parts) < 3 or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
            continue
        # tolerate one wrapping folder: top/train/cls/x.png
        if parts[0].lower() not in ("train",) + TEST_SPLITS and len(parts) >= 4:
            parts = parts[1:]
        split, cls = parts[0].lower(), parts[1]
        tree.setdefault(split, {}).setdefault(cls, []).append(name)
    if "train" not in tree:
        raise UserError(f"--data {spec!r}: {path} has no train/<class>/<image> files (expected an image folder)")
    test_split = next((s for s in TEST_SPLITS if s in tree), None)
    if test_split is None:
        raise UserError(f"--data {spec!r}: {path} has no test/ (or val/) split")
    classes = sorted(tree["train"])
    extra = sorted(set(tree[test_split]) - set(classes))
    if extra:
        raise UserError(f"--data {spec!r}: {test_split}/ has the class {extra[0]!r} that train/ does not")
    for split in tree.values():
        for members in split.values():
            members.sort()
    return classes, {"train": tree["train"], "test": tree[test_split]}


def _interleave(per_class: dict[str, list[str]], classes: list[str], limit: int | None) -> tuple[list[str], list[int]]:
    """Members ordered by (rank within class, class): every prefix is class-balanced."""
    columns = [per_class.get(c, [])[:limit] if limit is not None else per_class.get(c, []) for c in classes]
    members, labels = [], []
    for rank in range(max((len(c) for c in columns), default=0)):
        for label, column in enumerate(columns):
            if rank < len(column):
                members.append(column[rank])
                labels.append(label)
    return members, labels


def _decode_parallel(path: Path, members: list[str], workers: int | None, spec: str) -> np.ndarray:
    workers = (
        workers
        if workers is not None
        else min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    )
    try:
        if workers <= 1 or len(members) < PARALLEL_MIN:
            return decode_images(str(path), members)
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        # fork: the workers run Pillow only (no torch), and fork does not re-import the caller's
        # __main__ the way spawn does (a script without a main guard would fail under spawn)
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        chunks = [members[i::workers] for i in range(workers)]  # strided: equal work per worker
        try:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
                parts = list(pool.map(decode_images, [str(path)] * workers, chunks))
        except (BrokenProcessPool, RuntimeError, OSError):
            return decode_images(str(path), members)  # no processes to be had: one core then
        out = np.empty((len(members),) + parts[0].shape[1:], dtype=np.uint8)
        for i, part in enumerate(parts):
            if part.shape[1:] != out.shape[1:]:
                raise ValueError(
                    f"images of {part.shape[2]}x{part.shape[1]} and {out.shape[2]}x{out.shape[1]} pixels; resize them to one size"
                )
            out[i::workers] = part
        return out
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"--data {spec!r}: cannot decode the images of {path}: {exc}") from None
    except Exception as exc:  # PIL.UnidentifiedImageError and friends
        raise UserError(f"--data {spec!r}: cannot decode an image of {path} ({type(exc).__name__}: {exc})") from None


def _load_image_folder(
    path: Path,
    spec: str,
    train_per_class: int | None,
    test_per_class: int | None,
    use_cache: bool,
    workers: int | None,
    log,
) -> Dataset:
    cache = cache_path(path) if use_cache else None
    cached = read_cache(cache) if cache is not None and cache.is_dir() else None
    if cached is not None:
        classes = list(cached["classes"])
        data = Dataset(
            "",
            classes,
            torch.from_numpy(cached["train_x"]),
            torch.from_numpy(cached["train_y"]),
            torch.from_numpy(cached["test_x"]),
            torch.from_numpy(cached["test_y"]),
            source=str(path),
        )
        return _per_class_prefix(data, train_per_class, test_per_class)
    classes, tree = _list_folder(path, spec)
    train_members, train_labels = _interleave(tree["train"], classes, None)
    test_members, test_labels = _interleave(tree["test"], classes, None)
    full = len(train_members) + len(test_members)
    train_sel = _interleave(tree["train"], classes, train_per_class)
    test_sel = _interleave(tree["test"], classes, test_per_class)
    partial = len(train_sel[0]) + len(test_sel[0])
    decode_all = use_cache and partial > full // 2  # most of it anyway: decode all once and cache
    if decode_all:
        train_sel, test_sel = (train_members, train_labels), (test_members, test_labels)
    started = time.perf_counter()
    if log:
        log(
            f"decoding {len(train_sel[0]) + len(test_sel[0])} images from {path} (once; cached afterwards)"
            if decode_all
            else f"decoding {len(train_sel[0]) + len(test_sel[0])} images from {path}"
        )
    train_x = _decode_parallel(path, train_sel[0], workers, spec)
    test_x = _decode_parallel(path, test_sel[0], workers, spec)
    if train_x.shape[1:] != test_x.shape[1:] and len(test_x):
        raise UserError(f"--data {spec!r}: train and test images differ in size; resize them to one size")
    arrays = {
        "train_x": np.ascontiguousarray(train_x.transpose(0, 3, 1, 2)),
        "train_y": np.asarray(train_sel[1], dtype=np.int64),
        "test_x": np.ascontiguousarray(test_x.transpose(0, 3, 1, 2)),
        "test_y": np.asarray(test_sel[1], dtype=np.int64),
    }
    if log:
        log(f"decoded in {time.perf_counter() - started:.1f} s")
    if decode_all and cache is not None:
        write_cache(cache, arrays, classes, path)
    data = Dataset(
        "",
        classes,
        *(torch.from_numpy(arrays[k]) for k in ("train_x", "train_y", "test_x", "test_y")),
        source=str(path),
    )
    return _per_class_prefix(data, train_per_class, test_per_class) if decode_all else data


def _per_class_prefix(data: Dataset, train_per_class: int | None, test_per_class: int | None) -> Dataset:
    def keep(x, y, k):
        if k is None:
            return x, y
        onehot = torch.nn.functional.one_hot(y, num_classes=len(data.classes))
        rank = (onehot.cumsum(0) * onehot).sum(1) - 1  # index of each image within its class
        mask = rank < k
        return x[mask], y[mask]

    tx, ty = keep(data.train_x, data.train_y, train_per_class)
    vx, vy = keep(data.test_x, data.test_y, test_per_class)
    return Dataset(data.name, data.classes, tx, ty, vx, vy, data.source, data.mean, data.std)


def per_class_for(limit: int | None, classes: int = 10) -> int | None:
    return None if limit is None else math.ceil(limit / classes)
