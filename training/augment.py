"""Random changes to training digits that keep which digit it is: the ways other writers, pens
and scanners differ from MNIST's. Every function takes and returns an N x C x H x W batch in
[0, 1] and draws its randomness from `generator`, so that a seed fixes the whole run.

Recipes (TrainConfig.augment):
- none: the digits as they are;
- light: rotation ±12°, scale ±10 %, shift ±2 px;
- strokes: light, and thinner or thicker strokes;
- elastic: strokes, with shear ±0.2 and elastic distortion (Simard et al. 2003);
- printed-ones: elastic and blur, with 4 in 10 of the 1s left straight and given a typeface's
  flag, and half of those a foot (the default: with deskewing, the best of these on real writers'
  and printed digits together; README, "How good is the model");
- handwriting: rotation ±20°, scale ±20 %, shear ±0.3, elastic distortion, thinner or thicker
  strokes and blur.
Whatever the recipe, training then puts every digit through lens.digit's normalisation, as the
service does to an upload (train.normalised).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RECIPES = ("none", "light", "strokes", "elastic", "printed-ones", "handwriting")
PRINTED_ONES = 0.4   # the share of the 1s drawn as a typeface draws them


def apply(recipe: str, images: torch.Tensor, labels: torch.Tensor,
          generator: torch.Generator) -> torch.Tensor:
    if recipe == "none":
        return images
    if recipe in ("light", "strokes"):
        moved = warp(images, affine(images, generator, degrees=12, scale=0.10, shear=0.0, shift=2))
        return moved if recipe == "light" else thickness(moved, generator)
    if recipe == "elastic":
        grid = affine(images, generator, degrees=12, scale=0.10, shear=0.2, shift=2)
        grid = grid + elastic(images, generator, alpha=1.5, sigma=4.0)
        return thickness(warp(images, grid), generator)
    if recipe == "handwriting":
        grid = affine(images, generator, degrees=20, scale=0.20, shear=0.3, shift=2)
        grid = grid + elastic(images, generator, alpha=1.5, sigma=4.0)
        return blur(thickness(warp(images, grid), generator), generator)
    if recipe == "printed-ones":
        grid = affine(images, generator, degrees=12, scale=0.10, shear=0.2, shift=2)
        printed = (labels == 1) & (torch.rand(len(labels), generator=generator) < PRINTED_ONES)
        # a typeface's 1 is a straight stroke: elastic distortion would bend it into a 2
        grid = grid + elastic(images, generator, alpha=1.5, sigma=4.0) * ~printed[:, None, None, None]
        return blur(thickness(serifs(warp(images, grid), printed, generator), generator), generator)
    raise ValueError(f"unknown augmentation {recipe!r}: choose from {', '.join(RECIPES)}")


def affine(images: torch.Tensor, generator: torch.Generator, degrees: float, scale: float,
           shear: float, shift: float) -> torch.Tensor:
    """A sampling grid (N x H x W x 2, grid_sample's) for a random rotation, scaling, horizontal
    shear and shift (in pixels) of each image."""
    n, _, height, width = images.shape
    def uniform(*size):
        return torch.rand(*size, generator=generator) * 2 - 1
    angle = uniform(n) * math.radians(degrees)
    zoom = 1 + uniform(n) * scale
    slant = uniform(n) * shear
    offset = uniform(n, 2) * (2 * shift / width)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # rotation·scale, then shear x by y
    theta = torch.stack([torch.stack([cos, -sin + slant * cos, offset[:, 0]], 1),
                         torch.stack([sin, cos + slant * sin, offset[:, 1]], 1)], 1)
    return F.affine_grid(theta, [n, 1, height, width], align_corners=False)


def elastic(images: torch.Tensor, generator: torch.Generator, alpha: float,
            sigma: float) -> torch.Tensor:
    """Simard et al.'s elastic distortion as a grid offset: uniform random displacements,
    smoothed by a Gaussian of `sigma` px and scaled to move pixels by about `alpha` px."""
    n, _, height, width = images.shape
    field = torch.rand(n, 2, height, width, generator=generator) * 2 - 1
    smooth = _gaussian(field.reshape(1, 2 * n, height, width), torch.full((2 * n,), sigma))
    smooth = smooth.reshape(n, 2, height, width)
    # a smoothed uniform field has a small spread; rescale so alpha is the typical shift in px
    smooth = smooth / smooth.std().clamp_min(1e-8) * alpha
    return smooth.permute(0, 2, 3, 1) * torch.tensor([2 / width, 2 / height])


def warp(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")


def thickness(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image's strokes made thinner (up to a pixel) or thicker (up to half a pixel): a blend
    towards its grey erosion or dilation. MNIST's strokes are already thick; a fine pen's, fitted
    into 20x20 by the preprocessing, are thinner."""
    amount = torch.rand(len(images), 1, 1, 1, generator=generator) * 1.5 - 1
    thicker = F.max_pool2d(images, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(-images, 3, stride=1, padding=1)
    target = torch.where(amount > 0, thicker, thinner)
    return images + amount.abs() * (target - images)


def blur(images: torch.Tensor, generator: torch.Generator, chance: float = 0.3,
         largest: float = 0.8) -> torch.Tensor:
    """A Gaussian blur of up to `largest` px on a random `chance` of the images (soft pencils,
    out-of-focus photos)."""
    n, channels, height, width = images.shape
    sigma = torch.rand(n, generator=generator) * largest
    sigma = torch.where(torch.rand(n, generator=generator) < chance, sigma, torch.zeros(n))
    flat = images.reshape(1, n * channels, height, width)
    return _gaussian(flat, sigma.repeat_interleave(channels)).reshape(images.shape)


def _gaussian(planes: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each of the 1 x P x H x W planes blurred by its own sigma (0 leaves it as it is)."""
    radius = max(1, math.ceil(3 * float(sigma.max())))
    x = torch.arange(-radius, radius + 1, dtype=planes.dtype)
    kernel = torch.exp(-x[None] ** 2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    count = planes.shape[1]
    rows = F.conv2d(F.pad(planes, (0, 0, radius, radius)), kernel.view(count, 1, -1, 1), groups=count)
    return F.conv2d(F.pad(rows, (radius, radius, 0, 0)), kernel.view(count, 1, 1, -1), groups=count)


def serifs(images: torch.Tensor, chosen: torch.Tensor, generator: torch.Generator,
           feet: float = 0.5) -> torch.Tensor:
    """A flag at the top of each `chosen` image's stroke, and on a `feet` share of them a foot at
    the bottom, in a typeface's proportions: MNIST's writers drew a 1 as a bare stroke, while
    fonts and many writers elsewhere give it a flag and a foot, which a model that never saw one
    reads as 7 or 2. The flag slopes down to the left at 25 to 55° and reaches 20 to 45 % of the
    stroke's height (a 7's bar is level, and longer); the foot is 36 to 64 % of it wide; both have
    the stroke's own width."""
    out = images.clone()
    indices = chosen.nonzero().flatten().tolist()
    draws = torch.rand(len(indices), 4, generator=generator).tolist()
    for index, (flag_length, flag_angle, foot, foot_length) in zip(indices, draws):
        plane = out[index, 0]
        rows = (plane > 0.3).any(dim=1).nonzero().flatten()
        if len(rows) < 8:
            continue
        top, bottom = int(rows[0]), int(rows[-1])
        height = bottom - top + 1
        width = min(max(float((plane > 0.3).sum()) / height, 1.5), 4.0)
        x_top, x_bottom = _centre(plane[top]), _centre(plane[bottom])
        length, angle = height * (0.2 + 0.25 * flag_length), math.radians(25 + 30 * flag_angle)
        head = top + width / 2
        segments = [((x_top, head),
                     (x_top - length * math.cos(angle), head + length * math.sin(angle)))]
        if foot < feet:
            half, base = height * (0.18 + 0.14 * foot_length), bottom - width / 2
            segments.append(((x_bottom - half, base), (x_bottom + half, base)))
        peak = float(plane.max())
        for start, end in segments:
            out[index, 0] = torch.maximum(out[index, 0],
                                          peak * _stroke(plane.shape, start, end, width))
    return out


def _centre(row: torch.Tensor) -> float:
    """The ink-weighted mean column of one row."""
    return float(row @ torch.arange(len(row), dtype=row.dtype) / row.sum())


def _stroke(shape: tuple[int, int], start: tuple[float, float], end: tuple[float, float],
            width: float) -> torch.Tensor:
    """An antialiased straight stroke of `width` px from `start` to `end` ((x, y) in pixels)."""
    ys, xs = torch.meshgrid(torch.arange(shape[0], dtype=torch.float32),
                            torch.arange(shape[1], dtype=torch.float32), indexing="ij")
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    along = (((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-9)).clamp(0, 1)
    distance = torch.hypot(xs - (x0 + along * dx), ys - (y0 + along * dy))
    return (width / 2 + 0.5 - distance).clamp(0, 1)
