"""validation/: the out-of-distribution sets load as documented (validation/README.md)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import validation


@pytest.mark.parametrize("name, count", [("handwriting", 1000), ("printed", 500),
                                         ("writers", 1797), ("nondigits", 300)])
def test_each_set_is_64px_tiles_of_dark_ink_on_paper(name, count):
    tiles, labels, meta = validation.load(name)
    assert tiles.shape == (count, 64, 64) and tiles.dtype == np.uint8
    assert len(labels) == len(meta) == count
    if name != "nondigits":
        assert sorted(set(labels)) == list(range(10))
        # paper: the border of a digit tile is light
        strips = [tiles[:, :2], tiles[:, -2:], tiles[:, :, :2], tiles[:, :, -2:]]
        border = np.concatenate([strip.reshape(count, -1) for strip in strips], 1)
        assert np.median(border, axis=1).min() > 150


def test_writers_are_scikit_learns_optdigits_drawn_large():
    """Each tile, shrunk back to 8x8 by averaging 5x5 blocks of its ink box, gives the digit's
    own 0-16 counts (up to the bicubic enlargement's ringing), with its own label."""
    tiles, labels, _ = validation.load("writers")
    digits = load_digits()
    assert labels == digits.target.tolist()
    pad = (validation.WRITERS_TILE - validation.WRITERS_INK) // 2
    box = 1 - tiles[:, pad:pad + validation.WRITERS_INK, pad:pad + validation.WRITERS_INK] / 255
    shrunk = box.reshape(len(box), 8, 5, 8, 5).mean(axis=(2, 4))
    assert np.abs(shrunk - digits.images / 16).mean() < 0.1   # 0.05; mirrored 0.2, transposed 0.36
    # outside the ink box: nothing but paper
    outside = tiles.copy()
    outside[:, pad:pad + validation.WRITERS_INK, pad:pad + validation.WRITERS_INK] = 255
    assert (outside == 255).all()
