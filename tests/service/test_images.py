"""service.plumbing.images and service.runtime.preprocess: every image mode, and the MNIST-style
preprocessing, checked against numpy computations and the model run directly."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lens.digit import normalise
from service.runtime.preprocess import model_input
from service.plumbing.problems import Problem
from tests.service import imagefiles
from tests.service.imagefiles import decode

SPEC = {"channels": 1, "height": 28, "width": 28, "foreground": "light"}


def _predicted(reference, image_bytes: bytes) -> int:
    x = model_input(decode(image_bytes, 10**7), SPEC, "digit")
    return int(reference.run(x[None])["probabilities"][0].argmax())


def _centre_of_mass(plane: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(plane.shape)
    return (rows * plane).sum() / plane.sum(), (cols * plane).sum() / plane.sum()


def test_digit_is_fitted_into_20x20_and_centred_by_mass():
    canvas = np.asarray(imagefiles.drawn_digit(imagefiles.SEVEN).convert("L"), np.float32) / 255
    out = normalise(canvas, 28, 28, "light")
    rows, cols = np.nonzero(out > 0.05)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 in (20, 21)     # Lanczos may bleed a pixel
    centre = _centre_of_mass(out)
    assert abs(centre[0] - 13.5) <= 0.5 and abs(centre[1] - 13.5) <= 0.5
    assert out[:, :3].max() == 0 and out.max() == pytest.approx(1, abs=0.05)


def test_polarity_does_not_matter():
    dark_on_light = np.asarray(imagefiles.drawn_digit(imagefiles.ONE).convert("L"), np.float32) / 255
    a = normalise(dark_on_light, 28, 28, "light")
    b = normalise(1 - dark_on_light, 28, 28, "light")
    assert np.allclose(a, b, atol=1e-4)


def test_grey_paper_becomes_black_background():
    photo = np.asarray(imagefiles.drawn_digit(imagefiles.SEVEN, ink=(60, 60, 60),
                                              paper=(170, 170, 170)).convert("L"), np.float32) / 255
    out = normalise(photo, 28, 28, "light")
    assert out[0].max() == 0 and out.max() > 0.95


def test_blank_image_gives_a_black_input():
    assert not normalise(np.full((50, 60), 0.8, np.float32), 28, 28, "light").any()


def test_preprocess_none_keeps_an_mnist_digit_exactly(digits):
    pixels = digits[0][0]
    x = model_input(decode(imagefiles.mnist_png(pixels), 10**7), SPEC, "none")
    assert np.array_equal(x[0], pixels.reshape(28, 28).astype(np.float32) / 255)


@pytest.mark.parametrize("ink", ["black", "white"])
def test_transparent_canvas_keeps_the_strokes_whatever_their_colour(reference, ink):
    drawing = imagefiles.drawn_digit(imagefiles.SEVEN, ink=ink, paper=(0, 0, 0, 0), mode="RGBA")
    assert _predicted(reference, imagefiles.encode(drawing)) == 7


def test_palette_image_with_transparency(reference):
    drawing = imagefiles.drawn_digit(imagefiles.SEVEN, ink=(0, 0, 0, 255), paper=(0, 0, 0, 0),
                                     mode="RGBA").convert("P")
    data = imagefiles.encode(drawing, transparency=drawing.getpixel((0, 0)))
    assert Image.open(io.BytesIO(data)).mode == "P"
    assert _predicted(reference, data) == 7


def test_sixteen_bit_greyscale_keeps_its_precision():
    values = (np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16)
    decoded = decode(imagefiles.encode(Image.fromarray(values)), 10**7)
    assert decoded.grey
    assert np.allclose(decoded.luminance, values / 65535, atol=1e-6)


def test_cmyk_jpeg(reference):
    data = imagefiles.encode(imagefiles.drawn_digit(imagefiles.SEVEN).convert("CMYK"), "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert _predicted(reference, data) == 7


def test_exif_rotation_is_applied(reference):
    upright = imagefiles.drawn_digit(imagefiles.SEVEN)
    exif = Image.Exif()
    exif[0x0112] = 6    # "rotate 90 degrees clockwise to display"
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    data = imagefiles.encode(stored, "JPEG", exif=exif)
    decoded = decode(data, 10**7)
    expected = np.asarray(upright.convert("L"), np.float32) / 255
    assert decoded.rgb.shape[:2] == expected.shape
    assert np.abs(decoded.luminance - expected).mean() < 0.01     # JPEG's loss only
    assert _predicted(reference, data) == 7


def test_colour_is_detected():
    assert not decode(imagefiles.encode(imagefiles.photo_like()), 10**7).grey
    assert decode(imagefiles.encode(imagefiles.photo_like().convert("L").convert("RGB")), 10**7).grey


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("width, height", [(1001, 1000), (50_000, 50_000)])
def test_size_is_refused_from_the_header_before_decoding(monkeypatch, width, height):
    """Just over the limit (our check) and far over it (Pillow's guard at twice the limit): the
    header alone has no pixel data, so a refusal proves nothing was decoded."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**6)    # as create_app sets it
    with pytest.raises(Problem) as refused:
        decode(imagefiles.png_header_only(width, height), 10**6)
    assert refused.value.status == 413 and str(width * height) in refused.value.detail


_LARGE_DRAWING = imagefiles.drawn_digit(imagefiles.SEVEN, size=(1024, 768), width=50)
_LARGE_SIXTEEN_BIT = Image.fromarray((np.arange(1024 * 768).reshape(768, 1024) % 65536)
                                     .astype(np.uint16))


@pytest.mark.parametrize("image, fmt", [(_LARGE_DRAWING, "PNG"), (_LARGE_DRAWING, "JPEG"),
                                        (_LARGE_SIXTEEN_BIT, "PNG")], ids=["png", "jpeg", "16-bit"])
def test_shrink_to_fits_the_image_keeping_its_aspect(image, fmt):
    decoded = decode(imagefiles.encode(image, fmt), 10**7, shrink_to=512)
    assert decoded.rgb.shape[:2] == (384, 512)


def test_a_shrunk_photo_is_still_recognised(reference):
    data = imagefiles.encode(_LARGE_DRAWING, "JPEG")
    x = model_input(decode(data, 10**7, shrink_to=512), SPEC, "digit")
    assert int(reference.run(x[None])["probabilities"][0].argmax()) == 7


def test_max_side_is_refused_from_the_header():
    with pytest.raises(Problem) as refused:
        decode(imagefiles.png_header_only(600, 20), 10**7, max_side=512)
    assert refused.value.status == 422 and "600x20" in refused.value.detail
