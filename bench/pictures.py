"""Part 6: rendering the filter pictures, before and after the per-kind settings changed.

"Before" is training/export.py's VISUALIZATION at commit 0cf55c3, "after" the current one; both
are rendered by the current engine (lens/optvis/render.py) through the default bundle's
gradient.onnx, the way export renders them: each layer's pictures as one batch, one
objectives.channel per unit, from export's START_NOISE drawn in export's order (the start noise
did not change). Per round, each layer is rendered with the before settings and then with the
after settings back to back, so that each ratio compares two neighbouring runs on this noisy
machine. Each picture's fidelity is measured as export measures it (training.units, on the
training digits); the after pictures are checked against the objectives the bundle records."""
from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import onnxruntime as ort

from bench import servers
from bench.stats import summary
from lens.optvis import objectives
from lens.optvis.render import GradientGraph, Settings, render, work
from training import units
from training.export import START_NOISE, VISUALIZATION, training_digits
from training.verify import LOGIT_PERCENTILE

BUNDLE = servers.ROOT / "models" / "mnist-cnn"
BEFORE_COMMIT = "0cf55c3"
# `git show 0cf55c3:training/export.py`, VISUALIZATION (its START_NOISE is the current one)
BEFORE = {
    "conv": Settings(steps=96, step_size=0.02, jitter=1, blur_sigma=0.5, blur_every=8),
    "dense": Settings(steps=128, step_size=0.02, jitter=1, blur_sigma=0.8, blur_every=4, decay=0.01),
    "output": Settings(steps=128, step_size=0.02, jitter=1, blur_sigma=0.8, blur_every=4, decay=0.01),
}
SETTINGS = {"before": BEFORE, "after": VISUALIZATION}


def gradient_graph(manifest: dict) -> GradientGraph:
    """gradient.onnx in a session like export's (onnxruntime's default options)."""
    session = ort.InferenceSession(str(BUNDLE / manifest["graphs"]["gradient"]["file"]),
                                   providers=["CPUExecutionProvider"])
    spec = manifest["input"]
    return GradientGraph(session, manifest["layers"], (spec["height"], spec["width"]))


