"""Digits the model never saw, uploaded the ways people upload them.

The sets in validation/ (synthetic handwriting by other hands, printed digits, real handwriting by
other writers, non-digits) are 64 px tiles, dark ink on paper. Each tile is uploaded in every
variant below: 28, 64 and 128 px, as ink on paper and as light strokes on a dark screen, PNG and
JPEG; each upload is decoded to greyscale and normalised by lens.digit, the function behind the
service's preprocess=digit. The digit sets are measured a second time as noisy uploads
(NOISY_VARIANTS): ink on paper at 28, 64 and 128 px with sensor grain or dust added at that size,
as a grainy photo or a dusty scan arrives, and a third time on lined paper (RULED_VARIANTS).

`measure` runs a bundle's model.onnx on them: its accuracy on each digit set, clean, noisy and
ruled (`<set>_accuracy`, `<set>_noisy_accuracy`, `<set>_ruled_accuracy`), and the threshold on
its `digit_score` output (the energy score, onnx_export.export_model) that PASS_RATE of the
handwriting passes, with the share of each kind of non-digit it rejects."""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw

import validation
from lens import digit
from lens.bundle import DIGIT_SCORE

# (side in px, ink on "paper" or light strokes on a dark "screen", file format, noise)
VARIANTS = [(28, "paper", "PNG", ""), (64, "paper", "JPEG", ""), (128, "paper", "PNG", ""),
            (28, "screen", "JPEG", ""), (64, "screen", "PNG", ""), (128, "screen", "JPEG", "")]
NOISY_VARIANTS = [(side, "paper", "PNG", noise) for noise in ("grain", "dust")
                  for side in (28, 64, 128)]
# Lined paper under the ink: at sizes a photo or scan of a page has (at 28 px the lines would be
# as thick as the strokes); lines a quarter of the side apart, so that the digit crosses two or
# three, of a blue or grey ruling's luminance, turned up to RULED_TILT degrees.
RULED_VARIANTS = [(64, "paper", "PNG", "ruled"), (96, "paper", "JPEG", "ruled"),
                  (128, "paper", "PNG", "ruled")]
RULING = (0.55, 0.8)   # the lines' brightness, drawn uniformly (paper is 1, ink about 0.1)
RULED_TILT = 2.0
GRAIN = 20     # sensor grain: Gaussian noise of this standard deviation (of 255) on every pixel
DUST = 0.01    # dust: this share of the pixels turned black or white
JPEG_QUALITY = 85
PASS_RATE = 0.97
DIGIT_SETS = ("handwriting", "printed", "writers")


def upload(tile: np.ndarray, side: int, look: str, file_format: str, noise: str = "",
           rng: np.random.Generator | None = None) -> bytes:
    """One stored tile as a user's file; `noise` ("grain", "dust") is drawn from `rng`."""
    image = Image.fromarray(tile if look == "paper" else 255 - tile)
    if image.width != side:
        image = image.resize((side, side), Image.Resampling.LANCZOS)
    if noise == "ruled":
        image = _ruled(image, rng)
    elif noise:
        image = Image.fromarray(_noisy(np.asarray(image), noise, rng))
    out = io.BytesIO()
    image.save(out, file_format, **({"quality": JPEG_QUALITY} if file_format == "JPEG" else {}))
    return out.getvalue()


def _noisy(pixels: np.ndarray, noise: str, rng: np.random.Generator) -> np.ndarray:
    if noise == "grain":
        return np.clip(pixels + rng.normal(0, GRAIN, pixels.shape), 0, 255).astype(np.uint8)
    where = rng.random(pixels.shape)
    dusted = np.where(where < DUST / 2, 0, np.where(where > 1 - DUST / 2, 255, pixels))
    return dusted.astype(np.uint8)


