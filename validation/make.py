"""Generate the out-of-distribution validation sets (dev time only): `python validation/make.py`.

Writes validation/{handwriting,printed,nondigits}.png (sprite sheets of 64x64 greyscale tiles,
row-major, 50 a row, dark ink on light paper) and .json (labels or kinds and per-tile metadata),
and validation/preview.png. Deterministic: every tile draws from its own seeded generator, so the
same machine (same fonts, Pillow, numpy, chromium) regenerates the files bit for bit.

Needs (none of it is a dependency of the project; see validation/README.md):
  Debian: chromium; fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-noto-core
    fonts-freefont-ttf fonts-cantarell fonts-inconsolata fonts-urw-base35 fonts-texgyre
    fonts-crosextra-carlito fonts-linuxlibertine fonts-open-sans fonts-roboto-unhinted fonts-hack
    fonts-jetbrains-mono fonts-go fonts-lato fonts-oxygen fonts-firacode (printed digits);
    fonts-humor-sans fonts-dkg-handwriting fonts-comic-neue fonts-breip fonts-bwht
    fonts-rufscript fonts-sjfonts fonts-yusei-magic fonts-kaushanscript (handwriting fonts);
    hershey-fonts-data (Hershey stroke fonts).
  Python (the project's venv): numpy, pillow, playwright, matplotlib (its sample photo; mlxtend
    brings it), and scikit-image (its sample photos: `pip install scikit-image`).
The browser part starts the service (`python -m flask --app service:create_app run`) and draws
on its playground page; `--no-browser` skips it (and so does not regenerate handwriting's canvas
tiles the same: use it only to iterate on the other sources).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if __package__ in (None, ""):      # run as a script: make `validation` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import hershey, render, strokes                           # noqa: E402
from validation.render import BIG, TILE                                   # noqa: E402

HERE = Path(__file__).resolve().parent
COLUMNS = 50
INK_NOTE = "dark ink on light paper (paper near 255, ink near 0)"
SEEDS = {"handwriting": 1001, "printed": 2002, "nondigits": 3003}

FONTS = Path("/usr/share/fonts")
GYRE = Path("/usr/share/texmf/fonts/opentype/public/tex-gyre")

# Fonts that look hand-written (Debian packages). Left out: femkeklaver (outlined), Dancing
# Script and Leckerli One (calligraphic display faces): nobody writes digits like that; dkg's
# italics, whose 1s and 7s lean so far they read as slashes.
HANDWRITING_FONTS = [FONTS / p for p in (
    "truetype/humor-sans/Humor-Sans.ttf",
    "truetype/fifthhorseman/dkg.ttf", "truetype/fifthhorseman/dkgBd.ttf",
    "opentype/comic-neue/ComicNeue-Regular.otf", "opentype/comic-neue/ComicNeue-LightItalic.otf",
    "truetype/breip/Breip.ttf",
    "opentype/bwht/BecauseWeBuild-Regular.otf", "opentype/bwht/BecauseWeConnect-Regular.otf",
    "opentype/bwht/BecauseWeCreate-Regular.otf", "opentype/bwht/BecauseWeLearn-Regular.otf",
    "opentype/bwht/BecauseWeMentor-Regular.otf", "opentype/bwht/BecauseWeOrganize-Regular.otf",
    "truetype/rufscript/Rufscript010.ttf",
    "truetype/sjfonts/Delphine.ttf", "truetype/sjfonts/SteveHand.ttf",
    "truetype/yusei-magic/YuseiMagic-Regular.ttf",
    "opentype/kaushanscript/KaushanScript-Regular.otf",
    "opentype/comic-neue/ComicNeue-Bold.otf",
)]

# Glyphs a person would misread out of context: Delphine's 1 has a flag as long as its stem,
# a caret once tilted.
AMBIGUOUS_GLYPHS = {("Delphine", 1)}
SLANTED_FONTS = {"ComicNeue-LightItalic", "Delphine", "KaushanScript-Regular"}

# 50 printed faces, one of each digit from each: serif, sans, mono, condensed, bold, italic,
# light. Fonts with old-style (descending) figures by default, e.g. EB Garamond, are left out.
PRINTED_FONTS = [FONTS / p for p in (
    "truetype/dejavu/DejaVuSans.ttf", "truetype/dejavu/DejaVuSans-Bold.ttf",
    "truetype/dejavu/DejaVuSerif.ttf", "truetype/dejavu/DejaVuSansMono.ttf",
    "truetype/dejavu/DejaVuSerif-Italic.ttf", "truetype/dejavu/DejaVuSansCondensed-BoldOblique.ttf",
    "truetype/dejavu/DejaVuSans-ExtraLight.ttf",
    "truetype/liberation/LiberationSans-Regular.ttf",
    "truetype/liberation/LiberationSerif-Regular.ttf",
    "truetype/liberation/LiberationMono-Regular.ttf",
    "truetype/liberation/LiberationSansNarrow-Bold.ttf",
    "truetype/liberation/LiberationSerif-BoldItalic.ttf",
    "truetype/noto/NotoSans-Regular.ttf", "truetype/noto/NotoSerif-Regular.ttf",
    "truetype/noto/NotoSans-BoldItalic.ttf", "truetype/noto/NotoSerif-Bold.ttf",
    "truetype/freefont/FreeSerifItalic.ttf", "truetype/freefont/FreeMonoBold.ttf",
    "opentype/cantarell/Cantarell-Regular.otf", "opentype/cantarell/Cantarell-ExtraBold.otf",
    "truetype/inconsolata/Inconsolata.otf",
    "opentype/urw-base35/NimbusSans-Regular.otf", "opentype/urw-base35/NimbusRoman-Italic.otf",
    "opentype/urw-base35/NimbusMonoPS-Regular.otf", "opentype/urw-base35/URWBookman-Light.otf",
    "opentype/urw-base35/URWGothic-Book.otf", "opentype/urw-base35/C059-Roman.otf",
    "opentype/urw-base35/P052-Bold.otf", "opentype/urw-base35/NimbusSansNarrow-Bold.otf",
    "opentype/urw-base35/Z003-MediumItalic.otf",
    "truetype/crosextra/Carlito-Bold.ttf", "opentype/linux-libertine/LinLibertine_R.otf",
    "truetype/open-sans/OpenSans-Regular.ttf", "truetype/open-sans/OpenSans-Light.ttf",
    "truetype/open-sans/OpenSans-ExtraBold.ttf",
    "truetype/roboto/unhinted/RobotoTTF/Roboto-Regular.ttf",
    "truetype/roboto/unhinted/RobotoTTF/Roboto-Thin.ttf",
    "truetype/roboto/unhinted/RobotoTTF/Roboto-Black.ttf",
    "truetype/roboto/unhinted/RobotoCondensed-Regular.ttf",
    "truetype/hack/Hack-Regular.ttf", "truetype/jetbrains-mono/JetBrainsMono-Regular.ttf",
    "truetype/jetbrains-mono/JetBrainsMono-ExtraBoldItalic.ttf",
    "fonts-go/Go-Regular.ttf", "fonts-go/Go-Mono.ttf",
    "truetype/lato/Lato-Regular.ttf", "truetype/lato/Lato-Black.ttf",
    "truetype/oxygen/Oxygen-Sans.ttf", "truetype/firacode/FiraCode-Regular.ttf",
)] + [GYRE / "texgyreadventor-bold.otf", GYRE / "texgyreschola-italic.otf"]

HERSHEY_FONTS = ("futural", "scripts", "scriptc")   # single-stroke roman, nib-pen scripts
LETTERS = "ACEFHKMNPRTUVWXYacehkmnruvwxy"            # no digit look-alikes (no O D Q I l S Z B G)


def tile_rng(set_name: str, *key: int) -> np.random.Generator:
    """Each tile its own generator: changing one source leaves every other tile as it was."""
    return np.random.default_rng([SEEDS[set_name], *key])


# ---- one tile from each kind of source ---------------------------------------------------------

def skeleton_tile(glyph, rng: np.random.Generator, wobble: float = 0.03,
                  pens: tuple[str, ...] = tuple(render.PENS)) -> tuple[np.ndarray, dict]:
    """A skeleton written by a random hand with a random pen, black on white."""
    canvas, meta = render.render_skeleton(glyph, rng, wobble, pens)
    return render.finish(render.compose(render.shrink(canvas), render.paper("white", rng))), meta


def font_tile(font: Path, char: str, rng: np.random.Generator, rotation: float,
              shear: float, aspect: float) -> tuple[np.ndarray, dict]:
    """A font's glyph, transformed, placed, as clean coverage (paper and ink are the caller's)."""
    glyph = render.transform_glyph(render.glyph_image(str(font), char), rotation, shear, aspect)
    layout, height = render.pick_layout(rng)
    coverage = render.shrink(render.paste_glyph(glyph, rng, layout, height))
    meta = dict(font=font.stem, layout=layout, rotation=round(rotation, 1),
                shear=round(shear, 2), aspect=round(aspect, 2))
    return coverage, meta


def handwriting_font(digit: int, i: int) -> Path:
    """The i-th font for a digit: round robin, shifted per digit, skipping ambiguous glyphs."""
    n = len(HANDWRITING_FONTS)
    for step in range(n):
        font = HANDWRITING_FONTS[(digit + i + step) % n]
        if (font.stem, digit) not in AMBIGUOUS_GLYPHS:
            return font
    raise ValueError(digit)


def handwriting_font_tile(font: Path, char: str,
                          rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A handwriting font's glyph with a writer's slant, tilt and width; fonts that already lean
    get little more, or their 1s and 7s lie down like slashes."""
    shear = (-0.15, 0.05) if font.stem in SLANTED_FONTS else (-0.1, 0.3)
    coverage, meta = font_tile(font, char, rng, rotation=float(rng.uniform(-8, 8)),
                               shear=float(rng.uniform(*shear)),
                               aspect=float(rng.uniform(0.8, 1.2)))
    return render.finish(render.compose(coverage, render.paper("white", rng))), meta


