"""training/realworld.py's noisy and ruled uploads: decoded, they carry the noise (the lines) they
say they do, at the upload's own size, and the same noise on every run (a bundle's noisy figures
are reproducible)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import validation
from training import realworld

GREY = np.full((64, 64), 128, np.uint8)   # mid-grey paper: no noise is clipped away


def _decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L"), np.float64)


@pytest.mark.parametrize("side", [28, 64, 128])
def test_grain_is_gaussian_noise_of_the_stated_spread_at_the_uploads_size(side):
    pixels = _decoded(realworld.upload(GREY, side, "paper", "PNG", "grain", np.random.default_rng(1)))
    assert pixels.shape == (side, side)
    assert pixels.mean() == pytest.approx(128, abs=2)
    assert pixels.std() == pytest.approx(realworld.GRAIN, rel=0.1)


def test_dust_turns_the_stated_share_of_pixels_black_or_white():
    pixels = _decoded(realworld.upload(GREY, 128, "paper", "PNG", "dust", np.random.default_rng(1)))
    assert (pixels == 0).mean() == pytest.approx(realworld.DUST / 2, rel=0.25)
    assert (pixels == 255).mean() == pytest.approx(realworld.DUST / 2, rel=0.25)
    assert ((pixels == 0) | (pixels == 255) | (pixels == 128)).all()


def test_noisy_model_inputs_are_the_same_on_every_run():
    tiles = validation.load("printed")[0][:2]
    spec = {"height": 28, "width": 28, "foreground": "light", "deskew": True}
    first = realworld.model_inputs(tiles, spec, realworld.NOISY_VARIANTS)
    assert first.shape == (2 * len(realworld.NOISY_VARIANTS), 1, 28, 28)
    assert (first.reshape(len(first), -1).max(1) > 0.5).all()   # a digit in every one
    np.testing.assert_array_equal(first, realworld.model_inputs(tiles, spec, realworld.NOISY_VARIANTS))


@pytest.mark.parametrize("side", [variant[0] for variant in realworld.RULED_VARIANTS])
def test_lined_paper_has_a_line_every_quarter_of_the_side_under_the_ink(side):
    """Blank paper uploaded as a ruled variant holds about four lines (a quarter of the side
    apart, turned a little) of a ruling's brightness; black ink uploaded so stays black."""
    blank, ink = np.full((64, 64), 255, np.uint8), np.zeros((64, 64), np.uint8)
    pixels = _decoded(realworld.upload(blank, side, "paper", "PNG", "ruled", np.random.default_rng(2)))
    assert 255 * realworld.RULING[0] - 2 <= pixels.min() <= 255 * realworld.RULING[1] + 2
    crossed = (pixels < 250).any(axis=1)   # rows a line crosses
    lines = np.count_nonzero(np.diff(crossed.astype(int)) == 1) + int(crossed[0])
    assert 3 <= lines <= 5, crossed
    inked = _decoded(realworld.upload(ink, side, "paper", "PNG", "ruled", np.random.default_rng(2)))
    assert (inked == 0).all()
