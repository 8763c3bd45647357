"""POST /predict: labels, the degree of activation of every filter, and feature maps."""
from __future__ import annotations

import numpy as np
from flask import jsonify, request

from service.plumbing import grids, openapi, params
from service.plumbing.params import Param
from service.plumbing.problems import unprocessable
from service.runtime import preprocess
from service.runtime.preprocess import MODES, default_mode
from service.runtime.readout import degrees, spatial_layers, top_k_labels
from service.runtime.served import Served, current

blueprint = openapi.Documented("predict", __name__)


@params.per_model
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
    limits = served.settings
    batch = preprocess.from_request(request, spec, values["preprocess"], limits.max_batch,
                                    limits.max_pixels, limits.max_request_pixels)
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


def _feature_map_layers(served: Served, requested: list[str]) -> list[str]:
    spatial = spatial_layers(served)
    for name in requested:
        if name not in spatial:
            raise unprocessable(f"feature_maps: {name!r} is not a layer with feature maps; "
                                f"choose from {', '.join(spatial)}")
    return list(dict.fromkeys(requested))


def _feature_map_png(activation: np.ndarray) -> str:
    """All channels of one layer as a grid, on one scale (the layer's largest activation is white),
    so that the grid shows which filters fire most, not just where each fires."""
    peak = float(activation.max())
    scaled = activation / peak if peak > 0 else np.zeros_like(activation)
    return grids.png_base64(grids.to_image(grids.grid(scaled)))


@blueprint.openapi
def _openapi(served, models: list[str]) -> openapi.Part:
    """/predict for /openapi.json."""
    model = openapi.model_parameter(served, models)
    paths = {
        "/predict": {"post": {
            "summary": "Classify one or more images; optionally the degree of activation of "
                       "every filter and feature maps",
            "parameters": [model] + [p.openapi() for p in parameters(served)],
            "requestBody": openapi.upload_body(served, True, served.settings.max_batch),
            "responses": {"200": openapi.json_response("one result per image, in order",
                                                       "Prediction")}
                         | openapi.upload_problems() | openapi.UNKNOWN_MODEL | openapi.UNEXPECTED}}}
    schemas = {
        "Prediction": {
            "type": "object", "required": ["model", "preprocess", "results"],
            "properties": {
                "model": {"$ref": "#/components/schemas/Model"},
                "preprocess": {"type": "string"},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["top_k"], "additionalProperties": False,
                    "properties": {
                        "top_k": openapi.TOP_K,
                        "digit_score": {
                            "type": "number",
                            "description": "how much the input looks like a digit: the energy "
                                           "score T*logsumexp(logits/T) of model.onnx (bundles "
                                           "that record a digit_like threshold)"},
                        "digit_like": {
                            "type": "boolean",
                            "description": "digit_score at or above the bundle's threshold, which "
                                           "97 % of the handwriting validation digits pass (with "
                                           "preprocess=digit, where it was chosen); false: this "
                                           "does not look like a digit, whatever top_k says"},
                        "activations": {
                            "description": "per layer, per channel: the mean activation (the "
                                           "degree of activation) and the max",
                            "type": "object", "additionalProperties": {
                                "type": "object", "required": ["mean", "max"],
                                "properties": {"mean": openapi.NUMBER_LIST,
                                               "max": openapi.NUMBER_LIST}}},
                        "feature_maps": {"type": "object",
                                         "additionalProperties": openapi.PNG_BASE64}}}}}}}
    return openapi.Part(paths, schemas)