def canvas_tile(pad, glyph, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The skeleton written by a random hand, drawn with the mouse on the playground's pad."""
    from validation.browser import BRUSH_RANGE, PAD_SIDE

    hand = render.Hand.random(rng, 0.03)
    layout, height = render.pick_layout(rng)
    brush = int(np.clip(round(height * PAD_SIDE * rng.uniform(0.05, 0.14)), *BRUSH_RANGE))
    polylines, w, h = render.fit(hand.write(glyph), height * PAD_SIDE, brush, PAD_SIDE,
                                 0.92 * PAD_SIDE)
    x, y = render.place(rng, layout, w, h, PAD_SIDE)
    # About one mouse event every 6 pad pixels, like a hand moving a mouse at a steady pace.
    strokes_px = [render.resample(p + (x, y), 6.0) for p in polylines]
    image = pad.draw(strokes_px, brush)
    tile = np.asarray(image.resize((TILE, TILE), Image.Resampling.BOX), dtype=np.uint8)
    meta = dict(brush=brush, pen_px=round(brush * TILE / PAD_SIDE, 2), layout=layout,
                slant=round(hand.slant, 2), rotation=round(hand.rotation, 1),
                aspect=round(hand.aspect, 2))
    return tile, meta


# ---- the sets ------------------------------------------------------------------------------------

HANDWRITING_SOURCES = (("strokes", 40), ("canvas", 25), ("fonts", 20), ("hershey", 15))


def handwriting_tile(source: str, digit: int, i: int, rng: np.random.Generator,
                     pad) -> tuple[np.ndarray, dict]:
    """The i-th tile of a digit from one source (metadata without label and source)."""
    if source in ("strokes", "canvas"):
        variants = list(strokes.DIGITS[digit].items())
        variant, glyph = variants[i % len(variants)]
        if source == "strokes":
            tile, meta = skeleton_tile(glyph, rng)
        else:
            tile, meta = canvas_tile(pad, glyph, rng)
        return tile, dict(variant=variant) | meta
    if source == "fonts":
        return handwriting_font_tile(handwriting_font(digit, i), str(digit), rng)
    font = HERSHEY_FONTS[(digit + i) % len(HERSHEY_FONTS)]
    # The script faces draw thick parts as 2-3 close lines: a thin pen keeps them apart.
    pens = ("fine", "medium") if font != "futural" else tuple(render.PENS)
    tile, meta = skeleton_tile(hershey.glyph(font, str(digit)), rng, 0.02, pens)
    return tile, dict(font=font) | meta


def make_handwriting(pad) -> tuple[list[np.ndarray], list[dict]]:
    """100 of each digit: 40 pen skeletons (PIL), 25 of the same kind drawn on the playground's
    canvas in chromium (none when `pad` is None), 20 in handwriting fonts, 15 in Hershey stroke
    fonts with a random pen."""
    tiles, items = [], []
    for digit in range(10):
        k = 0                                   # the tile's index within its class: its seed
        for source, count in HANDWRITING_SOURCES:
            for i in range(count):
                rng = tile_rng("handwriting", digit, k)
                k += 1
                if source == "canvas" and pad is None:
                    continue
                tile, meta = handwriting_tile(source, digit, i, rng, pad)
                tiles.append(tile)
                items.append(dict(label=digit, source=source) | meta)
    return tiles, items


PRINTED_PAPERS = (("white", 0.4), ("grain", 0.25), ("shadow", 0.2), ("tinted", 0.15))


def printed_tile(font: Path, digit: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A printed digit photographed or scanned: upright give or take 10 degrees, on white or
    textured or shaded paper, ink not quite black, sometimes slightly out of focus."""
    coverage, meta = font_tile(font, str(digit), rng, rotation=float(rng.uniform(-10, 10)),
                               shear=0.0, aspect=1.0)
    names, weights = zip(*PRINTED_PAPERS)
    paper_kind = names[rng.choice(len(names), p=weights)]
    ink = float(rng.uniform(0, 60))
    blur = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.35 else 0.0
    noise = float(rng.uniform(1, 4)) if paper_kind != "white" else 0.0
    tile = render.finish(render.compose(coverage, render.paper(paper_kind, rng), ink),
                         rng, blur, noise)
    del meta["shear"], meta["aspect"]
    return tile, meta | dict(paper=paper_kind, ink=round(ink), blur=round(blur, 2),
                             noise=round(noise, 1))


def make_printed() -> tuple[list[np.ndarray], list[dict]]:
    """50 of each digit: every digit once in each of 50 printed faces."""
    tiles, items = [], []
    for digit in range(10):
        for i, font in enumerate(PRINTED_FONTS):
            tile, meta = printed_tile(font, digit, tile_rng("printed", digit, i))
            tiles.append(tile)
            items.append(dict(label=digit, source="fonts") | meta)
    return tiles, items


# -- non-digits --

def blank_tile(i: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Nothing drawn: a white canvas, a black canvas (the playground's default), a flat grey."""
    style, level = (("white", 255), ("black", 0), ("grey", None))[i % 3]
    level = int(rng.integers(30, 226)) if level is None else level
    return np.full((TILE, TILE), level, np.uint8), dict(style=style, level=level)


def near_blank_tile(i: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Almost nothing: what a pen touching the pad by accident, dust, a smudge or a photo of a
    blank sheet look like. Half the marks are light on a dark canvas, as the pad draws them."""
    style = ("dot", "speck", "smudge", "pixels", "paper")[i % 5]
    if style == "paper":
        kind = ("grain", "shadow", "tinted")[i % 3]
        return render.finish(render.paper(kind, rng), rng, noise=2.0), dict(style=style, paper=kind)
    mark = np.zeros((TILE, TILE))
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    cy, cx = rng.uniform(6, TILE - 6, 2)
    if style == "dot":
        radius = rng.uniform(0.8, 3.0)
        mark = np.clip(radius + 0.5 - np.hypot(yy - cy, xx - cx), 0, 1)
    elif style == "speck":
        for _ in range(int(rng.integers(1, 4))):
            mark[int(cy + rng.integers(-2, 3)), int(cx + rng.integers(-2, 3))] = rng.uniform(0.5, 1)
    elif style == "smudge":
        sigma = rng.uniform(4, 12)
        depth = rng.uniform(0.05, 0.2)
        mark = depth * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    else:
        count = int(rng.integers(5, 40))
        values = rng.uniform(0.3, 1, count)
        rows, columns = rng.integers(0, TILE, count), rng.integers(0, TILE, count)
        mark[rows, columns] = values
    dark_canvas = i % 2 == 1
    tile = 255 * mark if dark_canvas else 255 * (1 - mark)
    return render.finish(tile), dict(style=style, polarity="light_on_dark" if dark_canvas
                                     else "dark_on_light")


def photo_sources() -> list[tuple[str, np.ndarray]]:
    """Real photographs shipped inside Python packages, in grey: scikit-image's sample images
    that are public domain or CC0 (their docstrings say so; `moon` and `stereo_motorcycle` state
    no licence and are left out; none has text, a clock face or digits in it) and matplotlib's
    Grace Hopper (US Navy, public domain)."""
    import matplotlib
    import skimage.data

    names = ("astronaut", "camera", "cat", "coffee", "coins", "hubble_deep_field", "rocket",
             "retina", "immunohistochemistry", "cell", "microaneurysms")
    photos = [(f"skimage.data.{name}",
               np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("L")))
              for name in names]
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photos.append(("matplotlib grace_hopper.jpg", np.asarray(Image.open(hopper).convert("L"))))
    return photos


def photo_tile(photo: tuple[str, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A random square crop (a fifth to all of the short side), scaled to the tile."""
    name, image = photo
    side = int(min(image.shape) * rng.uniform(0.2, 1.0))
    top = int(rng.integers(0, image.shape[0] - side + 1))
    left = int(rng.integers(0, image.shape[1] - side + 1))
    crop = Image.fromarray(image[top:top + side, left:left + side])
    tile = np.asarray(crop.resize((TILE, TILE), Image.Resampling.LANCZOS), dtype=np.uint8)
    return tile, dict(style="crop", image=name, box=[left, top, side])


def noise_tile(i: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    style = ("uniform", "gaussian", "salt_pepper")[i % 3]
    if style == "uniform":
        image = rng.uniform(0, 256, (TILE, TILE))
    elif style == "gaussian":
        image = rng.normal(rng.uniform(80, 180), rng.uniform(20, 70), (TILE, TILE))
    else:
        density = rng.uniform(0.02, 0.3)
        image = np.full((TILE, TILE), rng.choice([255.0, rng.uniform(100, 200)]))
        hits = rng.random((TILE, TILE)) < density
        image[hits] = rng.choice([0.0, 255.0], int(hits.sum()))
    return render.finish(image), dict(style=style)


def texture_tile(i: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Smooth or regular patterns: ramps, radial light, fine stripes and checks (never so coarse
    that one bar could pass for a 1), cloudy blobs, and brick, grass and gravel photographs."""
    style = ("linear_gradient", "radial_gradient", "stripes", "checker", "clouds",
             "material")[i % 6]
    yy, xx = np.mgrid[0:TILE, 0:TILE] / TILE
    low, high = sorted(rng.uniform(0, 255, 2))
    if style == "linear_gradient":
        unit = render.gradient(rng)
    elif style == "radial_gradient":
        cy, cx = rng.uniform(0, 1, 2)
        unit = np.clip(np.hypot(yy - cy, xx - cx) / rng.uniform(0.4, 1.0), 0, 1)
    elif style == "stripes":
        angle, periods = rng.uniform(0, np.pi), rng.uniform(5, 12)
        unit = 0.5 + 0.5 * np.sin(2 * np.pi * periods * (xx * np.cos(angle) + yy * np.sin(angle)))
    elif style == "checker":
        cells = int(rng.integers(4, 10))
        unit = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2).astype(float)
    elif style == "clouds":
        unit = (render.smooth_noise(rng, int(rng.integers(3, 8))) + 1) / 2
    else:
        return material_tile(i, rng)
    return render.finish(low + (high - low) * unit), dict(style=style)


def material_tile(i: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    import skimage.data

    name = ("brick", "grass", "gravel")[(i // 6) % 3]
    image = getattr(skimage.data, name)()
    tile, meta = photo_tile((f"skimage.data.{name}", image), rng)
    return tile, meta | dict(style="material")


def letter_tile(i: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A letter that is no digit look-alike: in a printed or handwriting font (50), as a pen
    skeleton (30), or in a Hershey stroke font (10)."""
    char = LETTERS[(i * 7) % len(LETTERS)]          # 7 is coprime with 29: every letter comes round
    if i < 50:
        fonts = PRINTED_FONTS if i % 2 == 0 else HANDWRITING_FONTS
        font = fonts[(i // 2) % len(fonts)]
        coverage, meta = font_tile(font, char, rng, rotation=float(rng.uniform(-8, 8)),
                                   shear=0.0, aspect=1.0)
        tile = render.finish(render.compose(coverage, render.paper("white", rng)))
        return tile, dict(style="font", char=char) | meta
    if i < 80:
        tile, meta = skeleton_tile(strokes.LETTERS[char], rng)
        return tile, dict(style="strokes", char=char) | meta
    font = ("futural", "scripts")[i % 2]
    tile, meta = skeleton_tile(hershey.glyph(font, char), rng, 0.02, ("fine", "medium"))
    return tile, dict(style="hershey", char=char, font=font) | meta


def scribble_glyph(style: str, rng: np.random.Generator) -> list:
    """Pen paths that are no character: a tangle through random points, a zigzag, a spiral of
    three turns, a five-pointed star, a triangle, a hash of crossing lines."""
    if style == "tangle":
        return [[strokes.curve(*map(tuple, rng.uniform(0, 1, (int(rng.integers(9, 15)), 2))))]]
    if style == "zigzag":
        n = int(rng.integers(5, 9))
        return [[strokes.line(*((k / n, float(k % 2)) for k in range(n + 1)))]]
    if style == "spiral":
        turns = np.linspace(0, 3 * 2 * np.pi, 60)
        r = 0.05 + 0.45 * turns / turns[-1]
        return [[strokes.curve(*zip(0.5 + r * np.cos(turns), 0.5 + r * np.sin(turns)))]]
    if style == "star":
        angles = np.radians(-90 + 144 * np.arange(6))
        return [[strokes.line(*zip(0.5 + 0.5 * np.cos(angles), 0.5 + 0.5 * np.sin(angles)))]]
    if style == "triangle":
        return [[strokes.line((0, 1), (0.5, 0), (1, 1), (0, 1))]]
    return [[strokes.line((0.3, 0), (0.25, 1))], [strokes.line((0.7, 0), (0.65, 1))],
            [strokes.line((0, 0.33), (1, 0.3))], [strokes.line((0, 0.7), (1, 0.67))],
            [strokes.line((0.48, 0), (0.45, 1))], [strokes.line((0, 0.5), (1, 0.48))]]


def scribble_tile(i: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    style = ("tangle", "tangle", "zigzag", "spiral", "star", "triangle", "hash")[i % 7]
    tile, meta = skeleton_tile(scribble_glyph(style, rng), rng)
    return tile, dict(style=style) | meta


NONDIGIT_KINDS = (("blank", 20), ("near_blank", 40), ("photo", 60), ("noise", 30),
                  ("texture", 30), ("letter", 90), ("scribble", 30))


def make_nondigits() -> tuple[list[np.ndarray], list[dict]]:
    photos = photo_sources()
    tiles, items = [], []
    for k, (kind, count) in enumerate(NONDIGIT_KINDS):
        for i in range(count):
            rng = tile_rng("nondigits", k, i)
            if kind == "blank":
                tile, meta = blank_tile(i, rng)
            elif kind == "near_blank":
                tile, meta = near_blank_tile(i, rng)
            elif kind == "photo":
                tile, meta = photo_tile(photos[i % len(photos)], rng)
            elif kind == "noise":
                tile, meta = noise_tile(i, rng)
            elif kind == "texture":
                tile, meta = texture_tile(i, rng)
            elif kind == "letter":
                tile, meta = letter_tile(i, rng)
            else:
                tile, meta = scribble_tile(i, rng)
            tiles.append(tile)
            items.append(dict(kind=kind) | meta)
    return tiles, items


# ---- output --------------------------------------------------------------------------------------

def sprite(tiles: list[np.ndarray]) -> Image.Image:
    rows = math.ceil(len(tiles) / COLUMNS)
    sheet = np.full((rows * TILE, COLUMNS * TILE), 255, np.uint8)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, COLUMNS)
        sheet[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = tile
    return Image.fromarray(sheet, mode="L")


DESCRIPTIONS = {
    "handwriting": "Hand-written-like digits by writers other than MNIST's (synthetic: see "
                   "README.md), 100 per class. Never train on these.",
    "printed": "Printed digits in 50 Debian fonts, photographed-paper effects on some, 50 per "
               "class. Never train on these.",
    "nondigits": "Images that are no digit: blank, near blank, photos, noise, textures, letters, "
                 "scribbles; `kind` instead of a label. Never train on these.",
}


def save(name: str, tiles: list[np.ndarray], items: list[dict]) -> None:
    sprite(tiles).save(HERE / f"{name}.png", optimize=True)
    header = dict(set=name, description=DESCRIPTIONS[name], sprite=f"{name}.png", tile=TILE,
                  columns=COLUMNS, count=len(tiles), ink=INK_NOTE,
                  field="kind" if name == "nondigits" else "label")
    # One tile a line: small diffs when a source changes.
    body = ",\n".join("    " + json.dumps(item, separators=(", ", ": ")) for item in items)
    text = json.dumps(header, indent=2)[:-2] + ',\n  "items": [\n' + body + "\n  ]\n}\n"
    (HERE / f"{name}.json").write_text(text)


def preview(sets: dict[str, tuple[list[np.ndarray], list[dict]]]) -> Image.Image:
    """Ten tiles of each class (kind), spread over the sources, one row a class, a panel a set."""
    font = ImageFont.truetype(str(FONTS / "truetype/dejavu/DejaVuSans.ttf"), 14)
    panels = []
    for name, (tiles, items) in sets.items():
        field = "kind" if name == "nondigits" else "label"
        groups = list(dict.fromkeys(item[field] for item in items))
        panel = Image.new("L", (90 + 10 * (TILE + 2), 24 + len(groups) * (TILE + 2)), 160)
        draw = ImageDraw.Draw(panel)
        draw.text((4, 4), name, font=font, fill=0)
        for r, group in enumerate(groups):
            members = [n for n, item in enumerate(items) if item[field] == group]
            # Evenly spread, shifted by one more each time: not every 10th of a round robin.
            chosen = [members[(j * len(members) // 10 + j) % len(members)] for j in range(10)]
            y = 24 + r * (TILE + 2)
            draw.text((4, y + TILE // 2 - 8), str(group), font=font, fill=0)
            for c, n in enumerate(chosen):
                panel.paste(Image.fromarray(tiles[n]), (90 + c * (TILE + 2), y))
        panels.append(panel)
    out = Image.new("L", (sum(p.width for p in panels) + 10 * (len(panels) - 1),
                          max(p.height for p in panels)), 160)
    x = 0
    for panel in panels:
        out.paste(panel, (x, 0))
        x += panel.width + 10
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-browser", action="store_true",
                        help="skip the playground-canvas tiles (handwriting then has 75 a class)")
    args = parser.parse_args()
    sets = {}
    if args.no_browser:
        sets["handwriting"] = make_handwriting(None)
    else:
        from validation.browser import Playground
        with Playground() as pad:
            sets["handwriting"] = make_handwriting(pad)
    sets["printed"] = make_printed()
    sets["nondigits"] = make_nondigits()
    for name, (tiles, items) in sets.items():
        save(name, tiles, items)
        print(f"{name}: {len(tiles)} tiles")
    preview(sets).save(HERE / "preview.png", optimize=True)


if __name__ == "__main__":
    main()
