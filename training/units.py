"""What each unit does on the training digits, measured with the bundle's own model.onnx.

For every conv filter, dense unit and class: its degree of activation on every training digit (the
lecture's measure: the mean of a conv filter's feature map, a dense unit's value), the 9 digits
that excite it most (OpenAI Microscope's dataset examples) with, for conv units, the receptive
field of the map cell where it fires most, how often it fires at all, and how its picture compares
with the best digit (`fidelity`). A unit is dead when no training digit makes it fire and neither
does its optimised picture: only then may its picture fail to beat the digits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw

EXAMPLES = 9
BATCH = 500                    # digits per model.onnx run: bounded memory for large data sets
SPRITE_SCALE = 3               # a 28x28 digit drawn at 84x84, its receptive field visible
SPRITE_GAP = 2
OUTLINE = (255, 140, 0)        # orange: visible on white strokes and on the black ground
DEAD = "never fires on any of the {count} training digits, and no optimised picture makes it fire"


@dataclass(frozen=True)
class Activity:
    """A layer's units on every training digit: degree (N x units) and, for conv layers, where in
    the map each unit fires most (N x units, flat cell index) and its largest value there."""
    degree: np.ndarray
    peak: np.ndarray | None
    peak_cell: np.ndarray | None


def activity(session: ort.InferenceSession, outputs: list[str], images: np.ndarray,
             layers: list[dict]) -> dict[str, Activity]:
    """Every layer's Activity on `images` (uint8 N x C x H x W), in batches."""
    parts: dict[str, list] = {layer["name"]: [] for layer in layers}
    for start in range(0, len(images), BATCH):
        batch = images[start:start + BATCH].astype(np.float32) / 255
        acts = dict(zip(outputs, session.run(None, {"image": batch})))
        for layer in layers:
            act = acts[layer["name"]]
            if act.ndim == 4:
                flat = act.reshape(*act.shape[:2], -1)
                parts[layer["name"]].append((flat.mean(2), flat.max(2), flat.argmax(2)))
            else:
                parts[layer["name"]].append((act, act, None))
    out = {}
    for layer in layers:
        degree, peak, cell = zip(*parts[layer["name"]])
        conv = layer["kind"] == "conv"
        out[layer["name"]] = Activity(np.concatenate(degree), np.concatenate(peak) if conv else None,
                                      np.concatenate(cell) if conv else None)
    return out


def fires(layer: dict, act: Activity) -> np.ndarray:
    """N x units: where the unit is on. A logit has no off: it 'fires' where its class wins."""
    if layer["kind"] == "output":
        return act.degree == act.degree.max(axis=1, keepdims=True)
    return (act.peak if act.peak is not None else act.degree) > 0


def receptive_box(layer: dict, cell: int, size: tuple[int, int]) -> list[int]:
    """[top, left, bottom, right) in input pixels of a conv map cell's receptive field, clipped
    to the image. The map is taken to sit centred on the input (valid or 'same' convolutions)."""
    _, rows, cols = layer["shape"]
    stride, (field_h, field_w) = layer["stride"], layer["receptive_field"]
    row, col = divmod(int(cell), cols)
    top = (size[0] - field_h - (rows - 1) * stride) // 2 + row * stride
    left = (size[1] - field_w - (cols - 1) * stride) // 2 + col * stride
    return [max(top, 0), max(left, 0), min(top + field_h, size[0]), min(left + field_w, size[1])]


def describe(layers: list[dict], acts: dict[str, Activity], labels: np.ndarray,
             classes: list[str], size: tuple[int, int], outgoing: dict[str, np.ndarray]) -> dict:
    """units.json's "layers": per layer, per unit, its fire rate, best degree and examples;
    `outgoing`: layer -> (classes x units) weights into the logits, for dense layers that feed
    them directly."""
    out = {}
    for layer in layers:
        name, act = layer["name"], acts[layer["name"]]
        rate = fires(layer, act).mean(axis=0)
        units = []
        for k in range(layer["channels"]):
            # stable, so that ties (e.g. units at 0 on many digits) give the same examples always
            top = np.argsort(-act.degree[:, k], kind="stable")[:EXAMPLES]
            examples = [{"digit": int(i), "label": classes[labels[i]],
                         "degree": round(float(act.degree[i, k]), 5)} for i in top]
            if act.peak_cell is not None:
                for example, i in zip(examples, top):
                    example["box"] = receptive_box(layer, act.peak_cell[i, k], size)
            unit = {"index": k, "fire_rate": round(float(rate[k]), 4),
                    "best_degree": round(float(act.degree[:, k].max()), 5), "examples": examples}
            if name in outgoing:
                unit["pushes"] = _pushes(outgoing[name][:, k], classes)
            units.append(unit)
        out[name] = units
    return out


def _pushes(weights: np.ndarray, classes: list[str], count: int = 3) -> dict:
    """The classes a unit's outgoing weights raise and lower most."""
    order = np.argsort(-weights, kind="stable")
    pick = lambda indices: [{"class": classes[c], "weight": round(float(weights[c]), 4)}
                            for c in indices]
    return {"up": pick(order[:count]), "down": pick(order[::-1][:count])}


def fidelity(layer: dict, picture: Activity, digits: Activity) -> list[float | None]:
    """Per unit: its degree on its own picture over its best degree on a training digit (None
    where no digit gives it a positive degree: there is nothing to beat)."""
    own = np.diag(picture.degree)
    best = digits.degree.max(axis=0)
    return [round(float(o / b), 4) if b > 0 else None for o, b in zip(own, best)]


def dead(layer: dict, picture: Activity, digits: Activity) -> dict[str, str]:
    """The units no training digit and not their own picture make fire, with why."""
    if layer["kind"] == "output":
        return {}
    on_digits = fires(layer, digits).any(axis=0)
    on_picture = np.diag(fires(layer, picture))
    return {str(k): DEAD.format(count=len(digits.degree))
            for k in range(layer["channels"]) if not on_digits[k] and not on_picture[k]}


def sprite(images: np.ndarray, unit: dict) -> Image.Image:
    """The unit's examples in a 3x3 grid (RGB), each receptive field outlined."""
    cell = images.shape[-1] * SPRITE_SCALE
    side = 3 * cell + 4 * SPRITE_GAP
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    draw = ImageDraw.Draw(canvas)
    for slot, example in enumerate(unit["examples"]):
        pixels = images[example["digit"]]
        pixels = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
        tile = Image.fromarray(pixels).convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
        y = SPRITE_GAP + (slot // 3) * (cell + SPRITE_GAP)
        x = SPRITE_GAP + (slot % 3) * (cell + SPRITE_GAP)
        canvas.paste(tile, (x, y))
        if "box" in example:
            top, left, bottom, right = (v * SPRITE_SCALE for v in example["box"])
            draw.rectangle([x + left, y + top, x + right - 1, y + bottom - 1], outline=OUTLINE)
    return canvas
