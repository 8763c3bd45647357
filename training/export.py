"""Turn a training checkpoint into a model bundle directory (see lens/manifest.schema.json)."""
from __future__ import annotations

import datetime
import json
import math
import os
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
from training import calibration, realworld, units
from training.data import Dataset
from training.layers import find_layers, smallest_side
from training.onnx_export import MAX_SIDE, export_gradient, export_model, io_names
from training.train import THREADS, config_of, datasets, load_model, to_float

OBJECTIVE = ("objective[n] = sum over targets t of (sum_c weights.t[n,c] * degree_t[n,c] + "
             "energy.t[n] * mean(activation_t[n]^2)); degree = channel mean over the feature map "
             "(conv) or the unit (dense, logits); targets: every layer's activation and, as "
             "<layer>.pre, every conv and dense layer's pre-activation (the input of its "
             "activation function)")

# How the filter pictures are made, per layer kind, measured on the default bundle against the
# best of its training digits (docs in README, "How the pictures are made"):
# - conv and dense start with 40 steps on the unit's pre-activation: a unit that is off on the
#   start image passes no gradient through its ReLU, and 12 of conv2's 50 and 53 of dense1's 100
#   pictures stayed blank without it. Then 120 steps on the activation itself. That took conv2
#   from 44 to 49 of 50 pictures beating the best digit (the 50th never fires at all) and dense1
#   from 98 to 100.
# - a light blur (sigma 0.3) for conv: conv1's 3x3 filters want pixel-fine texture (a 0.5 blur
#   left 24 of 25 beating the best digit, 0.3 all 25).
# - output classes keep the strong blur that makes them look like digits, with a light decay;
#   350 steps of 0.05 with jitter 1 lift every class logit above the 99th percentile of the
#   training digits' (the lowest at 1.6x) while a 5-nearest-neighbour reader of the training
#   digits still reads 9 of 10 (the 9 as a 4). The settings follow the weights, and the reader's
#   count is fragile: for this model (trained since lens.digit removes noise, README, "How good
#   is the model") the 250 steps that suited the model before it read 8 (the 0 as a 6) at every
#   step size from 0.04 to 0.07, decay from 0.002 to 0.01 and blur from 0.6 to 1.2, and so did
#   jitter 0 or 2 and blurring every 2 or 8 steps; 350 steps read 9 at a decay of 0.002 only,
#   300 and 400 read 8 (and end just after a blur step, below the logit bar).
VISUALIZATION = {
    "conv": Settings(steps=160, step_size=0.02, jitter=1, blur_sigma=0.3, blur_every=8,
                     preactivation_steps=40),
    "dense": Settings(steps=160, step_size=0.02, jitter=1, blur_sigma=0.5, blur_every=8,
                      preactivation_steps=40),
    "output": Settings(steps=350, step_size=0.05, jitter=1, blur_sigma=0.8, blur_every=4,
                       decay=0.002),
}
# The ascent starts from uniform noise in this range: bright enough everywhere for conv filters,
# nearly black for the dense layers, so that what appears is what the unit asked for.
START_NOISE = {"conv": (0.0, 1.0), "dense": (0.0, 0.05), "output": (0.0, 0.05)}
DIGITS = [str(digit) for digit in range(10)]   # bundles the validation/ sets can measure
UNITS = {"file": "units.json", "sprites": "examples/{layer}/{index}.png", "per_unit": units.EXAMPLES}


