"""POST /explain: which pixels made the model give a class its score (lens.attribution).

One image in (as /predict takes it), preprocessed as /predict does; the attribution map of the
target class (default: the predicted one) by gradient saliency, SmoothGrad, Integrated Gradients
or Grad-CAM, drawn as a heatmap PNG (the map alone, the model input's size) and over the input.
JSON by default; `Accept: image/png` gives the overlay alone.

SmoothGrad and Integrated Gradients run `samples` / `steps` gradient runs (at most
CNNLENS_MAX_EXPLAIN_SAMPLES) in one of the worker's gradient slots
(service.runtime.gradient_slots), within CNNLENS_EXPLAIN_TIME_BUDGET seconds: past it the answer is a 503 with Retry-After, never a map of
part of the samples. Saliency and Grad-CAM are one gradient run each, as cheap as a /predict, and
need no slot.
"""
from __future__ import annotations

import time

import numpy as np
from flask import Response, jsonify, request

from lens import attribution
from service import observability
from service.plumbing import grids, openapi, params
from service.plumbing.params import Param
from service.plumbing.problems import unavailable, unprocessable
from service.runtime import gradient_slots, preprocess
from service.runtime.preprocess import MODES, default_mode
from service.runtime.readout import top_k_labels
from service.runtime.served import Served, current

blueprint = openapi.Documented("explain", __name__)
DEFAULT_METHOD = "gradcam"
TOP_K = 3
OVERLAY_ALPHA = 0.7   # opacity of the heatmap where the map is at its maximum
SAMPLED = ("smoothgrad", "integrated_gradients")   # the methods whose cost grows with a parameter
# matplotlib's "inferno" at 0, 0.1, ..., 1: perceptually uniform, readable in greyscale, and black
# at 0 so that the heatmap of a digit's empty background stays dark.
_INFERNO = np.array([[0, 0, 4], [22, 11, 57], [66, 10, 104], [106, 23, 110], [147, 38, 103],
                     [188, 55, 84], [221, 81, 58], [243, 120, 25], [252, 165, 10],
                     [246, 215, 70], [252, 255, 164]], np.float32) / 255


@params.per_model
def parameters(served: Served) -> list[Param]:
    most = served.settings.max_explain_samples
    spec = served.bundle.manifest["input"]
    conv = attribution.conv_layers(served.bundle.layers)
    low, high = spec["value_range"]
    return [
        Param("method", str, DEFAULT_METHOD, "saliency: |d logit / d pixel| (Simonyan et al. "
              "2014); smoothgrad: its mean over noisy copies (Smilkov et al. 2017); "
              "integrated_gradients: along the path from a baseline (Sundararajan et al. 2017); "
              "gradcam: class-weighted feature maps of a conv layer (Selvaraju et al. 2017)",
              choices=attribution.METHODS),
        Param("target", int, None, "the class to explain (default: the predicted class)",
              0, len(served.bundle.labels) - 1),
        Param("layer", str, conv[-1] if conv else None, "gradcam only: the conv layer "
              "(default the last one)", choices=tuple(conv)),
        Param("samples", int, 25, "smoothgrad: noisy copies averaged", 1, most),
        Param("noise", float, 0.15, "smoothgrad: the noise's standard deviation as a fraction "
              f"of the input range [{low}, {high}]", 0.0, 1.0),
        Param("steps", int, 32, "integrated_gradients: points on the path (Riemann midpoints)",
              1, most),
        Param("baseline", str, "black", "integrated_gradients: the path's start, black or the "
              "input blurred", choices=attribution.BASELINES),
        Param("seed", int, 0, "smoothgrad: seed of the noise", 0, 2**32 - 1),
        Param("preprocess", str, default_mode(spec), "as for /predict", choices=MODES),
        Param("raw", bool, False, "add the attribution map as nested lists (values)"),
    ]


@blueprint.post("/explain")
def explain():
    served = current()
    bundle = served.bundle
    spec = bundle.manifest["input"]
    values = params.read_all(parameters(served))
    if values["method"] == "gradcam" and values["layer"] is None:
        raise unprocessable("method=gradcam: this model has no conv layer")
    image = preprocess.from_request(request, spec, values["preprocess"], 1,
                                    served.settings.max_pixels)[0]
    outputs = {name: value[0] for name, value in served.infer(image[None]).items()}
    probabilities = outputs["probabilities"]
    target = values["target"]
    if target is None:
        target = int(np.argmax(probabilities))
    low, high = spec["value_range"]
    options = dict(activations=outputs, layer=values["layer"], samples=values["samples"],
                   sigma=values["noise"] * (high - low), seed=values["seed"],
                   steps=values["steps"], baseline_kind=values["baseline"])
    try:
        heat = _attribute(served, values["method"], image, target, options)
    except attribution.AttributionError as error:
        raise unprocessable(str(error)) from None
    picture = _picture(image)
    scaled = _display_scale(heat)
    overlay = grids.to_image(_overlay(picture, scaled))
    if request.accept_mimetypes.best_match(["application/json", "image/png"]) == "image/png":
        return Response(grids.png(overlay), mimetype="image/png")
    body = {"model": {"name": bundle.name, "version": bundle.manifest["version"]},
            "method": values["method"],
            "target": {"index": target, "label": bundle.labels[target],
                       "probability": float(probabilities[target])},
            "prediction": top_k_labels(probabilities, bundle.labels, min(TOP_K, len(bundle.labels))),
            "heatmap": grids.png_base64(grids.to_image(colour_map(scaled))),
            "overlay": grids.png_base64(overlay),
            "input": grids.png_base64(grids.to_image(picture))}
    if values["raw"]:
        body["values"] = heat.tolist()
    return jsonify(body)


