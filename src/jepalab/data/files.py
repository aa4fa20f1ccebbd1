"""Image data sets read from disk: `imagefolder:PATH` and `cifar:PATH` (see `images.py`).

Both loaders return an `ImageData` of uint8 (N, 3, S, S) images; an image folder can
instead stream, its images decoded as they are read (`streaming.py`, data.stream=true), for
data larger than memory. Every failure (missing folder, empty class, unreadable image,
missing or malformed CIFAR file) is a `DataError` whose message names the path and what was
expected. CIFAR pickles are read with a
restricted unpickler that can only rebuild dicts, lists, bytes and numpy arrays, so a
crafted file cannot run code.
"""
from __future__ import annotations

import codecs
import importlib
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from jepalab.data.images import DataError, ImageData, Split, resize_uint8, split_by_seed
from jepalab.data.streaming import FileImages, read_image, select

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
SPLITS = ("train", "val", "test")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")


def _subdirs(folder: Path) -> list[Path]:
    """Visible subfolders of `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _check_folder(path: str | Path) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise DataError(f"data folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise DataError(f"{str(folder)!r} is not a folder")
    return folder


def _list_classes(folder: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """The image files under folder/<class>/ for each class subfolder present, sorted by class
    and name, and their labels (indices into `classes`)."""
    files, labels = [], []
    for sub in _subdirs(folder):
        if sub.name not in classes:
            raise DataError(f"class folder {str(sub)!r} is not among the training classes "
                            f"{classes}; every class must have a folder under 'train'")
        with os.scandir(sub) as entries:  # file types from the directory, without a stat each
            found = sorted(e.path for e in entries
                           if e.is_file() and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise DataError(f"class folder {str(sub)!r} holds no images "
                            f"(expected files ending in {', '.join(IMAGE_EXTENSIONS)})")
        files += found
        labels += [classes.index(sub.name)] * len(found)
    return files, labels


def _read_classes(folder: Path, classes: list[str], size: int, skip_bad: bool = False,
                  stream: bool = False) -> tuple[Split, int]:
    """The images of `_list_classes`, decoded (or with `stream`, to be decoded as they are
    read: `FileImages`). With `skip_bad` an unreadable file is left out and counted (the count
    is returned)."""
    files, labels = _list_classes(folder, classes)
    if stream:
        return Split(FileImages(files, size), torch.tensor(labels, dtype=torch.int64)), 0
    images, kept, skipped = [], [], 0
    for file, label in zip(files, labels):
        try:
            images.append(read_image(file, size))
        except DataError as e:
            if not skip_bad:
                raise DataError(f"{e}; set data.on_bad_file=skip to leave unreadable files "
                                "out") from None
            skipped += 1
            continue
        kept.append(label)
    pixels = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return Split(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(),
                 torch.tensor(kept, dtype=torch.int64)), skipped


def _take(split: Split, index: np.ndarray) -> Split:
    index = torch.as_tensor(index, dtype=torch.int64)
    return Split(select(split.images, index), split.labels[index])


def load_imagefolder(path, *, image_size: int, seed: int = 0, skip_bad: bool = False,
                     stream: bool = False) -> ImageData:
    """Load PATH/<class>/<image> or PATH/{train,val,test}/<class>/<image>.

    Classes are the sorted class-folder names (those of `train` in the split layout). The flat
    layout is split 80/10/10 by `split_by_seed(n, (0.1, 0.1), seed)`; in the split layout a
    missing `val` or `test` folder is carved (10% each) out of `train` the same way. Images are
    converted to RGB (grey, palette, alpha and 16-bit images too) and resized to `image_size`
    x `image_size`. An unreadable file stops the load naming it; with `skip_bad` it is left
    out and counted (`ImageData.skipped`).

    With `stream` nothing is decoded here: each split's images are `FileImages`, decoded when
    they are read (a batch, a probe's chunk), and an unreadable file stops that read naming
    it. The splits are the same as without `stream` (so are the pixels); `skip_bad` needs
    every file decoded up front, so it cannot stream.
    """
    if stream and skip_bad:
        raise DataError("an image folder cannot both stream and skip unreadable files: "
                        "skipping needs every file decoded up front")
    folder = _check_folder(path)
    subdirs = _subdirs(folder)
    if not subdirs:
        raise DataError(f"{str(folder)!r} has no class subfolders; expected PATH/<class>/<image> "
                        f"or PATH/train/<class>/<image> (with optional val/ and test/)")
    split_layout = (folder / "train").is_dir() and all(d.name in SPLITS for d in subdirs)
    base = folder / "train" if split_layout else folder
    classes = [d.name for d in _subdirs(base)]
    if not classes:
        raise DataError(f"{str(base)!r} has no class subfolders; expected {base}/<class>/")
    train, skipped = _read_classes(base, classes, image_size, skip_bad, stream)
    present = {name: folder / name for name in ("val", "test")
               if split_layout and (folder / name).is_dir()}
    splits = {}
    for name, sub in present.items():
        splits[name], more = _read_classes(sub, classes, image_size, skip_bad, stream)
        skipped += more
    fractions = (0.0 if "val" in splits else 0.1, 0.0 if "test" in splits else 0.1)
    if fractions != (0.0, 0.0):
        keep, val, test = split_by_seed(len(train), fractions, seed)
        splits.setdefault("val", _take(train, val))
        splits.setdefault("test", _take(train, test))
        train = _take(train, keep)
    sizes = {"train": len(train), "val": len(splits["val"]), "test": len(splits["test"])}
    if min(sizes.values()) == 0:
        counts = ", ".join(f"{k} {v}" for k, v in sizes.items())
        raise DataError(f"{str(folder)!r}: too few readable images for train, val and test "
                        f"({counts}{f'; {skipped} unreadable skipped' if skipped else ''}); "
                        "a flat folder gives 10% each to val and test, so it needs at "
                        "least 10 images")
    return ImageData(f"imagefolder:{path}", train, splits["val"], splits["test"], classes,
                     skipped)


def _numpy_global(name: str):
    """numpy's array-rebuilding functions, from numpy._core (numpy 2) or numpy.core (numpy 1)."""
    for module in ("numpy._core.", "numpy.core."):
        try:
            return getattr(importlib.import_module(module + name.rpartition(".")[0]),
                           name.rpartition(".")[2])
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {name}")


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a CIFAR batch needs; anything else is refused."""

    NUMPY = frozenset({"multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer"})

    def find_class(self, module: str, name: str):
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") \
                and name in ("ndarray", "dtype"):
            return getattr(np, name)
        for prefix in ("numpy.core.", "numpy._core."):
            if module.startswith(prefix) and f"{module[len(prefix):]}.{name}" in self.NUMPY:
                return _numpy_global(f"{module[len(prefix):]}.{name}")
        if (module, name) == ("_codecs", "encode"):  # how Python 3 pickles bytes in protocol 2
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _unpickle(file: Path) -> dict[str, object]:
    """A CIFAR pickle as a dict with str keys; refuses unsafe or malformed files."""
    try:
        with open(file, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except Exception as e:
        raise DataError(f"cannot load CIFAR file {str(file)!r} (expected a python pickle of a "
                        f"dict of lists and numpy arrays): {e}") from e
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR file {str(file)!r} holds a {type(obj).__name__}, expected a dict")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _field(batch: dict, key: str, file: Path):
    if key not in batch:
        raise DataError(f"CIFAR file {str(file)!r} has no {key!r} entry; it has {sorted(batch)}")
    return batch[key]


def _read_batches(files: list[Path], label_key: str, n_classes: int, size: int) -> Split:
    images, labels = [], []
    for file in files:
        batch = _unpickle(file)
        data = np.asarray(_field(batch, "data", file))
        labs = np.asarray(_field(batch, label_key, file))
        if data.ndim != 2 or data.shape[1] != 3072 or labs.shape != (data.shape[0],):
            raise DataError(f"CIFAR file {str(file)!r}: expected data (N, 3072) and "
                            f"{label_key} (N,), got {data.shape} and {labs.shape}")
        if labs.size and (labs.min() < 0 or labs.max() >= n_classes):
            raise DataError(f"CIFAR file {str(file)!r}: labels must lie in [0, {n_classes})")
        images.append(data.astype(np.uint8).reshape(-1, 3, 32, 32))
        labels.append(labs.astype(np.int64))
    pixels = torch.from_numpy(np.concatenate(images))
    return Split(resize_uint8(pixels, size), torch.from_numpy(np.concatenate(labels)))


def load_cifar(path, *, image_size: int, seed: int = 0) -> ImageData:
    """Load CIFAR-10 (data_batch_1..5, test_batch, batches.meta) or CIFAR-100 (train, test,
    meta; fine labels) python-pickle batches from PATH, resized to `image_size`.

    The test split is the test batch; val is 10% of the training batches, chosen by
    `split_by_seed(n, (0.1, 0.0), seed)`.
    """
    folder = _check_folder(path)
    for sub in ("cifar-10-batches-py", "cifar-100-python"):  # PATH may be the unpacked tarball
        if not any((folder / f).is_file() for f in CIFAR10_FILES + CIFAR100_FILES) \
                and (folder / sub).is_dir():
            folder = folder / sub
    cifar10 = any((folder / f).is_file() for f in CIFAR10_FILES)
    expected = CIFAR10_FILES if cifar10 else CIFAR100_FILES
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing:
        kind = "CIFAR-10" if cifar10 else "CIFAR-100"
        raise DataError(
            f"{str(folder)!r} is missing {kind} file(s) {', '.join(missing)}; a CIFAR-10 folder "
            f"must contain {', '.join(CIFAR10_FILES)}, a CIFAR-100 folder "
            f"{', '.join(CIFAR100_FILES)}")
    meta_file = folder / ("batches.meta" if cifar10 else "meta")
    names_key, label_key = ("label_names", "labels") if cifar10 else ("fine_label_names",
                                                                      "fine_labels")
    names = _field(_unpickle(meta_file), names_key, meta_file)
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    train_files = [folder / f for f in (CIFAR10_FILES[:5] if cifar10 else ("train",))]
    train = _read_batches(train_files, label_key, len(classes), image_size)
    test = _read_batches([folder / ("test_batch" if cifar10 else "test")], label_key,
                         len(classes), image_size)
    keep, val, _ = split_by_seed(len(train), (0.1, 0.0), seed)
    return ImageData(f"cifar:{path}", _take(train, keep), _take(train, val), test, classes)
