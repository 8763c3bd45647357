"""Rendering for validation/make.py: pen strokes, font glyphs, placement on a tile, paper.

Everything is drawn as *ink coverage* (0 = paper, 255 = full ink) on a canvas SUPER times the
tile's size, then area-averaged down: that is the antialiasing. The paper and the ink's tone are
applied last (`compose`), so one drawing can go on any paper.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TILE = 64                   # the stored tile's side, in pixels
SUPER = 4                   # drawing happens at SUPER x TILE, then is averaged down
BIG = TILE * SUPER


# ---- geometry: skeletons to dense polylines --------------------------------------------------

def catmull_rom(points: np.ndarray, per_segment: int = 16) -> np.ndarray:
    """A smooth curve through every point (centripetal Catmull-Rom: no loops or cusps from
    unevenly spaced points); the ends are extended by reflection."""
    if len(points) < 3:
        return points
    padded = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    out = [points[:1]]
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1:i + 3]
        t0 = 0.0
        t1 = t0 + max(np.linalg.norm(p1 - p0), 1e-6) ** 0.5
        t2 = t1 + max(np.linalg.norm(p2 - p1), 1e-6) ** 0.5
        t3 = t2 + max(np.linalg.norm(p3 - p2), 1e-6) ** 0.5
        t = np.linspace(t1, t2, per_segment + 1)[1:, None]
        a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    return np.vstack(out)


def trace(stroke, warp) -> np.ndarray:
    """One stroke (pieces joined end to end) as a dense polyline, control points warped first:
    warping the control points, not the curve, keeps curves smooth and corners sharp."""
    parts = []
    for kind, points in stroke:
        control = warp(np.asarray(points, dtype=float))
        parts.append(catmull_rom(control) if kind == "curve" else control)
    return np.vstack(parts)


def resample(polyline: np.ndarray, spacing: float) -> np.ndarray:
    """Points evenly `spacing` apart along the polyline (its ends kept)."""
    steps = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    if along[-1] == 0:
        return polyline[:1]
    s = np.linspace(0, along[-1], max(2, int(math.ceil(along[-1] / spacing)) + 1))
    return np.column_stack([np.interp(s, along, polyline[:, 0]),
                            np.interp(s, along, polyline[:, 1])])


# ---- a writer: how one person's hand distorts a skeleton -------------------------------------

@dataclass
class Hand:
    """One writer's way of writing one glyph. A smooth random displacement field (a few random
    sine waves) moves the control points, so strokes that meet stay joined; slant, rotation and
    aspect are applied to the traced curve."""
    waves: list          # (amplitude xy, frequency xy, phase)
    slant: float         # x shift per unit height (top to the right when > 0)
    rotation: float      # degrees
    aspect: float        # horizontal stretch

    @classmethod
    def random(cls, rng: np.random.Generator, wobble: float = 0.03) -> "Hand":
        waves = [(rng.uniform(-wobble, wobble, 2), rng.uniform(-1.6, 1.6, 2),
                  rng.uniform(0, 2 * np.pi)) for _ in range(4)]
        return cls(waves, slant=float(rng.uniform(-0.1, 0.3)),
                   rotation=float(rng.uniform(-6, 6)), aspect=float(rng.uniform(0.8, 1.2)))

    def warp(self, points: np.ndarray) -> np.ndarray:
        out = points.copy()
        for amplitude, frequency, phase in self.waves:
            out += amplitude * np.sin(2 * np.pi * points @ frequency + phase)[:, None]
        return out

    def shape(self, points: np.ndarray) -> np.ndarray:
        x, y = points[:, 0] * self.aspect, points[:, 1]
        x = x + self.slant * (1 - y)
        a = math.radians(self.rotation)
        cos, sin = math.cos(a), math.sin(a)
        return np.column_stack([x * cos - y * sin, x * sin + y * cos])

    def write(self, glyph) -> list[np.ndarray]:
        return [self.shape(trace(stroke, self.warp)) for stroke in glyph]


# ---- placement: where and how big the ink lands on the tile ---------------------------------

LAYOUTS = {   # name: (probability, ink height as a fraction of the tile)
    "centred": (0.5, (0.55, 0.8)),
    "off_centre": (0.3, (0.42, 0.68)),
    "small": (0.2, (0.26, 0.42)),       # a digit on a sticky note: lots of paper around it
}


def pick_layout(rng: np.random.Generator) -> tuple[str, float]:
    names = list(LAYOUTS)
    name = names[rng.choice(len(names), p=[LAYOUTS[n][0] for n in names])]
    return name, float(rng.uniform(*LAYOUTS[name][1]))


def place(rng: np.random.Generator, layout: str, width: float, height: float,
          side: float) -> tuple[float, float]:
    """Top-left corner for a width x height ink box on a side x side tile: centred with a small
    jitter, or anywhere it fits with a small margin."""
    margin = side * 0.03
    if layout == "centred":
        jitter = side * 0.05
        x = (side - width) / 2 + rng.uniform(-jitter, jitter)
        y = (side - height) / 2 + rng.uniform(-jitter, jitter)
    else:
        x = rng.uniform(margin, max(margin, side - margin - width))
        y = rng.uniform(margin, max(margin, side - margin - height))
    return (float(np.clip(x, margin, max(margin, side - margin - width))),
            float(np.clip(y, margin, max(margin, side - margin - height))))


def fit(polylines: list[np.ndarray], ink_height: float, pen: float, side: float,
        max_width: float) -> tuple[list[np.ndarray], float, float]:
    """Scale polylines (unit space) so the ink, pen included, is `ink_height` tall (narrowed if
    wider than `max_width`); returns them with their origin at (0, 0) and the ink box size."""
    allpoints = np.vstack(polylines)
    low, high = allpoints.min(axis=0), allpoints.max(axis=0)
    extent = np.maximum(high - low, 1e-6)
    scale = (ink_height - pen) / extent[1]
    if extent[0] * scale + pen > max_width:
        scale = (max_width - pen) / extent[0]
    moved = [(p - low) * scale + pen / 2 for p in polylines]
    return moved, float(extent[0] * scale + pen), float(extent[1] * scale + pen)


# ---- the pen -------------------------------------------------------------------------------

PENS = {   # name: stroke width range in tile pixels (64 px tile)
    "fine": (1.3, 2.0),
    "medium": (2.0, 3.2),
    "bold": (3.2, 4.6),
    "marker": (4.6, 6.2),
}
PRESSURES = ("even", "varying", "tapered")


def pressure_profile(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Relative width along a stroke: even; varying (a slow swell, like pressing harder in
    places); or tapered (thin ends, like a quick flick of a pen)."""
    t = np.linspace(0, 1, n)
    if kind == "varying":
        return 1 + 0.3 * np.sin(2 * np.pi * (rng.uniform(0.5, 1.5) * t + rng.uniform(0, 1)))
    if kind == "tapered":
        return np.clip(np.minimum(t, 1 - t) / 0.12, 0.35, 1.0)
    return np.ones(n)


