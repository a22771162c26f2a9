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

Modules: this one (specs, pickles, `load_dataset`), trainers.folders (image folders), trainers.cache (the on-disk cache),
trainers.batches (`Batches`, augmentation).
"""

from __future__ import annotations

import math
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from onnxprune.errors import UserError

from .batches import Batches, augment_batch
from .cache import cache_dir
from .datapath import SHARED_DATASETS, find_cifar10, locate_cifar10
from .dataset import Dataset

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
DATA_KINDS = ("cifar10", "cifar100", "folder", "images")  # images: no labels, distillation only (trainers.images)


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
    from .folders import load_image_folder

    data = load_image_folder(path, spec, train_per_class, test_per_class, use_cache, workers, log)
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


def per_class_for(limit: int | None, classes: int = 10) -> int | None:
    return None if limit is None else math.ceil(limit / classes)
