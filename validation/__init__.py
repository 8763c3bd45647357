"""Out-of-distribution validation sets: digits by other writers, printed digits, non-digits.

Never train on them. `load(name)` reads one set with Pillow and numpy only (no torch):

    images, labels, metadata = load("handwriting")     # or "printed"
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
SETS = ("handwriting", "printed", "nondigits")


def load(name: str) -> tuple[np.ndarray, list, list[dict]]:
    if name not in SETS:
        raise ValueError(f"unknown validation set {name!r}; one of {', '.join(SETS)}")
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