def draw_strokes(polylines: list[np.ndarray], width: float, pressure: str,
                 rng: np.random.Generator) -> Image.Image:
    """Coverage on the BIG canvas; polylines in BIG pixels, width in BIG pixels. A stroke is a
    chain of discs close enough to overlap: round caps and joins, and any width profile."""
    canvas = Image.new("L", (BIG, BIG), 0)
    draw = ImageDraw.Draw(canvas)
    for polyline in polylines:
        points = resample(polyline, max(0.5, width / 6))
        radii = width / 2 * pressure_profile(pressure, rng, len(points))
        for (x, y), r in zip(points, radii):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return canvas


def render_skeleton(glyph, rng: np.random.Generator, wobble: float = 0.03,
                    pens: tuple[str, ...] = tuple(PENS)) -> tuple[Image.Image, dict]:
    """A skeleton written by a random hand with a random pen (one of `pens`), placed on the BIG
    canvas."""
    hand = Hand.random(rng, wobble)
    pen_name = pens[rng.integers(len(pens))]
    pen = float(rng.uniform(*PENS[pen_name]))
    pressure = PRESSURES[rng.integers(len(PRESSURES))]
    layout, height = pick_layout(rng)
    # A thick pen on a small digit fills it in: no one writes a 15 px digit with a marker.
    pen = min(pen, height * TILE * 0.14)
    polylines, w, h = fit(hand.write(glyph), height * BIG, pen * SUPER, BIG, 0.92 * BIG)
    x, y = place(rng, layout, w, h, BIG)
    canvas = draw_strokes([p + (x, y) for p in polylines], pen * SUPER, pressure, rng)
    meta = dict(pen=pen_name, pen_px=round(pen, 2), pressure=pressure, layout=layout,
                slant=round(hand.slant, 2), rotation=round(hand.rotation, 1),
                aspect=round(hand.aspect, 2))
    return canvas, meta