def export_bundle(checkpoint_path: Path, out: Path, *, name: str, version_tag: str = "1",
                  description: str = "", progress: bool = True) -> dict:
    """Write the bundle into `out` (replacing it only once the new one is complete and valid)."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    config = config_of(checkpoint["config"])
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
    export_model(model, layers, input_shape, staging / "model.onnx",
                 calibration.temperature(checkpoint["metrics"]))
    say("exporting gradient.onnx")
    export_gradient(model, layers, input_shape, staging / "gradient.onnx")
    torch.save({key: checkpoint[key] for key in ("config", "classes", "input", "state_dict")},
               staging / "checkpoint.pt")

    input_spec = {"channels": spec["channels"], "height": spec["height"], "width": spec["width"],
                  "value_range": [0, 1],
                  "min_side": smallest_side(model, layers, spec["channels"], MAX_SIDE),
                  "max_side": MAX_SIDE,
                  "normalization": {"mean": spec["mean"], "std": spec["std"], "in_graph": True},
                  "foreground": config.foreground,
                  "preprocess": config.preprocess if spec["channels"] == 1 else "none"}
    input_spec["deskew"] = config.deskew and input_spec["preprocess"] == "digit"
    layer_json = [layer.to_json() | {"any_size": layer.kind == "conv"} for layer in layers]
    graph = GradientGraph(session(staging / "gradient.onnx"), layer_json, input_shape[1:])
    visualizations, pictures = render_filters(graph, layer_json, input_shape, staging, progress)
    metrics, digit_like = dict(checkpoint["metrics"]), None
    if checkpoint["classes"] == DIGITS and input_spec["preprocess"] == "digit":
        say("measuring on the validation sets (handwriting, printed, real writers, non-digits)")
        accuracy, digit_like = realworld.measure(session(staging / "model.onnx"), input_spec)
        metrics |= accuracy
    say("measuring every unit on the training digits")
    digits = training_digits(checkpoint["config"])
    measure_units(staging, layer_json, names["model"]["outputs"], digits,
                  checkpoint["config"]["data"], pictures,
                  visualizations, _outgoing(model, layers), checkpoint["classes"])

    manifest = {
        "schema_version": 1,
        "name": name,
        "version": version_tag,
        "created": created(),
        "description": description,
        "architecture": checkpoint["config"]["architecture"],
        "labels": checkpoint["classes"],
        "input": input_spec,
        "layers": layer_json,
        "graphs": {"model": {"file": "model.onnx", **names["model"]},
                   "gradient": {"file": "gradient.onnx", **names["gradient"]}},
        "objective": OBJECTIVE,
        "visualizations": visualizations,
        "units": UNITS,
        **({"digit_like": digit_like} if digit_like else {}),
        "training": {"metrics": metrics, "data": checkpoint["data"],
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


def session(path: Path) -> ort.InferenceSession:
    """A graph run for the bundle's own figures, on training's fixed thread count: how a sum is
    split between threads changes its last bits, and the pictures are hundreds of steps of them."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def created() -> str:
    """Now, or SOURCE_DATE_EPOCH (reproducible-builds.org) if set: `make model` sets it to the
    Makefile's MODEL_DATE, so that a rebuild is identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc))
    return when.isoformat(timespec="seconds")


def render_filters(graph: GradientGraph, layers: list[dict], input_shape, directory: Path,
                   progress: bool) -> tuple[dict, dict[str, np.ndarray]]:
    """For every conv filter, dense unit and class: the image that maximises it, found by
    gradient ascent through the bundle's own gradient.onnx. One PNG each and an atlas per layer.
    Returns the manifest's visualizations and the pictures (N x C x H x W float) per layer."""
    rng = np.random.default_rng(0)
    total = sum(layer["channels"] for layer in layers)
    bar = tqdm(total=total, desc="rendering filters", unit="filter", disable=not progress)
    out, pictures = {}, {}
    for layer in layers:
        count, name = layer["channels"], layer["name"]
        settings = VISUALIZATION[layer["kind"]]
        wanted = [objectives.channel(name, k) for k in range(count)]
        low, high = START_NOISE[layer["kind"]]
        start = rng.uniform(low, high, (count, *input_shape)).astype(np.float32)
        result = render(graph, wanted, start, settings)
        # what the PNGs hold, so that every figure measured on a picture is the served picture's
        images = np.rint(np.clip(result.images, 0, 1) * 255) / 255
        folder = directory / "filters" / name
        folder.mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(images):
            to_png(image).save(folder / f"{k}.png", optimize=True)
        atlas(images).save(folder / "atlas.png", optimize=True)
        out[name] = {"atlas": f"filters/{name}/atlas.png", "filters": f"filters/{name}/{{index}}.png",
                     "count": count,
                     "objective": [round(float(v), 5) for v in result.objective_after]}
        pictures[name] = images.astype(np.float32)
        bar.update(count)
    bar.close()
    method = {kind: vars(settings) for kind, settings in VISUALIZATION.items()}
    return {"method": {"start_noise": START_NOISE, "settings": method}, "layers": out}, pictures


def training_digits(config: dict) -> Dataset:
    """The digits the checkpoint was trained on (its config names source and split), 8-bit, as
    its network sees them: normalised the way the service normalises an upload."""
    config = config_of(config)
    train = datasets(config).train
    images, _ = to_float(train, config)
    return Dataset(np.rint(images.numpy() * 255).astype(np.uint8), train.labels, train.classes)


def measure_units(directory: Path, layers: list[dict], outputs: list[str], digits, digits_source: str,
                  pictures: dict[str, np.ndarray], visualizations: dict,
                  outgoing: dict[str, np.ndarray], classes: list[str]) -> None:
    """units.json and the example sprites; each layer's fidelity and dead units into
    `visualizations` (training.units says what they mean)."""
    model = session(directory / "model.onnx")
    on_digits = units.activity(model, outputs, digits.images, layers)
    size = digits.images.shape[2:]
    described = units.describe(layers, on_digits, digits.labels, classes, size, outgoing)
    for layer in layers:
        name = layer["name"]
        on_picture = units.activity(model, outputs, np.rint(pictures[name] * 255).astype(np.uint8),
                                    [layer])[name]
        visualizations["layers"][name]["fidelity"] = units.fidelity(layer, on_picture, on_digits[name])
        visualizations["layers"][name]["dead"] = units.dead(layer, on_picture, on_digits[name])
        folder = directory / "examples" / name
        folder.mkdir(parents=True, exist_ok=True)
        for unit in described[name]:
            units.sprite(digits.images, unit).save(folder / f"{unit['index']}.png", optimize=True)
    source = {"source": digits_source, "split": "train", "count": len(digits.labels)}
    (directory / UNITS["file"]).write_text(json.dumps({"digits": source, "layers": described}) + "\n")


def _outgoing(model, layers) -> dict[str, np.ndarray]:
    """classes x units weights of the logits' Linear, for the dense layer that feeds it."""
    dense = [layer for layer in layers if layer.kind == "dense"]
    weight = dict(model.named_modules())[layers[-1].module].weight.detach().numpy()
    if not dense or weight.shape[1] != dense[-1].channels:
        return {}
    return {dense[-1].name: weight.astype(np.float64)}


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