def _ruled(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """`image` (ink on paper) on lined paper: the ink stays on top (the darker wins)."""
    side = image.width
    spacing, width = side // 4, max(1, side // 64)
    brightness = round(255 * rng.uniform(*RULING))
    ruling = Image.new("L", (3 * side, 3 * side), 255)
    draw = ImageDraw.Draw(ruling)
    for at in range(int(rng.integers(spacing)), 3 * side, spacing):
        draw.line([(0, at), (3 * side, at)], fill=brightness, width=width)
    ruling = ruling.rotate(rng.uniform(-RULED_TILT, RULED_TILT), Image.Resampling.BILINEAR)
    return ImageChops.darker(image, ruling.crop((side, side, 2 * side, 2 * side)))


def model_inputs(tiles: np.ndarray, spec: dict, variants: list = VARIANTS) -> np.ndarray:
    """(N * len(variants)) x 1 x H x W float32: every tile in every variant, tile-major (the
    noise of noisy variants from a fixed seed, so that a bundle's figures are reproducible)."""
    rng = np.random.default_rng(0)
    planes = []
    for tile in tiles:
        for variant in variants:
            with Image.open(io.BytesIO(upload(tile, *variant, rng=rng))) as decoded:
                grey = np.asarray(decoded.convert("L"), np.float32) / 255
            planes.append(digit.normalise(grey, spec["height"], spec["width"], spec["foreground"],
                                          deskew=spec.get("deskew", False)))
    return np.stack(planes)[:, None]


def load(name: str, spec: dict, variants: list = VARIANTS) -> tuple[np.ndarray, np.ndarray]:
    """A validation set's model inputs, and each one's label (digit sets) or kind (non-digits)."""
    tiles, labels, _ = validation.load(name)
    return model_inputs(tiles, spec, variants), np.repeat(np.array(labels), len(variants))


def measure(session, spec: dict) -> tuple[dict, dict]:
    """(accuracy per digit set, the manifest's `digit_like`) for an onnxruntime model.onnx."""
    def run(images):
        probabilities, score = zip(*(session.run(["probabilities", DIGIT_SCORE], {"image": chunk})
                                     for chunk in np.array_split(images, max(1, len(images) // 1024))))
        return np.concatenate(probabilities), np.concatenate(score)

    def accuracy_on(name, variants):
        images, labels = load(name, spec, variants)
        probabilities, score = run(images)
        return round(float((probabilities.argmax(1) == labels).mean()), 4), score

    accuracy, scores = {}, {}
    for name in DIGIT_SETS:
        accuracy[f"{name}_accuracy"], scores[name] = accuracy_on(name, VARIANTS)
    for kind, variants in (("noisy", NOISY_VARIANTS), ("ruled", RULED_VARIANTS)):
        for name in DIGIT_SETS:
            accuracy[f"{name}_{kind}_accuracy"], _ = accuracy_on(name, variants)
    images, kinds = load("nondigits", spec)
    _, scores["nondigits"] = run(images)
    scores = {name: values.astype(np.float64) for name, values in scores.items()}   # as served
    # rounded down, so that the threshold the manifest records still passes PASS_RATE
    threshold = math.floor(np.quantile(scores["handwriting"], 1 - PASS_RATE, method="lower") * 1e4) / 1e4
    kinds = np.array(kinds)
    rejected = scores["nondigits"] < threshold
    digit_like = {
        "output": DIGIT_SCORE, "threshold": threshold,
        "method": "energy score (Liu et al. 2020): T * logsumexp(logits / T); digit_like when "
                  f"it is at least the threshold, which {PASS_RATE:.0%} of the handwriting "
                  "validation set passes",
        "passed": {name: round(float((scores[name] >= threshold).mean()), 4)
                   for name in DIGIT_SETS},
        "rejected": {str(kind): round(float(rejected[kinds == kind].mean()), 4)
                     for kind in dict.fromkeys(kinds)} | {"all": round(float(rejected.mean()), 4)},
    }
    return accuracy, digit_like
