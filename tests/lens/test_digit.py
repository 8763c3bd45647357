"""lens.digit: the slant measured against numpy's weighted covariance, deskewing against the
geometry of drawn strokes, and training's normalisation against the service's preprocessing of
the same PNG (the two must be one and the same)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from lens import digit
from service.plumbing.images import decode
from service.runtime.preprocess import model_input
from training.train import TrainConfig, normalised

SPEC = {"channels": 1, "height": 28, "width": 28, "foreground": "light"}


def _stroke(top: tuple[int, int], bottom: tuple[int, int], size=(120, 100), width=9) -> np.ndarray:
    image = Image.new("L", size, 0)
    ImageDraw.Draw(image).line([top, bottom], fill=255, width=width)
    return np.asarray(image, np.float32) / 255


def _png(grey: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.rint(grey * 255).astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("lean", [-0.6, -0.2, 0.0, 0.3, 0.8])
def test_slant_is_the_weighted_covariance_of_x_on_y(lean):
    grey = _stroke((40, 10), (40 + round(lean * 80), 90))
    rows, cols = np.indices(grey.shape)
    covariance = np.cov(np.stack([cols.ravel(), rows.ravel()]), aweights=grey.ravel(), bias=True)
    assert digit.slant(grey) == pytest.approx(covariance[0, 1] / covariance[1, 1], rel=1e-9)
    assert np.sign(digit.slant(grey)) == np.sign(lean)


@pytest.mark.parametrize("lean", [-0.7, -0.3, 0.4, 0.9])
def test_deskewing_stands_a_leaning_stroke_upright(lean):
    grey = _stroke((50, 10), (50 + round(lean * 80), 90), size=(200, 100))
    plain = digit.normalise(grey, 28, 28)
    upright = digit.normalise(grey, 28, 28, deskew=True)
    assert abs(digit.slant(plain)) > 0.2
    assert abs(digit.slant(upright)) < 0.05
    # upright, the stroke is narrow: a few columns, not the width of a diagonal
    assert (upright > 0.5).any(axis=0).sum() < (plain > 0.5).any(axis=0).sum()


def test_deskewing_leaves_an_upright_digit_as_it_is():
    grey = _stroke((50, 10), (50, 90), size=(100, 100))
    np.testing.assert_array_equal(digit.normalise(grey, 28, 28, deskew=True),
                                  digit.normalise(grey, 28, 28))


def test_a_slant_beyond_45_degrees_is_only_partly_undone():
    """A scribble or a lying stroke is not a slanted digit: the shear is bounded by MAX_SLANT."""
    grey = _stroke((10, 30), (110, 70), size=(120, 100), width=5)
    assert digit.slant(grey) > 2 * digit.MAX_SLANT
    out = digit.normalise(grey, 28, 28, deskew=True)
    assert out.max() == pytest.approx(1, abs=0.05)
    assert digit.slant(out) > 0.5   # sheared back by MAX_SLANT only: it still leans


@pytest.mark.parametrize("deskew", [False, True])
def test_training_normalises_a_digit_exactly_as_the_service_preprocesses_its_upload(deskew):
    grey = _stroke((17, 4), (10, 24), size=(28, 28), width=3)   # training digits are 28x28
    served = model_input(decode(_png(grey), 10**7), SPEC | {"deskew": deskew}, "digit")
    decoded = np.rint(grey * 255) / 255   # what the PNG holds
    trained = normalised(torch.from_numpy(decoded.astype(np.float32))[None, None],
                         TrainConfig(deskew=deskew))
    np.testing.assert_array_equal(trained[0].numpy(), served)


def test_a_shadow_across_the_paper_is_removed_with_the_background():
    """Dark ink on paper lit from one side (255 down to 170): the result is the evenly lit
    digit's, not a grey box around it."""
    ink = _stroke((60, 20), (40, 100), size=(120, 120), width=8)
    shade = np.linspace(1.0, 170 / 255, 120, dtype=np.float32)[None, :].repeat(120, axis=0)
    even = digit.normalise(1 - ink, 28, 28)
    shadowed = digit.normalise(shade * (1 - ink), 28, 28)
    assert (shadowed[even == 0] < 0.05).mean() > 0.97   # background stays black
    assert np.abs(shadowed - even).mean() < 0.02
