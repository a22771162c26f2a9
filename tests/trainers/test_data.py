"""Dataset loaders (pickles, image folders, zips, the shared CIFAR zip), cache and augmentation."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnxprune.errors import UserError  # noqa: E402
from trainers import folders as folders_mod  # noqa: E402
from trainers.data import CIFAR10_CLASSES, DEFAULT_CIFAR10, Batches, augment_batch, load_dataset, parse_data_spec  # noqa: E402
from trainers.testing import write_cifar_pickles, write_image_folder  # noqa: E402


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("where", ["folder", "parent", "tar"])
def test_cifar10_pickles(tmp_path, where):
    folder = write_cifar_pickles(tmp_path / "d", per_batch=6, n_test=5, as_tar=(where == "tar"))
    path = folder if where != "parent" else folder.parent
    data = load_dataset(f"cifar10={path}")
    assert data.train_x.shape == (30, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (5, 3, 32, 32)
    assert data.classes == CIFAR10_CLASSES
    assert data.train_y[:6].tolist() == [(1 + i) % 10 for i in range(6)]  # data_batch_1 first, in order
    # the pickle's row layout is channel-major: R plane, G plane, B plane
    raw = __import__("pickle").load(
        open(folder / "test_batch", "rb")
        if where != "tar"
        else open(tmp_path / "d" / "cifar-10-batches-py" / "test_batch", "rb"),
        encoding="bytes",
    )
    assert np.array_equal(data.test_x[0].numpy().reshape(-1), raw[b"data"][0])


def test_cifar100_pickles(tmp_path):
    folder = write_cifar_pickles(tmp_path, hundred=True, per_batch=4, n_test=6)
    data = load_dataset(f"cifar100={folder.parent}")
    assert data.num_classes == 100 and data.classes[:2] == ["f0", "f1"]
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_y.tolist() == [3, 4, 5, 6, 7, 8]


def test_corrupt_pickle_is_a_user_error(tmp_path):
    folder = write_cifar_pickles(tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="test_batch|cannot read"):
        load_dataset(f"cifar10={folder}")


@pytest.mark.parametrize("as_zip", [False, True])
def test_image_folder_interleaved_and_prefix_decode(tmp_path, as_zip):
    root = write_image_folder(tmp_path / "imgs", classes=("cat", "dog", "emu"), per_class=4, n_test=2, as_zip=as_zip)
    full = load_dataset(f"folder={root}")
    assert full.classes == ["cat", "dog", "emu"]
    assert full.train_x.shape == (12, 3, 8, 8) and full.test_x.shape == (6, 3, 8, 8)
    # class-interleaved: every prefix is balanced; the stamp pixel says (index in class, label)
    assert full.train_y.tolist() == [0, 1, 2] * 4
    stamps = full.train_x[:, :2, 0, 1].tolist()
    assert stamps == [[i, lab] for i in range(4) for lab in range(3)]
    part = load_dataset(f"folder={root}", train_per_class=2, test_per_class=1, use_cache=False)
    assert torch.equal(part.train_x, full.train_x[:6]) and torch.equal(part.test_y, full.test_y[:3])


def test_folder_cache_is_reused_and_invalidated(tmp_path, private_cache):
    root = write_image_folder(tmp_path / "imgs.zip", per_class=3, as_zip=True)
    first = load_dataset(f"folder={root}")
    caches = list(private_cache.iterdir())
    assert len(caches) == 1 and (caches[0] / "train_x.npy").is_file()
    calls = []
    original = folders_mod._decode_parallel
    folders_mod._decode_parallel = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = load_dataset(f"folder={root}")
        assert not calls and torch.equal(again.train_x, first.train_x)
        # rewrite the file with other pixels and another mtime: decoded again
        write_image_folder(tmp_path / "imgs.zip", per_class=3, as_zip=True, seed=5)
        stat = root.stat()
        os.utime(root, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))
        changed = load_dataset(f"folder={root}")
        assert calls and not torch.equal(changed.train_x, first.train_x)
    finally:
        folders_mod._decode_parallel = original


def test_parallel_decode_equals_serial(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imgs", per_class=5, as_zip=True)
    serial = load_dataset(f"folder={root}", use_cache=False, workers=1)
    monkeypatch.setattr(folders_mod, "PARALLEL_MIN", 0)
    parallel = load_dataset(f"folder={root}", use_cache=False, workers=2)
    assert torch.equal(serial.train_x, parallel.train_x) and torch.equal(serial.test_y, parallel.test_y)


def test_bad_specs_and_missing_paths(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        parse_data_spec(f"cifar10={tmp_path / 'nope'}")
    with pytest.raises(UserError, match="expected cifar10"):
        parse_data_spec("imagenet")
    with pytest.raises(UserError, match="give the dataset's location"):
        parse_data_spec("cifar100")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="train/<class>"):
        load_dataset(f"folder={tmp_path / 'empty'}")


def test_mixed_image_sizes_are_refused(tmp_path):
    from PIL import Image

    root = write_image_folder(tmp_path / "imgs", per_class=2)
    Image.new("RGB", (9, 9)).save(root / "train" / "a" / "9999.png")
    with pytest.raises(UserError, match="one size"):
        load_dataset(f"folder={root}", use_cache=False)


@pytest.mark.skipif(not DEFAULT_CIFAR10.is_file(), reason="the shared CIFAR-10 zip is not here")
def test_shared_cifar10_zip_subset_decode_is_fast():
    started = time.perf_counter()
    data = load_dataset("cifar10", train_per_class=3, test_per_class=2)
    assert time.perf_counter() - started < 20
    assert data.classes == CIFAR10_CLASSES
    assert data.train_x.shape == (30, 3, 32, 32) and data.test_x.shape == (20, 3, 32, 32)
    assert data.train_y.tolist() == list(range(10)) * 3
    assert 40 < float(data.train_x.float().mean()) < 200  # real pixels, not a blank decode


def test_augment_batch_crops_and_flips_vectorised():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8)
    assert torch.equal(augment_batch(x, gen, pad=0, flip=False), x)
    flipped = augment_batch(x, gen, pad=0, flip=True)
    assert all(torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1)) for i in range(6))
    out = augment_batch(x, gen, pad=4, flip=False)
    for i in range(6):  # each output is some 12x12 window of the zero-padded image
        padded = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
        assert any(torch.equal(padded[:, dy : dy + 12, dx : dx + 12], out[i]) for dy in range(9) for dx in range(9))
    again = augment_batch(x, torch.Generator().manual_seed(3), pad=4)
    assert torch.equal(again, augment_batch(x, torch.Generator().manual_seed(3), pad=4))


def test_batches_cover_the_data_and_normalise():
    x = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    y = torch.arange(50)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    test = Batches(x, y, 16, mean, std)
    seen = torch.cat([yb for _xb, yb in test])
    assert seen.tolist() == list(range(50))
    xb, _ = next(iter(test))
    expected = (x[:16].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(xb, expected, rtol=1e-5, atol=1e-5)
    train = Batches(x, y, 16, mean, std, train=True, generator=torch.Generator().manual_seed(0))
    labels = torch.cat([yb for _xb, yb in train])
    assert sorted(labels.tolist()) == list(range(50))  # a permutation: 16+16+16+2