def starts(layers: list[dict], shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Each layer's start images, drawn as export.render_filters draws them."""
    rng = np.random.default_rng(0)
    return {layer["name"]: rng.uniform(*START_NOISE[layer["kind"]],
                                       (layer["channels"], *shape)).astype(np.float32)
            for layer in layers}


def _first(layer: dict, per_layer: int | None) -> dict:
    """The layer as rendered here: all its units, or the first `per_layer` of them."""
    return layer | {"channels": min(layer["channels"], per_layer or layer["channels"])}


def _units(act: units.Activity, count: int) -> units.Activity:
    """The first `count` units' columns of an Activity."""
    cut = lambda a: None if a is None else a[:, :count]
    return units.Activity(cut(act.degree), cut(act.peak), cut(act.peak_cell))


def _fidelity(layer: dict, images: np.ndarray, session, outputs, on_digits) -> dict:
    """How the pictures (as their PNGs would hold them) compare with the training digits."""
    pixels = np.rint(np.clip(images, 0, 1) * 255).astype(np.uint8)
    count = layer["channels"]
    on_picture = _units(units.activity(session, outputs, pixels, [layer])[layer["name"]], count)
    digits = _units(on_digits[layer["name"]], count)
    ratios = [r for r in units.fidelity(layer, on_picture, digits) if r is not None]
    own = np.diag(on_picture.degree)
    out = {"beat_best_digit": int((own > digits.degree.max(axis=0)).sum()),   # verify's criterion
           "of": layer["channels"], "dead": sorted(units.dead(layer, on_picture, digits), key=int),
           "median_ratio": float(np.median(ratios)) if ratios else None}
    if layer["kind"] == "output":
        bar = np.percentile(digits.degree, LOGIT_PERCENTILE, axis=0)
        out[f"above_p{LOGIT_PERCENTILE}"] = int((own > bar).sum())
    return out


def run(rounds: int, per_layer: int | None = None) -> dict:
    """`per_layer`: render only each layer's first `per_layer` pictures (a quick run; the same pictures
    as the whole batch gives them, its batch smaller)."""
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    spec = manifest["input"]
    shape = (spec["channels"], spec["height"], spec["width"])
    graph = gradient_graph(manifest)
    start = starts(manifest["layers"], shape)
    layers = [_first(layer, per_layer) for layer in manifest["layers"]]
    start = {layer["name"]: start[layer["name"]][:layer["channels"]] for layer in layers}
    wanted = {layer["name"]: [objectives.channel(layer["name"], k) for k in range(layer["channels"])]
              for layer in layers}
    for layer in layers:   # warm-up: sessions allocate their buffers per batch size on first use
        render(graph, wanted[layer["name"]], start[layer["name"]], Settings(steps=2))

    seconds = {layer["name"]: {which: [] for which in SETTINGS} for layer in layers}
    first = {}
    for r in range(rounds):
        for layer in layers:
            name, kind = layer["name"], layer["kind"]
            for which, settings in SETTINGS.items():
                begin = time.perf_counter()
                result = render(graph, wanted[name], start[name], settings[kind])
                seconds[name][which].append(time.perf_counter() - begin)
                first.setdefault((name, which), result)
            s = seconds[name]
            print(f"  round {r + 1} {name:7} before {s['before'][-1]:6.2f} s  after "
                  f"{s['after'][-1]:6.2f} s  ({s['after'][-1] / s['before'][-1]:.2f}×)", flush=True)

    model = ort.InferenceSession(str(BUNDLE / manifest["graphs"]["model"]["file"]),
                                 providers=["CPUExecutionProvider"])
    outputs = manifest["graphs"]["model"]["outputs"]
    digits = training_digits(manifest["training"]["config"])
    on_digits = units.activity(model, outputs, digits.images, manifest["layers"])
    recorded = manifest["visualizations"]["layers"]

    out = {"bundle": str(BUNDLE.relative_to(servers.ROOT)), "before_commit": BEFORE_COMMIT,
           "engine": "current lens/optvis/render.py for both",
           "per_layer": per_layer, "training_digits": len(digits.labels),
           # which digits export.training_digits gave (their preprocessing decides the fidelity)
           "training_digits_sha256": hashlib.sha256(digits.images.tobytes()).hexdigest(),
           "start_noise": START_NOISE,
           "settings": {which: {kind: vars(s) for kind, s in by_kind.items()}
                        for which, by_kind in SETTINGS.items()},
           "layers": {}}
    for layer in layers:
        name, kind, count = layer["name"], layer["kind"], layer["channels"]
        row = {"kind": kind, "pictures": count}
        for which, settings in SETTINGS.items():
            result = first[(name, which)]
            row[which] = {
                "batch_s": summary(seconds[name][which]),
                "per_picture_ms": summary([t / count * 1000 for t in seconds[name][which]]),
                # every step is one gradient.onnx run on the whole batch, plus one before and
                # one after to measure the objective
                "runs_per_picture": result.steps_done + 2,
                "work_pixel_steps": work(tuple(shape[1:]), settings[kind]),
                "fidelity": _fidelity(layer, result.images, model, outputs, on_digits)}
        row["ratio"] = summary([a / b for a, b in zip(seconds[name]["after"], seconds[name]["before"])])
        row["after_matches_bundle"] = bool(np.allclose(
            first[(name, "after")].objective_after, recorded[name]["objective"][:count], rtol=1e-3, atol=1e-4))
        out["layers"][name] = row
    totals = {which: [sum(seconds[layer["name"]][which][r] for layer in layers) for r in range(rounds)]
              for which in SETTINGS}
    out["total"] = {"pictures": sum(layer["channels"] for layer in layers),
                    **{which: {"s": summary(values)} for which, values in totals.items()},
                    "ratio": summary([a / b for a, b in zip(totals["after"], totals["before"])])}
    return out
