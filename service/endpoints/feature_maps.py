"""POST /feature-maps: a layer's activation maps for one image (the lecture's "feature map"), as
one labelled grid on one shared scale, and the layer's filters ranked by degree of activation."""
from __future__ import annotations

import numpy as np
from flask import Response, jsonify, request

from service.plumbing import grids, openapi, params
from service.plumbing.params import Param
from service.plumbing.problems import bad_request
from service.runtime import preprocess
from service.runtime.preprocess import MODES, default_mode
from service.runtime.readout import degrees, spatial_layers, top_k_labels
from service.runtime.served import Served, current

blueprint = openapi.Documented("feature_maps", __name__)
TOP_K = 3


@params.per_model
def parameters(served: Served) -> list[Param]:
    spatial = spatial_layers(served)
    return [
        Param("layer", str, None, f"required: a layer with feature maps ({', '.join(spatial)})",
              choices=tuple(spatial)),
        Param("preprocess", str, default_mode(served.bundle.manifest["input"]), "as for /predict",
              choices=MODES),
    ]


@blueprint.post("/feature-maps")
def feature_maps():
    served = current()
    bundle = served.bundle
    values = params.read_all(parameters(served))
    layer = values["layer"]
    if layer is None:
        raise bad_request("layer is required: one of " + ", ".join(spatial_layers(served)))
    image = preprocess.from_request(request, bundle.manifest["input"], values["preprocess"], 1,
                                    served.settings.max_pixels)[0]
    outputs = served.infer(image[None], ["probabilities", layer])
    activation = outputs[layer][0]
    # One scale for every map (the layer's largest activation is white), so the grid shows which
    # filters fire most, not just where each fires; as /predict's feature_maps.
    peak = float(activation.max())
    scaled = activation / peak if peak > 0 else np.zeros_like(activation)
    grid = grids.labelled_grid(scaled)
    if request.accept_mimetypes.best_match(["application/json", "image/png"]) == "image/png":
        return Response(grids.png(grid), mimetype="image/png")
    degree = degrees(activation)
    order = np.argsort(-np.asarray(degree["mean"]), kind="stable")
    probabilities = outputs["probabilities"][0]
    return jsonify(model={"name": bundle.name, "version": bundle.manifest["version"]},
                   layer=layer,
                   prediction=top_k_labels(probabilities, bundle.labels, min(TOP_K, len(bundle.labels))),
                   ranking=[{"index": int(k), "mean": degree["mean"][k], "max": degree["max"][k]}
                            for k in order],
                   grid=grids.png_base64(grid))


@blueprint.openapi
def _openapi(served: Served, models: list[str]) -> openapi.Part:
    """/feature-maps for /openapi.json, its schema inline."""
    declared = [p.openapi() for p in parameters(served)]
    declared[0]["required"] = True   # Param has no required flag; the handler enforces it (400)
    schema = {
        "type": "object", "additionalProperties": False,
        "required": ["model", "layer", "prediction", "ranking", "grid"],
        "properties": {
            "model": {"$ref": "#/components/schemas/Model"},
            "layer": {"type": "string"},
            "prediction": openapi.TOP_K,
            "ranking": {"type": "array", "description": "every filter, by mean activation (the "
                                                        "degree of activation), highest first",
                        "items": {"type": "object", "required": ["index", "mean", "max"],
                                  "properties": {"index": {"type": "integer"},
                                                 "mean": {"type": "number"},
                                                 "max": {"type": "number"}}}},
            "grid": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png",
                     "description": "every channel's map, labelled with its index, one scale"}}}
    return openapi.Part(paths={"/feature-maps": openapi.one_image_operation(
        served, models,
        "A layer's feature maps for one image as a labelled grid, and its filters ranked by "
        "degree of activation",
        declared, schema, "the maps and ranking (JSON), or the grid alone with Accept: image/png")})
