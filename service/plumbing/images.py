"""Images in: from the request to float RGB arrays, with every limit checked before decoding.

Three ways to send images, all giving a list in request order:
  multipart/form-data   one or more parts named `file` (several = a batch)
  image/png, image/jpeg, image/webp, image/bmp, image/gif   the raw body is one image
  application/json      {"image": "<base64>"} or {"images": ["<base64>", ...]}; a data URL
                        ("data:image/png;base64,...", what a browser canvas gives) works too

Limits: the body size is Flask's MAX_CONTENT_LENGTH (413 before the body is read); the number of
images is counted before any is decoded (413); each image's width x height, and their sum over the
request, are read from their headers before any pixel is decoded (413), and Pillow's own
decompression-bomb guard stays on.
"""
from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import numpy as np
from flask import Request
from PIL import Image, ImageOps, UnidentifiedImageError

from service.plumbing.problems import bad_request, too_large, unprocessable, unsupported

MEDIA_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP",
               "image/bmp": "BMP", "image/gif": "GIF"}
UPLOAD_TYPES = {*MEDIA_TYPES, "multipart/form-data", "application/json"}
_FORMATS = tuple(MEDIA_TYPES.values())
_FORMAT_NAMES = "PNG, JPEG, WebP, BMP or GIF"
LUMA = np.array([0.299, 0.587, 0.114], np.float32)   # ITU-R BT.601, as Pillow's "L" and JPEG's Y
_SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


@dataclass(frozen=True)
class Decoded:
    # float32 in [0, 1], alpha already composited: H x W for a source without colour (so that
    # results can be saved without it, and no work is spent on three equal planes), else H x W x 3.
    pixels: np.ndarray

    @property
    def grey(self) -> bool:
        return self.pixels.ndim == 2

    @property
    def rgb(self) -> np.ndarray:
        """H x W x 3 (for a grey source, a read-only view of its one plane three times)."""
        if self.grey:
            return np.broadcast_to(self.pixels[..., None], (*self.pixels.shape, 3))
        return self.pixels

    @property
    def luminance(self) -> np.ndarray:
        # Exactly the grey values for a grey source (the weights' float sum is not exactly 1).
        return self.pixels if self.grey else self.pixels @ LUMA


def from_request(request: Request, max_batch: int, max_pixels: int, max_total: int | None = None,
                 **options) -> list[Decoded]:
    """`max_total`, `options`: as for `decode_all`."""
    return decode_all(_blobs(request, max_batch), max_pixels, max_total, **options)


def decode_all(blobs: list[bytes], max_pixels: int, max_total: int | None = None,
               **options) -> list[Decoded]:
    """Every image of a request, once their headers say that they hold at most `max_pixels`
    pixels each and `max_total` together (413 otherwise, before any is decoded; a request of
    one image needs no `max_total`). `options`: as for `_decoded`."""
    label = (lambda i: "the image") if len(blobs) == 1 else (lambda i: f"image {i}")
    opened = [_open(blob, max_pixels, label(i)) for i, blob in enumerate(blobs)]
    total = sum(image.width * image.height for image in opened)
    if max_total is not None and total > max_total:
        raise too_large(f"the {len(opened)} images hold {total} pixels in all; the limit is "
                        f"{max_total} a request")
    return [_decoded(image, label(i), **options) for i, image in enumerate(opened)]


def _blobs(request: Request, max_batch: int) -> list[bytes]:
    kind = request.mimetype
    if kind == "multipart/form-data":
        parts = request.files.getlist("file")
        if not parts:
            raise bad_request("multipart request without a part named 'file'; send each image "
                              "as a 'file' part")
        # Counted before reading, so a thousand-part request costs no decoding.
        if len(parts) > max_batch:
            raise too_large(f"{len(parts)} images in one request; the limit is {max_batch}")
        blobs = [part.read() for part in parts]
    elif kind == "application/json":
        blobs = _json_images(request, max_batch)
    elif kind in MEDIA_TYPES:
        blobs = [request.get_data()]
    elif not request.content_length and not kind:
        raise bad_request("the request has no image; send one as multipart 'file', a raw "
                          "image/png (jpeg, webp, bmp, gif) body, or JSON {\"image\": base64}")
    else:
        raise unsupported(f"content type {kind or '(none)'!r} is not accepted; send "
                          "multipart/form-data, application/json or one of "
                          f"{', '.join(MEDIA_TYPES)}")
    for i, blob in enumerate(blobs):
        if not blob:
            raise bad_request("the image is empty (0 bytes)" if len(blobs) == 1
                              else f"image {i} is empty (0 bytes)")
    return blobs


