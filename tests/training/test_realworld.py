"""training/realworld.py's noisy uploads: decoded, they carry the noise they say they do, at the
upload's own size, and the same noise on every run (a bundle's noisy figures are reproducible)."""
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
