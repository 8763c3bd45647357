"""Regenerate docs/optvis.png and the table in docs/optvis.md: what the Fourier parameterisation
and transformation robustness change, on the default bundle and on a Deep Dream of a photo.

    .venv/bin/python docs/optvis_figure.py

Every variant starts from the same image and differs from the bundle's own settings only in
`param` and in `scales`/`degrees` (lens/optvis/render.py Settings), so a column shows what that
choice alone changes. The units' objectives reached are measured with model.onnx, not with the
gradient graph that was ascended; the photo's (model.onnx takes only 28x28) with gradient.onnx's
objective output. The picture is deterministic; the times in the table are not.
"""
from __future__ import annotations

import re
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lens.bundle import load  # noqa: E402
from lens.optvis import transforms  # noqa: E402
from lens.optvis.objectives import channel, deepdream, feeds  # noqa: E402
from lens.optvis.render import GradientGraph, Settings, render  # noqa: E402

BUNDLE = ROOT / "models" / "mnist-cnn"
PHOTO = ROOT / "examples" / "photo.jpg"
FIGURE = ROOT / "docs" / "optvis.png"
PAGE = ROOT / "docs" / "optvis.md"
UNITS = [("conv1", 13), ("conv2", 1), ("conv2", 21), ("dense1", 2), ("logits", 3), ("logits", 7)]
VARIANTS = {
    "pixels": {"param": "pixels", "scales": (), "degrees": ()},
    "pixels+transforms": {"param": "pixels", "scales": transforms.SCALES,
                          "degrees": transforms.DEGREES},
    "fourier": {"param": "fourier", "scales": (), "degrees": ()},
    "fourier+transforms": {"param": "fourier", "scales": transforms.SCALES,
                           "degrees": transforms.DEGREES},
}
# The README's dream of this photo (service defaults, conv2, 3 octaves, 20 steps).
DREAM = Settings(octaves=3, steps=20)
SEED = 0
REPEATS = 3

ZOOM = 8                      # 28x28 -> 224x224, nearest neighbour
TILE = 28 * ZOOM
DETAIL = 2                    # the photo's detail row: its centre at 2x
GAP, LABEL_WIDTH, HEADER, CAPTION = 8, 150, 28, 18
GROUND = 235


def main() -> None:
    bundle = load(BUNDLE)
    graph = GradientGraph.of(bundle)
    starts = unit_starts(bundle)
    photo = np.asarray(Image.open(PHOTO).convert("L"), np.float32)[None, None] / 255
    columns = {"start": (starts, photo)}
    for name, change in VARIANTS.items():
        dream = render(graph, [deepdream("conv2")], photo, replace(DREAM, **change))
        columns[name] = (render_units(graph, bundle, starts, change), dream.images)
    values = {name: [degree(bundle, layer, k, images[i]) for i, (layer, k) in enumerate(UNITS)]
              + [energy(graph, "conv2", dream)] for name, (images, dream) in columns.items()}
    figure(columns, values).save(FIGURE, optimize=True)
    write_table(values, timings(graph, bundle, starts, photo))


def base_settings(bundle, kind: str) -> Settings:
    """The settings the bundle's own picture of a layer of this kind was made with."""
    method = bundle.manifest.get("visualizations", {}).get("method", {})
    stored = method.get("settings", {}).get(kind, {})
    known = {f.name for f in fields(Settings)}
    return Settings(**{key: value for key, value in stored.items() if key in known})


def unit_starts(bundle) -> np.ndarray:
    """One start per unit, drawn like the bundle's own (uniform noise in its layer kind's range)."""
    ranges = bundle.manifest.get("visualizations", {}).get("method", {}).get("start_noise", {})
    rng = np.random.default_rng(SEED)
    return np.concatenate([rng.uniform(*ranges.get(kind(bundle, layer), (0, 1)), (1, 1, 28, 28))
                           for layer, _ in UNITS]).astype(np.float32)


def kind(bundle, layer: str) -> str:
    return next(spec["kind"] for spec in bundle.layers if spec["name"] == layer)


def render_units(graph, bundle, starts: np.ndarray, change: dict) -> np.ndarray:
    """Each unit's picture under its layer kind's settings with `change`."""
    return np.stack([render(graph, [channel(layer, k)], start[None],
                            replace(base_settings(bundle, kind(bundle, layer)), **change)).images[0]
                     for (layer, k), start in zip(UNITS, starts)])


