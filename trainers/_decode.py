"""Image decoding for the dataset loaders: Pillow and numpy only, so worker processes start fast."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np


def decode_images(source: str, members: list[str]) -> np.ndarray:
    """Decode `members` (paths inside a zip, or files under a folder) into uint8 (N, H, W, 3)."""
    from PIL import Image

    images = []
    path = Path(source)
    archive = zipfile.ZipFile(path) if path.is_file() else None
    try:
        for member in members:
            if archive is not None:
                data = archive.read(member)
                handle = io.BytesIO(data)
            else:
                handle = open(path / member, "rb")
            with handle, Image.open(handle) as image:
                array = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
            if images and array.shape != images[0].shape:
                raise ValueError(
                    f"{member}: {array.shape[1]}x{array.shape[0]} pixels, the first image has "
                    f"{images[0].shape[1]}x{images[0].shape[0]}; resize the images to one size"
                )
            images.append(array)
    finally:
        if archive is not None:
            archive.close()
    if not images:
        return np.zeros((0, 1, 1, 3), dtype=np.uint8)
    return np.stack(images)
