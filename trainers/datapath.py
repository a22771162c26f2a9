"""Where `--data cifar10` (no path) finds CIFAR-10, for a checkout and for an installed package.

Looked for, in order: `$ONNXPRUNE_CIFAR10` (a file or folder), then in each folder of
`$ONNXPRUNE_DATA`, `~/.cache/onnxprune/` and the checkout's `../shared/datasets/` one of
ARCHIVES (the shared JPEG zip, the official pickled tarball, or that tarball unpacked).
"""

from __future__ import annotations

import os
from pathlib import Path

from onnxprune.errors import UserError

ARCHIVES = ("cifar10-jpeg.zip", "cifar-10-python.tar.gz", "cifar-10-batches-py")
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SHARED_DATASETS = Path(__file__).resolve().parent.parent / ".." / "shared" / "datasets"


def search_folders() -> list[tuple[str, Path | None]]:
    """(how the folder was named, the folder or None when its variable is unset), in search order."""
    data = os.environ.get("ONNXPRUNE_DATA")
    return [
        ("$ONNXPRUNE_DATA", Path(data).expanduser() if data else None),
        ("~/.cache/onnxprune", Path.home() / ".cache" / "onnxprune"),
        ("the checkout's shared folder", SHARED_DATASETS.resolve()),
    ]


def find_cifar10() -> Path | None:
    explicit = os.environ.get("ONNXPRUNE_CIFAR10")
    if explicit:
        path = Path(explicit).expanduser()
        return path if path.exists() else None
    for _, folder in search_folders():
        for name in ARCHIVES if folder is not None else ():
            if (folder / name).exists():
                return folder / name
    return None


def locate_cifar10(spec: str = "cifar10") -> Path:
    """The CIFAR-10 archive `--data cifar10` means, or a UserError saying where it looked."""
    found = find_cifar10()
    if found is not None:
        return found
    explicit = os.environ.get("ONNXPRUNE_CIFAR10")
    if explicit:
        raise UserError(f"--data {spec!r}: $ONNXPRUNE_CIFAR10={explicit} does not exist")
    looked = "; ".join(
        f"{label} ({folder})" if folder is not None else f"{label} (unset)" for label, folder in search_folders()
    )
    raise UserError(
        f"--data {spec!r}: no CIFAR-10 found; looked for {' or '.join(ARCHIVES)} in {looked}. "
        f"Download {OFFICIAL_URL} into ~/.cache/onnxprune/ (or a folder named by $ONNXPRUNE_DATA), "
        f"or give --data cifar10=PATH"
    )