def timings(graph, bundle, starts: np.ndarray, photo: np.ndarray) -> dict:
    """Per variant, the best of REPEATS wall times per unit and for the photo. The variants take
    turns, so that whatever else the machine is doing weighs on all of them alike."""
    best = {name: (np.inf, np.inf) for name in VARIANTS}
    for _ in range(REPEATS):
        for name, change in VARIANTS.items():
            units = seconds(render_units, graph, bundle, starts, change) / len(UNITS)
            dream = seconds(render, graph, [deepdream("conv2")], photo, replace(DREAM, **change))
            best[name] = (min(best[name][0], units), min(best[name][1], dream))
    return best


def seconds(function, *args) -> float:
    began = time.perf_counter()
    function(*args)
    return time.perf_counter() - began


def activations(bundle, image: np.ndarray) -> dict[str, np.ndarray]:
    outputs = bundle.manifest["graphs"]["model"]["outputs"]
    return dict(zip(outputs, bundle.model.run(None, {"image": image[None]})))


def degree(bundle, layer: str, k: int, image: np.ndarray) -> float:
    """The unit's degree of activation: a conv filter's mean over its map, a dense unit or logit."""
    return float(activations(bundle, image)[layer][0, k].mean())


def energy(graph: GradientGraph, layer: str, images: np.ndarray) -> float:
    """Deep Dream's objective: the layer's mean squared activation."""
    return float(graph(images, feeds([deepdream(layer)], graph.targets))[0][0])


def figure(columns: dict, values: dict) -> Image.Image:
    font = ImageFont.load_default(size=15)
    photo = columns["start"][1][0, 0]
    photo_height = round(photo.shape[0] * TILE / photo.shape[1])
    rows = [TILE] * len(UNITS) + [photo_height, TILE]
    width = LABEL_WIDTH + len(columns) * (TILE + GAP)
    height = HEADER + sum(row + CAPTION + GAP for row in rows)
    canvas = Image.new("L", (width, height), GROUND)
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(columns):
        draw.text((LABEL_WIDTH + c * (TILE + GAP), 6), name, fill=0, font=font)
    labels = [unit_label(layer, k) for layer, k in UNITS] + ["photo: dream\nof conv2",
                                                             f"photo, centre\nat {DETAIL}x"]
    y = HEADER
    for r, (label, row_height) in enumerate(zip(labels, rows)):
        draw.multiline_text((6, y + row_height // 2 - 18), label, fill=0, font=font)
        for c, (name, (images, dream)) in enumerate(columns.items()):
            x = LABEL_WIDTH + c * (TILE + GAP)
            canvas.paste(panel(images, dream, r, photo_height), (x, y))
            value = values[name][min(r, len(UNITS))]
            draw.text((x, y + row_height + 1), caption(r, value), fill=60, font=font)
        y += row_height + CAPTION + GAP
    return canvas


def unit_label(layer: str, k: int) -> str:
    return f"class {k}" if layer == "logits" else f"{layer}:{k}"


def caption(row: int, value: float) -> str:
    return f"mean conv2^2 {value:.3f}" if row >= len(UNITS) else f"activation {value:.2f}"


def panel(images: np.ndarray, dream: np.ndarray, row: int, photo_height: int) -> Image.Image:
    if row < len(UNITS):
        return grey(images[row, 0]).resize((TILE, TILE), Image.Resampling.NEAREST)
    picture = grey(dream[0, 0])
    if row == len(UNITS):
        return picture.resize((TILE, photo_height), Image.Resampling.LANCZOS)
    half = TILE // (2 * DETAIL)
    cy, cx = picture.height // 2, picture.width // 2
    return picture.crop((cx - half, cy - half, cx + half, cy + half)).resize(
        (TILE, TILE), Image.Resampling.NEAREST)


def grey(plane: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(plane * 255), 0, 255).astype(np.uint8))


def write_table(values: dict, times: dict) -> None:
    """Replace the table between the markers in docs/optvis.md."""
    head = ["variant", *(unit_label(layer, k) for layer, k in UNITS), "mean of the 6",
            "s per unit", "photo: mean conv2²", "photo: s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    start = values["start"]
    lines.append("| start | " + " | ".join(f"{v:.2f}" for v in start[:-1])
                 + f" | {np.mean(start[:-1]):.2f} | | {start[-1]:.3f} | |")
    for name, (unit_time, dream_time) in times.items():
        units, dream = values[name][:-1], values[name][-1]
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in units)
                     + f" | **{np.mean(units):.2f}** | {unit_time:.2f} | {dream:.3f} "
                     f"| {dream_time:.2f} |")
    table = "\n".join(lines)
    text = PAGE.read_text()
    marked = re.compile(r"(<!-- table -->\n).*?(<!-- /table -->)", re.S)
    if not marked.search(text):
        raise SystemExit(f"{PAGE} has no <!-- table --> ... <!-- /table --> markers")
    PAGE.write_text(marked.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text))


if __name__ == "__main__":
    main()
