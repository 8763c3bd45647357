"""POST /predict: labels, the degree of activation of every filter, and feature maps."""
from __future__ import annotations

import numpy as np
from flask import Blueprint, jsonify, request

from service.plumbing import grids, params

from service.runtime import preprocess
from service.plumbing.params import Param
from service.runtime.preprocess import MODES, default_mode
from service.plumbing.problems import unprocessable
from service.runtime.served import Served, current

blueprint = Blueprint("predict", __name__)


def parameters(served: Served) -> list[Param]:
    spec = served.bundle.manifest["input"]
    return [
        Param("top_k", int, 3, "how many labels to return, most probable first",
              1, len(served.bundle.labels)),
        Param("activations", bool, False, "add every layer's degree of activation per channel "
              "(mean over its feature map) and its max"),
        Param("feature_maps", str, "", "comma-separated layers whose feature maps to add as "
              f"base64 PNG grids: {', '.join(spatial_layers(served))}"),
        Param("preprocess", str, default_mode(spec), "digit: MNIST-style (invert dark-on-light, "
              "remove the background and any shadow, crop, deskew where the bundle was trained "
              "so, fit 20x20, centre by mass in 28x28); none: only resize", choices=MODES),
    ]


@blueprint.post("/predict")
def predict():
    served = current()
    bundle = served.bundle
    spec = bundle.manifest["input"]
    values = params.read_all(parameters(served))
    top_k, with_activations = values["top_k"], values["activations"]
    mapped = _feature_map_layers(served, params.names(values["feature_maps"]))
    batch = preprocess.from_request(request, spec, values["preprocess"], served.settings.max_batch,
                                    served.settings.max_pixels)
    digit_like = bundle.manifest.get("digit_like")
    scores = [digit_like["output"]] if digit_like else []
    outputs = served.infer(batch, None if with_activations else ["probabilities", *scores, *mapped])
    results = []
    for n in range(len(batch)):
        result = {"top_k": top_k_labels(outputs["probabilities"][n], bundle.labels, top_k)}
        if digit_like:
            score = float(outputs[digit_like["output"]][n])
            result |= {"digit_score": score, "digit_like": score >= digit_like["threshold"]}
        if with_activations:
            result["activations"] = {layer["name"]: degrees(outputs[layer["name"]][n])
                                     for layer in bundle.layers}
        if mapped:
            result["feature_maps"] = {name: _feature_map_png(outputs[name][n]) for name in mapped}
        results.append(result)
    return jsonify(model={"name": bundle.name, "version": bundle.manifest["version"]},
                   preprocess=values["preprocess"], results=results)


def spatial_layers(served: Served) -> list[str]:
    return [layer["name"] for layer in served.bundle.layers if len(layer["shape"]) == 3]


def _feature_map_layers(served: Served, requested: list[str]) -> list[str]:
    spatial = spatial_layers(served)
    for name in requested:
        if name not in spatial:
            raise unprocessable(f"feature_maps: {name!r} is not a layer with feature maps; "
                                f"choose from {', '.join(spatial)}")
    return list(dict.fromkeys(requested))


def top_k_labels(probabilities: np.ndarray, labels: list[str], k: int) -> list[dict]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"index": int(i), "label": labels[i], "probability": float(probabilities[i])}
            for i in order]


def degrees(activation: np.ndarray) -> dict:
    """The lecture's degree of activation of each channel: its mean over the feature map (for a
    dense unit, its value), and the strongest single response (the max) beside it."""
    flat = activation.reshape(activation.shape[0], -1)
    return {"mean": flat.mean(axis=1).tolist(), "max": flat.max(axis=1).tolist()}


def _feature_map_png(activation: np.ndarray) -> str:
    """All channels of one layer as a grid, on one scale (the layer's largest activation is white),
    so that the grid shows which filters fire most, not just where each fires."""
    peak = float(activation.max())
    scaled = activation / peak if peak > 0 else np.zeros_like(activation)
    return grids.png_base64(grids.to_image(grids.grid(scaled)))