def _attribute(served: Served, method: str, image: np.ndarray, target: int,
               options: dict) -> np.ndarray:
    if method == "gradcam":   # its one run bypasses the graph's own timing
        with observability.gradient_step(served.bundle.name):
            return attribution.attribute(served.graph, method, image, target, **options)
    if method not in SAMPLED:
        return attribution.attribute(served.graph, method, image, target, **options)
    budget = served.settings.explain_time_budget
    with gradient_slots.hold(served.settings, budget):
        try:
            return attribution.attribute(served.graph, method, image, target, **options,
                                         deadline=time.monotonic() + budget)
        except attribution.BudgetExhausted as error:
            raise unavailable(f"{error} ({budget} s) under the server's current load; retry "
                              "later, or with fewer samples or steps", budget) from None


def _display_scale(heat: np.ndarray) -> np.ndarray:
    """|map| / its max, in [0, 1] (a map that is zero everywhere stays zero). Integrated
    Gradients' signed map is shown by magnitude; its sign is in the raw values."""
    magnitude = np.abs(heat)
    peak = float(magnitude.max())
    return magnitude / peak if peak > 0 else np.zeros_like(magnitude)


def colour_map(values: np.ndarray) -> np.ndarray:
    """H x W in [0, 1] -> H x W x 3 through the inferno colour map (linear between its stops)."""
    stops = np.linspace(0, 1, len(_INFERNO))
    return np.stack([np.interp(values, stops, _INFERNO[:, c]) for c in range(3)], axis=-1)


def _picture(image: np.ndarray) -> np.ndarray:
    """The model input (C x H x W) as a picture: H x W grey or H x W x 3 RGB."""
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def _overlay(picture: np.ndarray, scaled: np.ndarray) -> np.ndarray:
    rgb = picture[..., None].repeat(3, axis=-1) if picture.ndim == 2 else picture
    alpha = OVERLAY_ALPHA * scaled[..., None]
    return (1 - alpha) * rgb + alpha * colour_map(scaled)


@blueprint.openapi
def _openapi(served: Served, models: list[str]) -> openapi.Part:
    """/explain for /openapi.json, its schema inline."""
    png_base64 = openapi.PNG_BASE64
    schema = {
        "type": "object", "additionalProperties": False,
        "required": ["model", "method", "target", "prediction", "heatmap", "overlay", "input"],
        "properties": {
            "model": {"$ref": "#/components/schemas/Model"},
            "method": {"enum": list(attribution.METHODS)},
            "target": {"type": "object", "required": ["index", "label", "probability"],
                       "properties": {"index": {"type": "integer"}, "label": {"type": "string"},
                                      "probability": {"type": "number", "minimum": 0,
                                                      "maximum": 1}}},
            "prediction": openapi.TOP_K,
            "heatmap": png_base64 | {"description": "the attribution map alone, the model "
                                                    "input's size, inferno colour map"},
            "overlay": png_base64 | {"description": "the heatmap blended over the input"},
            "input": png_base64 | {"description": "the preprocessed input the model saw"},
            "values": {"type": "array", "description": "raw=true: the attribution map (H x W) "
                                                       "before scaling for display",
                       "items": {"type": "array", "items": {"type": "number"}}}}}
    operation = openapi.one_image_operation(
        served, models,
        "Explain one prediction: an attribution map of a class by saliency, SmoothGrad, "
        "Integrated Gradients or Grad-CAM",
        [p.openapi() for p in parameters(served)], schema,
        "the explanation (JSON), or the overlay alone with Accept: image/png")
    operation["post"]["responses"]["503"] = openapi.busy_response(
        "smoothgrad and integrated_gradients only: every gradient slot of the worker stayed "
        f"busy, or the gradient runs took over {served.settings.explain_time_budget} s (the "
        "server is overloaded; no partial map is returned)")
    return openapi.Part(paths={"/explain": operation})
