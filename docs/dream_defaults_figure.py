"""Regenerate docs/dream_defaults.jpg and print the table in docs/benchmarks.md: the default Deep
Dream of a 512x512 photo before (64 steps at full size) and after (4 octaves of 12 steps) the
default changed, through the service itself, side by side in one run.

    .venv/bin/python docs/dream_defaults_figure.py

Both dreams use the bundle, target (conv2, Deep Dream), seed and every other setting the same;
`objective` is conv2's mean squared activation on the final picture (gradient.onnx's objective
output), the thing both ascend. The pictures are deterministic; the times are not.
"""
from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lens.bundle import load  # noqa: E402
from lens.optvis.objectives import deepdream, feeds  # noqa: E402
from lens.optvis.render import GradientGraph  # noqa: E402
from service import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402

BUNDLE = ROOT / "models" / "mnist-cnn"
VARIANTS = {"before: 64 steps, 1 octave": "&octaves=1&steps=64",
            "after (the default): 4 octaves x 12 steps": ""}
REPEATS = 3


def main() -> None:
    # The service's default settings (one onnxruntime thread, as a gunicorn worker runs it), but
    # a time budget long enough that neither dream is cut short on a busy machine.
    settings = Settings(models_dir=BUNDLE, ort_threads=1, dream_time_budget=300, timeout=320)
    client = create_app(settings).test_client()
    photo = Image.open(ROOT / "examples" / "photo.jpg").convert("RGB").resize((512, 512))
    body = io.BytesIO()
    photo.save(body, "JPEG", quality=95)
    graph = GradientGraph.of(load(BUNDLE, threads=1))
    weights = feeds([deepdream("conv2")], graph.targets)

    pictures, rows = [photo], []
    for name, query in VARIANTS.items():
        seconds = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            reply = client.post(f"/dream?targets=conv2{query}", data=body.getvalue(),
                                content_type="image/jpeg")
            seconds.append(time.perf_counter() - start)
            assert reply.status_code == 200, reply.get_data(as_text=True)
        dream = Image.open(io.BytesIO(reply.data)).convert("RGB")
        luminance = np.asarray(dream.convert("L"), np.float32)[None, None] / 255
        objective = float(graph(luminance, weights)[0][0])
        pictures.append(dream)
        rows.append((name, reply.headers["X-Dream-Steps-Done"], statistics.median(seconds),
                     min(seconds), max(seconds), objective))

    print("| default dream of a 512x512 photo | steps | seconds, median (range) | objective |")
    print("|---|---|---|---|")
    for name, steps, median, low, high, objective in rows:
        print(f"| {name} | {steps} | {median:.2f} ({low:.2f}–{high:.2f}) | {objective:.3f} |")
    _save(pictures, ["the photo"] + list(VARIANTS), ROOT / "docs" / "dream_defaults.jpg")


def _save(pictures: list[Image.Image], captions: list[str], path: Path) -> None:
    side, caption = 512, 28
    sheet = Image.new("RGB", (side * len(pictures), side + caption), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (picture, text) in enumerate(zip(pictures, captions)):
        sheet.paste(picture, (i * side, caption))
        draw.text((i * side + 8, 8), text, fill="black")
    sheet.save(path, quality=85)   # a JPEG: a PNG of these textures is 1 MB


if __name__ == "__main__":
    main()
