"""Image operations used while optimising, on float NCHW arrays in [0, 1].

Besides the deterministic operations (blur, resize, roll) this module owns transformation
robustness in Lucent's spirit (lucent/optvis/transform.py): random jitter, scale and rotation,
chained by `compose`. A picture that still excites a unit after being shifted, scaled and turned
a little is about the unit rather than about one pixel grid. Every random transform, sampled with
an rng for an image size, gives a `Sample`: `apply`, linear in the images, and `adjoint`, its
exact transpose, which takes the gradient measured on the transformed images back to the images
being optimised. One sample serves a whole batch.
"""
from __future__ import annotations

import itertools
from typing import Callable, NamedTuple, Sequence

import numpy as np
from PIL import Image

# Transformation robustness for 28x28 digits: Lucent's standard_transforms are made for ~224-pixel
# images (jitter 8 then 4 pixels, scale +-10%, rotation +-10 degrees); jitter scales with the
# image, so a digit gets 2 then 1 pixels, while scale and angle are size-free and stay.
JITTER = 2
FINE_JITTER = 1
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))      # 0.90, 0.92, ... 1.10
DEGREES = tuple(range(-10, 11)) + 5 * (0,)              # upright more often than any one tilt


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


class Sample(NamedTuple):
    apply: Callable[[np.ndarray], np.ndarray]
    adjoint: Callable[[np.ndarray], np.ndarray]


Transform = Callable[[np.random.Generator, tuple[int, int]], Sample]


def jitter(pixels: int) -> Transform:
    """A circular shift by up to `pixels` in each direction; its adjoint is the shift back."""
    def sample(rng, size):
        dy, dx = (int(d) for d in rng.integers(-pixels, pixels + 1, size=2))
        return Sample(lambda images: roll(images, dy, dx), lambda grad: roll(grad, -dy, -dx))
    return sample


def random_scale(scales: Sequence[float]) -> Transform:
    """Magnify about the centre by a factor drawn from `scales`, keeping the image size."""
    def sample(rng, size):
        return affine(size, scale=scales[rng.integers(len(scales))])
    return sample


def random_rotate(degrees: Sequence[float]) -> Transform:
    """Turn about the centre by an angle drawn from `degrees`, counter-clockwise as displayed."""
    def sample(rng, size):
        return affine(size, degrees=degrees[rng.integers(len(degrees))])
    return sample


def compose(*transforms: Transform) -> Transform:
    """Apply `transforms` in order; the adjoint of a chain is the adjoints in reverse order."""
    def sample(rng, size):
        samples = [transform(rng, size) for transform in transforms]

        def apply(images):
            for s in samples:
                images = s.apply(images)
            return images

        def adjoint(grad):
            for s in reversed(samples):
                grad = s.adjoint(grad)
            return grad
        return Sample(apply, adjoint)
    return sample


STANDARD = compose(jitter(JITTER), random_scale(SCALES), random_rotate(DEGREES),
                   jitter(FINE_JITTER))


def affine(size: tuple[int, int], scale: float = 1.0, degrees: float = 0.0) -> Sample:
    """Magnify by `scale` and turn by `degrees` (counter-clockwise as displayed) about the image
    centre, by bilinear interpolation, keeping the size.

    Output pixel centres are mapped back to source coordinates (pixel centres at integers, the
    centre at ((H - 1) / 2, (W - 1) / 2): torch's grid_sample with align_corners=False). Source
    pixels outside the image read as 0, MNIST's background, rather than repeating the edge, which
    would smear a border stroke or a photo's edge inwards; with zeros the adjoint simply drops the
    gradient that fell outside.
    """
    height, width = size
    # Offsets from the centre, broadcast to (H, W) by the arithmetic below.
    rows = np.arange(height)[:, None] - (height - 1) / 2
    cols = np.arange(width)[None, :] - (width - 1) / 2
    cos, sin = np.cos(np.radians(degrees)) / scale, np.sin(np.radians(degrees)) / scale
    source_rows = (height - 1) / 2 + sin * cols + cos * rows
    source_cols = (width - 1) / 2 + cos * cols - sin * rows
    sources, weights = _bilinear_taps(source_rows.ravel(), source_cols.ravel(), height, width)
    return _resampling(sources, weights, height * width)


def _bilinear_taps(rows: np.ndarray, cols: np.ndarray, height: int, width: int):
    """The 4 source pixels (flat indices, shape (4, P)) and weights of bilinear interpolation at
    P points: the products of the two linear taps along each axis."""
    # Filled in place: for a 512x512 image, allocating and stacking temporaries was half the cost.
    sources, weights = np.empty((4, rows.size), np.intp), np.empty((4, rows.size))
    taps = itertools.product(_linear_taps(rows, height), _linear_taps(cols, width))
    for k, ((row, row_weight), (col, col_weight)) in enumerate(taps):
        np.multiply(row, width, out=sources[k])
        sources[k] += col
        np.multiply(row_weight, col_weight, out=weights[k])
    return sources, weights


def _linear_taps(coords: np.ndarray, length: int):
    """The two neighbours of each coordinate on one axis and their linear-interpolation weights.
    A neighbour outside [0, length) is the zero padding: weight 0, and an index clamped into range
    only so that gathering it is harmless."""
    low = np.floor(coords)
    frac = coords - low
    low = low.astype(np.intp)
    return [(np.clip(index, 0, length - 1), np.where((index >= 0) & (index < length), weight, 0.0))
            for index, weight in ((low, 1 - frac), (low + 1, frac))]


def _resampling(sources: np.ndarray, weights: np.ndarray, pixels: int) -> Sample:
    """The linear map out[p] = sum_k weights[k, p] * image[sources[k, p]] on every plane of a
    batch (gather), and its transpose (scatter-add, by bincount)."""
    def apply(images):
        planes = images.reshape(-1, pixels)
        taps = np.take(planes, sources, axis=1)
        out = (taps * weights.astype(images.dtype, copy=False)).sum(axis=1)
        return out.reshape(images.shape).astype(images.dtype, copy=False)

    def adjoint(grad):
        planes = grad.reshape(-1, pixels)
        # One bincount for the whole batch: plane i's pixels are numbered from i * pixels.
        targets = np.arange(len(planes))[:, None, None] * pixels + sources
        out = np.bincount(targets.ravel(), (planes[:, None, :] * weights).ravel(),
                          minlength=planes.size)
        return out.reshape(grad.shape).astype(grad.dtype, copy=False)
    return Sample(apply, adjoint)