# ---- font glyphs -----------------------------------------------------------------------------

_FONTS: dict[str, ImageFont.FreeTypeFont] = {}


def glyph_image(font_path: str, char: str, size: int = 360) -> Image.Image:
    """The character's ink, cropped to it, as coverage."""
    font = _FONTS.setdefault(font_path, ImageFont.truetype(font_path, size))
    canvas = Image.new("L", (size * 3, size * 3), 0)
    ImageDraw.Draw(canvas).text((size, size), char, font=font, fill=255)
    return canvas.crop(canvas.getbbox())


def transform_glyph(glyph: Image.Image, rotation: float, shear: float,
                    aspect: float) -> Image.Image:
    """Rotate (degrees, counter-clockwise), shear (top to the right when > 0) and stretch
    horizontally, then crop to the ink again."""
    w, h = glyph.size
    sheared_w = int(w + abs(shear) * h) + 2
    # PIL's affine maps output to input pixels: x_in = x_out + shear * y_out - offset.
    offset = shear * h if shear > 0 else 0
    glyph = glyph.transform((sheared_w, h), Image.Transform.AFFINE,
                            (1, shear, -offset, 0, 1, 0), resample=Image.Resampling.BICUBIC)
    glyph = glyph.resize((max(1, round(glyph.width * aspect)), glyph.height),
                         Image.Resampling.BICUBIC)
    glyph = glyph.rotate(rotation, resample=Image.Resampling.BICUBIC, expand=True)
    return glyph.crop(glyph.getbbox())


def paste_glyph(glyph: Image.Image, rng: np.random.Generator, layout: str,
                height: float) -> Image.Image:
    """The glyph scaled to `height` (a fraction of the tile; narrowed if too wide), placed on
    the BIG canvas."""
    scale = height * BIG / glyph.height
    if glyph.width * scale > 0.92 * BIG:
        scale = 0.92 * BIG / glyph.width
    size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
    glyph = glyph.resize(size, Image.Resampling.LANCZOS)
    x, y = place(rng, layout, size[0], size[1], BIG)
    canvas = Image.new("L", (BIG, BIG), 0)
    canvas.paste(glyph, (round(x), round(y)))
    return canvas


# ---- paper and the final tile ----------------------------------------------------------------

def shrink(canvas: Image.Image) -> np.ndarray:
    """BIG canvas to the tile by area averaging: coverage in 0..1."""
    return np.asarray(canvas.resize((TILE, TILE), Image.Resampling.BOX), dtype=np.float64) / 255


def smooth_noise(rng: np.random.Generator, cells: int, side: int = TILE) -> np.ndarray:
    """Smooth random field in about -1..1: random values on a coarse grid, bicubic upsampled."""
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float64)


def gradient(rng: np.random.Generator, side: int = TILE) -> np.ndarray:
    """A linear ramp 0..1 in a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1) - 0.5
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
    return (ramp - ramp.min()) / (ramp.max() - ramp.min())


def paper(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Paper brightness 0..255: clean white; grain (a photographed sheet's fibre and sensor
    noise); shadow (a hand or phone shading part of the sheet); tinted (a sticky note or
    recycled paper, in grey)."""
    if kind == "white":
        return np.full((TILE, TILE), 255.0)
    if kind == "grain":
        return 242 + 5 * smooth_noise(rng, 24) + rng.normal(0, 2.5, (TILE, TILE))
    if kind == "shadow":
        return 250 - rng.uniform(40, 90) * gradient(rng) ** rng.uniform(1, 2.5)
    if kind == "tinted":
        return np.full((TILE, TILE), rng.uniform(200, 238)) + 3 * smooth_noise(rng, 8)
    raise ValueError(kind)


def compose(coverage: np.ndarray, paper_tone: np.ndarray, ink: float = 0.0) -> np.ndarray:
    return paper_tone * (1 - coverage) + ink * coverage


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur, edges reflected (Pillow's blur works on 8-bit images only)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, radius, mode="reflect")
    rows = np.apply_along_axis(np.convolve, 1, padded, kernel, mode="valid")
    return np.apply_along_axis(np.convolve, 0, rows, kernel, mode="valid")


def finish(image: np.ndarray, rng: np.random.Generator | None = None, blur: float = 0.0,
           noise: float = 0.0) -> np.ndarray:
    """Optical blur and sensor noise, then uint8."""
    if blur > 0:
        image = gaussian_blur(image, blur)
    if noise > 0:
        image = image + rng.normal(0, noise, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
