"""Image operations used while optimising, on float32 NCHW arrays in [0, 1]."""
from __future__ import annotations

import numpy as np
from PIL import Image


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders; the smoothness prior of feature
    visualisation (high frequencies are what gradient ascent adds first and means least)."""
    if sigma <= 0:
        return images
    radius = max(1, int(round(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = images
    for axis in (2, 3):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if out.shape[axis] > radius else "edge")
        out = sum(kernel[i] * np.take(padded, np.arange(i, i + out.shape[axis]), axis=axis)
                  for i in range(len(kernel)))
    return out.astype(np.float32)


def resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of every channel (Pillow's float mode, so no 8-bit rounding)."""
    if images.shape[2:] == (height, width):
        return images
    n, c = images.shape[:2]
    out = np.empty((n, c, height, width), np.float32)
    for i in range(n):
        for j in range(c):
            plane = Image.fromarray(images[i, j].astype(np.float32), mode="F")
            out[i, j] = np.asarray(plane.resize((width, height), Image.Resampling.BICUBIC))
    return out


def roll(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Circular shift: exactly invertible, so a gradient taken on a jittered image can be shifted
    back onto the image being optimised."""
    return np.roll(images, (dy, dx), axis=(2, 3))
