"""Turn a training checkpoint into a model bundle directory (see lens/manifest.schema.json)."""
from __future__ import annotations

import datetime
import json
import math
import platform
import shutil
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from tqdm import tqdm

from lens import bundle
from lens.optvis import objectives
from lens.optvis.render import GradientGraph, Settings, render
from training.layers import find_layers, smallest_side
from training.onnx_export import MAX_SIDE, export_gradient, export_model, io_names
from training.train import load_model

OBJECTIVE = ("objective[n] = sum over layers l of (sum_c weights.l[n,c] * degree_l[n,c] + "
             "energy.l[n] * mean(activation_l[n]^2)); degree = channel mean over the feature map "
             "(conv) or the unit (dense, logits)")

# How the filter pictures are made: per layer kind, chosen by eye so that class images look
# like digits (strong blur and decay) while conv filters keep their fine texture.
VISUALIZATION = {
    "conv": Settings(steps=96, step_size=0.02, jitter=1, blur_sigma=0.5, blur_every=8),
    "dense": Settings(steps=128, step_size=0.02, jitter=1, blur_sigma=0.8, blur_every=4, decay=0.01),
    "output": Settings(steps=128, step_size=0.02, jitter=1, blur_sigma=0.8, blur_every=4, decay=0.01),
}
# The ascent starts from uniform noise in this range: bright enough everywhere for conv filters
# (a filter that never fires on the start image has no gradient), nearly black for the dense
# layers, so that what appears is what the unit asked for.
START_NOISE = {"conv": (0.0, 1.0), "dense": (0.0, 0.05), "output": (0.0, 0.05)}


def export_bundle(checkpoint_path: Path, out: Path, *, name: str, version_tag: str = "1",
                  description: str = "", progress: bool = True) -> dict:
    """Write the bundle into `out` (replacing it only once the new one is complete and valid)."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    model = load_model(checkpoint)
    spec = checkpoint["input"]
    input_shape = (spec["channels"], spec["height"], spec["width"])
    layers = find_layers(model, input_shape)

    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    names = io_names(layers)
    say = tqdm.write if progress else (lambda _text: None)
    say("exporting model.onnx")
    export_model(model, layers, input_shape, staging / "model.onnx")
    say("exporting gradient.onnx")
    export_gradient(model, layers, input_shape, staging / "gradient.onnx")
    torch.save({key: checkpoint[key] for key in ("config", "classes", "input", "state_dict")},
               staging / "checkpoint.pt")

    layer_json = [layer.to_json() | {"any_size": layer.kind == "conv"} for layer in layers]
    session = ort.InferenceSession(str(staging / "gradient.onnx"), providers=["CPUExecutionProvider"])
    graph = GradientGraph(session, layer_json, input_shape[1:])
    visualizations = render_filters(graph, layer_json, input_shape, staging, progress)

    manifest = {
        "schema_version": 1,
        "name": name,
        "version": version_tag,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "description": description,
        "architecture": checkpoint["config"]["architecture"],
        "labels": checkpoint["classes"],
        "input": {"channels": spec["channels"], "height": spec["height"], "width": spec["width"],
                  "value_range": [0, 1],
                  "min_side": smallest_side(model, layers, spec["channels"], MAX_SIDE),
                  "max_side": MAX_SIDE,
                  "normalization": {"mean": spec["mean"], "std": spec["std"], "in_graph": True},
                  "foreground": checkpoint["config"]["foreground"]},
        "layers": layer_json,
        "graphs": {"model": {"file": "model.onnx", **names["model"]},
                   "gradient": {"file": "gradient.onnx", **names["gradient"]}},
        "objective": OBJECTIVE,
        "visualizations": visualizations,
        "training": {"metrics": checkpoint["metrics"], "data": checkpoint["data"],
                     "config": checkpoint["config"]},
        "libraries": {"python": platform.python_version(),
                      **{lib: version(lib) for lib in ("torch", "onnx", "onnxruntime", "numpy")}},
        "files": {path.relative_to(staging).as_posix(): {"sha256": bundle.sha256(path),
                                                           "bytes": path.stat().st_size}
                  for path in sorted(staging.rglob("*")) if path.is_file()},
    }
    (staging / bundle.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    bundle.load(staging)   # refuse to publish a bundle the service would refuse

    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return manifest


def render_filters(graph: GradientGraph, layers: list[dict], input_shape, directory: Path,
                   progress: bool) -> dict:
    """For every conv filter, dense unit and class: the image that maximises it, found by
    gradient ascent through the bundle's own gradient.onnx. One PNG each and an atlas per layer."""
    rng = np.random.default_rng(0)
    total = sum(layer["channels"] for layer in layers)
    bar = tqdm(total=total, desc="rendering filters", unit="filter", disable=not progress)
    out = {}
    for layer in layers:
        count, name = layer["channels"], layer["name"]
        settings = VISUALIZATION[layer["kind"]]
        wanted = [objectives.channel(name, k) for k in range(count)]
        low, high = START_NOISE[layer["kind"]]
        start = rng.uniform(low, high, (count, *input_shape)).astype(np.float32)
        result = render(graph, wanted, start, settings)
        images = result.images
        folder = directory / "filters" / name
        folder.mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(images):
            to_png(image).save(folder / f"{k}.png", optimize=True)
        atlas(images).save(folder / "atlas.png", optimize=True)
        out[name] = {"atlas": f"filters/{name}/atlas.png", "filters": f"filters/{name}/{{index}}.png",
                     "count": count,
                     # 0 marks a filter that never fired on the start image: nothing to show
                     "objective": [round(float(v), 5) for v in result.objective_after]}
        bar.update(count)
    bar.close()
    method = {kind: vars(settings) for kind, settings in VISUALIZATION.items()}
    return {"method": {"start_noise": START_NOISE, "settings": method}, "layers": out}


def to_png(image: np.ndarray) -> Image.Image:
    """CHW float in [0, 1] -> 8-bit greyscale or RGB."""
    pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0))


def atlas(images: np.ndarray, gap: int = 2) -> Image.Image:
    """A near-square grid of the images, row-major in filter order, on a mid-grey ground."""
    n, c, h, w = images.shape
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((c, rows * (h + gap) + gap, columns * (w + gap) + gap), 0.5, np.float32)
    for k, image in enumerate(images):
        y, x = gap + (k // columns) * (h + gap), gap + (k % columns) * (w + gap)
        grid[:, y:y + h, x:x + w] = image
    return to_png(grid)
