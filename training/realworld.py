"""Digits the model never saw, uploaded the ways people upload them.

The sets in validation/ (synthetic handwriting by other hands, printed digits, real handwriting by
other writers, non-digits) are 64 px tiles, dark ink on paper. Each tile is uploaded in every
variant below: 28, 64 and 128 px, as ink on paper and as light strokes on a dark screen, PNG and
JPEG; each upload is decoded to greyscale and normalised by lens.digit, the function behind the
service's preprocess=digit.

`measure` runs a bundle's model.onnx on them: its accuracy on each digit set, and the threshold on
its `digit_score` output (the energy score, onnx_export.export_model) that PASS_RATE of the
handwriting passes, with the share of each kind of non-digit it rejects."""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

import validation
from lens import digit
from lens.bundle import DIGIT_SCORE

# (side in px, ink on "paper" or light strokes on a dark "screen", file format)
VARIANTS = [(28, "paper", "PNG"), (64, "paper", "JPEG"), (128, "paper", "PNG"),
            (28, "screen", "JPEG"), (64, "screen", "PNG"), (128, "screen", "JPEG")]
JPEG_QUALITY = 85
PASS_RATE = 0.97
DIGIT_SETS = ("handwriting", "printed", "writers")


def upload(tile: np.ndarray, side: int, look: str, file_format: str) -> bytes:
    """One stored tile as a user's file."""
    image = Image.fromarray(tile if look == "paper" else 255 - tile)
    if image.width != side:
        image = image.resize((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, file_format, **({"quality": JPEG_QUALITY} if file_format == "JPEG" else {}))
    return out.getvalue()


def model_inputs(tiles: np.ndarray, spec: dict) -> np.ndarray:
    """(N * len(VARIANTS)) x 1 x H x W float32: every tile in every variant, tile-major."""
    planes = []
    for tile in tiles:
        for variant in VARIANTS:
            with Image.open(io.BytesIO(upload(tile, *variant))) as decoded:
                grey = np.asarray(decoded.convert("L"), np.float32) / 255
            planes.append(digit.normalise(grey, spec["height"], spec["width"], spec["foreground"],
                                          deskew=spec.get("deskew", False)))
    return np.stack(planes)[:, None]


def load(name: str, spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """A validation set's model inputs, and each one's label (digit sets) or kind (non-digits)."""
    tiles, labels, _ = validation.load(name)
    return model_inputs(tiles, spec), np.repeat(np.array(labels), len(VARIANTS))


def measure(session, spec: dict) -> tuple[dict, dict]:
    """(accuracy per digit set, the manifest's `digit_like`) for an onnxruntime model.onnx."""
    def run(images):
        probabilities, score = zip(*(session.run(["probabilities", DIGIT_SCORE], {"image": chunk})
                                     for chunk in np.array_split(images, max(1, len(images) // 1024))))
        return np.concatenate(probabilities), np.concatenate(score)

    accuracy, scores = {}, {}
    for name in DIGIT_SETS:
        images, labels = load(name, spec)
        probabilities, scores[name] = run(images)
        accuracy[f"{name}_accuracy"] = round(float((probabilities.argmax(1) == labels).mean()), 4)
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
