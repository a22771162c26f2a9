"""Image folders and zips as labelled datasets: `<split>/<class>/*.png|jpg`, listed, ordered
class-interleaved (any prefix is class-balanced), decoded with Pillow in up to four processes, and
cached (trainers.cache)."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from onnxprune.errors import UserError

from ._decode import decode_images
from .cache import cache_path, read_cache, write_cache
from .dataset import IMAGE_SUFFIXES, TEST_SPLITS, Dataset

PARALLEL_MIN = 4000  # fewer images than this decode in-process (process start-up would cost more)


def member_names(path: Path, spec: str) -> list[str]:
    """Every file of a folder (recursive, relative POSIX paths) or of a zip."""
    if path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                return [n for n in archive.namelist() if not n.endswith("/")]
        except (zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"--data {spec!r}: {path} is not a folder or a readable zip ({exc})") from None
    if path.is_dir():
        return [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    raise UserError(f"--data {spec!r}: {path} is neither a folder nor a zip")


def _list_folder(path: Path, spec: str) -> tuple[list[str], dict[str, dict[str, list[str]]]]:
    """{split: {class: [members sorted]}} for a folder or a zip."""
    names = member_names(path, spec)
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


def load_image_folder(
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
