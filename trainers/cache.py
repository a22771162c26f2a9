"""The on-disk cache of decoded images: uint8 `.npy` arrays under `$ONNXPRUNE_CACHE` (default
`~/.cache/onnxprune/`), keyed by the source's path, size and mtime, written all-or-nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

CACHE_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("ONNXPRUNE_CACHE") or Path.home() / ".cache" / "onnxprune").expanduser()


def _cache_key(path: Path) -> str:
    stat = path.stat()
    if path.is_dir():  # a folder: its listing's sizes and mtimes
        digest = hashlib.sha1()
        for p in sorted(path.rglob("*")):
            if p.is_file():
                s = p.stat()
                digest.update(f"{p.relative_to(path)}|{s.st_size}|{s.st_mtime_ns}\n".encode())
        tag = digest.hexdigest()
    else:
        tag = f"{stat.st_size}|{stat.st_mtime_ns}"
    raw = f"v{CACHE_VERSION}|{path.resolve()}|{tag}"
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def cache_path(path: Path) -> Path:
    stem = path.name.split(".")[0] or "data"
    return cache_dir() / f"{stem}-{_cache_key(path)}"


def read_cache(folder: Path) -> dict[str, np.ndarray] | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {k: np.load(folder / f"{k}.npy") for k in ("train_x", "train_y", "test_x", "test_y")}
        arrays["classes"] = meta["classes"]  # type: ignore[assignment]
        return arrays
    except (OSError, ValueError, KeyError):
        return None


def write_cache(folder: Path, arrays: dict, classes: list[str], source: Path) -> None:
    """All files into a temp folder, then one rename: a reader sees all of the cache or none."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        for key, value in arrays.items():
            np.save(tmp / f"{key}.npy", value)
        (tmp / "meta.json").write_text(json.dumps({"classes": classes, "source": str(source)}))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process won the race: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # an unwritable cache only costs time