def _json_images(request: Request, max_batch: int) -> list[bytes]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or len({"image", "images"} & body.keys()) != 1 or \
            body.keys() - {"image", "images"}:
        raise bad_request('the JSON body must be an object {"image": "<base64>"} or '
                          '{"images": ["<base64>", ...]}, with nothing else (parameters go in '
                          'the query)')
    texts = [body["image"]] if "image" in body else body["images"]
    if not isinstance(texts, list) or not texts:
        raise bad_request('"images" must be a non-empty list of base64 strings')
    if len(texts) > max_batch:
        raise too_large(f"{len(texts)} images in one request; the limit is {max_batch}")
    return [from_base64(text, "image" if "image" in body else f"images[{i}]")
            for i, text in enumerate(texts)]


def from_base64(text, where: str) -> bytes:
    if not isinstance(text, str):
        raise bad_request(f"{where} must be a base64 string")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{where} is not valid base64") from None


def _open(blob: bytes, max_pixels: int, label: str) -> Image.Image:
    """The image with its header read, not yet its pixels (413 when it holds over
    `max_pixels`)."""
    try:
        image = Image.open(io.BytesIO(blob), formats=_FORMATS)
    except UnidentifiedImageError:
        raise unprocessable(f"{label} is not a {_FORMAT_NAMES} image") from None
    except Image.DecompressionBombError as error:   # Pillow's guard, at twice our limit
        raise too_large(f"{label} is too large ({error}); the limit is {max_pixels} "
                        "pixels") from None
    # Opening reads the header and, for JPEG, every marker segment before the pixels: a file cut
    # there fails already (OSError "Truncated File Read"), as a broken header may in other ways.
    except Exception as error:
        raise unprocessable(f"{label} cannot be decoded: {error}") from None
    if image.width * image.height > max_pixels:
        raise too_large(f"{label} is {image.width}x{image.height} = "
                        f"{image.width * image.height} pixels; the limit is {max_pixels}")
    return image


def _decoded(image: Image.Image, label: str, *, max_side: int | None = None,
             shrink_to: int | None = None) -> Decoded:
    """`max_side`: refuse (422) a larger image, from its header. `shrink_to`: scale an image down
    to fit this square before converting it to floats (JPEGs decode at reduced size directly),
    when the caller needs no more detail, so a 16-megapixel photo costs no gigabyte of floats."""
    if max_side and max(image.size) > max_side:
        raise unprocessable(f"{label} is {image.width}x{image.height}; sides up to {max_side} "
                            "pixels are accepted here")
    try:
        if shrink_to:
            image.draft(None, (shrink_to, shrink_to))
        image = _eight_bit_or_float(image)
        ImageOps.exif_transpose(image, in_place=True)   # (a copy otherwise, even when upright)
        if shrink_to:
            image.thumbnail((shrink_to, shrink_to), Image.Resampling.LANCZOS, reducing_gap=None)
        return _to_rgb(image)
    # Decoders of untrusted bytes fail in many ways (OSError for truncation, SyntaxError and
    # ValueError for broken chunks, zlib errors...); each of them is the input's fault.
    except Exception as error:
        raise unprocessable(f"{label} cannot be decoded: {error}") from None


def _eight_bit_or_float(image: Image.Image) -> Image.Image:
    """L, RGB or RGBA (no more channels than the image has), or "F" in [0, 1] for 16-bit
    greyscale (which converting to 8 bits would coarsen)."""
    if image.mode in _SIXTEEN_BIT:
        return Image.fromarray(np.asarray(image, np.float32) / 65535, "F")
    if image.mode in ("L", "RGB", "RGBA"):
        return image
    if image.has_transparency_data:
        return image.convert("RGBA")
    return image.convert("L" if image.mode == "1" else "RGB")


def _to_rgb(image: Image.Image) -> Decoded:
    if image.mode == "F":
        return Decoded(np.clip(np.asarray(image, np.float32), 0, 1))
    # uint8 in, float32 out, in one pass (frombuffer: np.asarray(image) first searches the image
    # for one array protocol after another)
    values = np.frombuffer(image.tobytes(), np.uint8).reshape(image.height, image.width, -1) \
        / np.float32(255)
    if image.mode == "L":
        return Decoded(values[..., 0])
    rgb = values[..., :3]
    if image.mode == "RGBA":
        alpha = values[..., 3:]
        # Transparent pixels become background. Which background depends on the strokes: a digit
        # drawn in white on a transparent canvas needs black behind it, a black one needs white.
        visible = float(alpha.sum())
        strokes_light = (visible > 0
                         and float(((rgb @ LUMA)[..., None] * alpha).sum()) / visible > 0.5)
        background = 0.0 if strokes_light else 1.0
        rgb = rgb * alpha + background * (1 - alpha)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return Decoded(np.ascontiguousarray(rgb[..., 0]))
    return Decoded(np.ascontiguousarray(rgb))
