"""GET /filters...: the explainable layers, and what each of their filters has learned.

The pictures are the bundle's own (made at training time by activation maximisation), and so are
the dataset examples (the training digits that excite each unit most, OpenAI Microscope's
"dataset examples"); the first conv layer's raw kernels are drawn from model.onnx.
"""
from __future__ import annotations

import io

import numpy as np
from flask import Response, jsonify, request
from PIL import Image

from service.plumbing import grids, openapi
from service.plumbing.params import Param
from service.plumbing.problems import not_found
from service.runtime.served import Served, current
from service.runtime.weights import kernel_planes

blueprint = openapi.Documented("filters", __name__)
WEIGHTS_SCALE = 16   # a 3x3 kernel drawn at 1 pixel per weight is too small to see
NO_EXAMPLES = ("this bundle was built before dataset examples (no units.json); rebuild it with "
               "python -m training export")


def scale_param(served: Served, default: int | None) -> Param:
    return Param("scale", int, default, "upscale by this integer factor, nearest neighbour "
                 f"(default 1; {WEIGHTS_SCALE} for weights)", 1, served.settings.max_scale)


@blueprint.get("/filters")
def layers():
    served = current()
    return jsonify(model=_model(served),
                   layers=[_describe(served, layer) for layer in served.bundle.layers])


@blueprint.get("/filters/<layer>")
def layer_filters(layer: str):
    served = current()
    described = _describe(served, _layer(served, layer))
    visual = _visual(served, layer)
    units = (served.units or {}).get("layers", {}).get(layer)
    described["filters"] = [
        {"index": k, "image": f"/filters/{layer}/{k}" if visual else None,
         "objective": visual["objective"][k] if visual else None,
         "fidelity": _fidelity(visual, k), "dead": _dead(visual, k),
         "fire_rate": units[k].get("fire_rate") if units else None,
         "examples": f"/filters/{layer}/{k}/examples" if units else None}
        for k in range(described["channels"])]
    return jsonify(described)


@blueprint.get("/filters/<layer>/<item>")
def filter_image(layer: str, item: str):
    served = current()
    _layer(served, layer)
    if item == "weights":
        return _weights(served, layer)
    visual = _visual(served, layer)
    if visual is None:
        raise not_found(f"the bundle has no pictures for layer {layer!r}")
    index = _index(item, visual["count"])
    if item == "atlas":
        path = visual["atlas"]
    elif index is not None:
        path = visual["filters"].format(index=index)
    else:
        raise not_found(f"layer {layer!r} has filters 0..{visual['count'] - 1}, 'atlas' and "
                        f"(first conv layer only) 'weights'; not {item!r}")
    return _bundle_png(served, path, scale_param(served, 1).read())


@blueprint.get("/filters/<layer>/<index>/examples")
def unit_examples(layer: str, index: str):
    """The unit's dataset examples: JSON, or with Accept preferring image/png the bundle's sprite
    of them (one URL, so that what a page shows and what it reads cannot disagree)."""
    served = current()
    _layer(served, layer)
    scale = scale_param(served, 1).read()   # checked for JSON too: a bad value is always a 4xx
    units = _layer_units(served, layer)
    k = _index(index, len(units))
    if k is None:
        raise not_found(f"layer {layer!r} has units 0..{len(units) - 1}; not {index!r}")
    if request.accept_mimetypes.best_match(["application/json", "image/png"]) == "image/png":
        response = _bundle_png(served, served.bundle.manifest["units"]["sprites"]
                               .format(layer=layer, index=k), scale)
    else:
        response = jsonify(_unit(served, layer, units[k]))
    response.vary.add("Accept")
    return response


def _unit(served: Served, layer: str, unit: dict) -> dict:
    k = unit["index"]
    visual = _visual(served, layer)
    links = {"sprite": f"/filters/{layer}/{k}/examples"}
    if visual:
        links["picture"] = f"/filters/{layer}/{k}"
    answer = {"model": _model(served), "layer": layer, "index": k,
              "digits": served.units["digits"], "fire_rate": unit.get("fire_rate"),
              "best_degree": unit["best_degree"], "dead": _dead(visual, k),
              "fidelity": _fidelity(visual, k), "examples": unit["examples"]}
    if "pushes" in unit:
        answer["pushes"] = unit["pushes"]
    if layer == _first_conv(served) and served.first_conv_kernels is not None:
        answer["weights"] = served.first_conv_kernels[k]
        links["weights"] = f"/filters/{layer}/weights"
    return answer | {"links": links}


def _layer_units(served: Served, layer: str) -> list[dict]:
    if served.units is None:
        raise not_found(NO_EXAMPLES)
    units = served.units["layers"].get(layer)
    if units is None:
        raise not_found(f"the bundle has no dataset examples for layer {layer!r}")
    return units


def _index(text: str, count: int) -> int | None:
    """A unit index in 0..count-1, or None. ASCII digits only: str.isdigit also accepts '²',
    which int() refuses."""
    if text.isascii() and text.isdigit() and int(text) < count:
        return int(text)
    return None


def _visual(served: Served, layer: str) -> dict | None:
    return served.bundle.manifest["visualizations"]["layers"].get(layer)


def _fidelity(visual: dict | None, k: int) -> float | None:
    return visual["fidelity"][k] if visual and "fidelity" in visual else None


def _dead(visual: dict | None, k: int) -> str | None:
    return visual.get("dead", {}).get(str(k)) if visual else None


def _bundle_png(served: Served, path: str, scale: int) -> Response:
    if scale > 1:
        with Image.open(io.BytesIO(served.files[path])) as image:
            return _png(grids.upscale(image, scale))
    # The manifest's sha256 of the file is its strong ETag: a browser revalidating gets a 304.
    response = Response(served.files[path], mimetype="image/png")
    response.set_etag(served.bundle.manifest["files"][path]["sha256"])
    return response.make_conditional(request)


def _weights(served: Served, layer: str) -> Response:
    first_conv = _first_conv(served)
    kernels = served.first_conv_kernels
    if layer != first_conv or kernels is None:
        raise not_found(f"raw weights are viewable for the first conv layer ({first_conv}) only")
    scale = scale_param(served, WEIGHTS_SCALE).read()
    planes = kernel_planes(kernels)                    # out x in x kh x kw
    per_input = [grids.grid(planes[:, c]) for c in range(planes.shape[1])]
    picture = per_input[0] if len(per_input) != 3 else np.stack(per_input, axis=-1)
    return _png(grids.upscale(grids.to_image(picture), scale))


def _png(image) -> Response:
    return Response(grids.png(image), mimetype="image/png")


def _model(served: Served) -> dict:
    return {"name": served.bundle.name, "version": served.bundle.manifest["version"]}


def _layer(served: Served, name: str) -> dict:
    try:
        return served.bundle.layer(name)
    except KeyError:
        raise not_found(f"no layer {name!r}; layers: "
                        f"{', '.join(entry['name'] for entry in served.bundle.layers)}") from None


def _describe(served: Served, layer: dict) -> dict:
    name = layer["name"]
    links = {"self": f"/filters/{name}", "filter": f"/filters/{name}/{{index}}"}
    if name in served.bundle.manifest["visualizations"]["layers"]:
        links["atlas"] = f"/filters/{name}/atlas"
    if served.units is not None and name in served.units["layers"]:
        links["examples"] = f"/filters/{name}/{{index}}/examples"
    if name == _first_conv(served):
        links["weights"] = f"/filters/{name}/weights"
    return {key: layer[key] for key in ("name", "kind", "channels", "kernel", "stride",
                                        "receptive_field", "shape", "any_size")} | {"links": links}


def _first_conv(served: Served) -> str | None:
    return next((entry["name"] for entry in served.bundle.layers if entry["kind"] == "conv"), None)


@blueprint.openapi
def _openapi(served, models: list[str]) -> openapi.Part:
    """The /filters paths for /openapi.json."""
    model = openapi.model_parameter(served, models)
    layer_names = [layer["name"] for layer in served.bundle.layers]
    layer = {"name": "layer", "in": "path", "required": True,
             "schema": {"type": "string", "enum": layer_names},
             "description": f"one of {', '.join(layer_names)}"}
    item = {"name": "item", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": r"^([0-9]+|atlas|weights)$"},
            "description": "a filter index, 'atlas' (all filters in a grid) or 'weights' (raw "
                           "kernels; first conv layer only)"}
    unit = {"name": "index", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 0},
            "description": "a filter, unit or class index, below the layer's channels"}
    not_found = {"404": openapi.problem_response("unknown model, layer or filter")}
    unit_properties = {
        "fidelity": {"type": ["number", "null"],
                     "description": "the unit's degree of activation on its picture divided by "
                                    "that of the training digit that excites it most; null: no "
                                    "training digit makes it fire, or an older bundle"},
        "dead": {"type": ["string", "null"],
                 "description": "why the unit is dead (the evidence); null: it is not, or an "
                                "older bundle"},
        "fire_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                      "description": "the fraction of training digits on which it fires "
                                     "(logits: is the top class); null: not recorded"}}
    layer_schema = {
        "type": "object",
        "required": ["name", "kind", "channels", "kernel", "stride", "receptive_field", "shape",
                     "any_size", "links"],
        "properties": {
            "name": {"type": "string"}, "kind": {"enum": ["conv", "dense", "output"]},
            "channels": {"type": "integer"},
            "kernel": {"type": ["array", "null"], "items": {"type": "integer"}},
            "stride": {"type": ["integer", "null"]},
            "receptive_field": {"type": "array", "items": {"type": "integer"}},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "any_size": {"type": "boolean"},
            "links": {"type": "object", "required": ["self", "filter"],
                      "additionalProperties": {"type": "string"}}}}
    paths = {
        "/filters": {"get": {
            "summary": "Every explainable layer with its kind, size, kernel, receptive field and links",
            "parameters": [model],
            "responses": {"200": openapi.json_response("the layers", "Layers")}
                         | openapi.UNKNOWN_MODEL | openapi.UNEXPECTED}},
        "/filters/{layer}": {"get": {
            "summary": "A layer and its filters",
            "parameters": [layer, model],
            "responses": {"200": openapi.json_response("the layer", "LayerFilters")}
                         | not_found | openapi.UNEXPECTED}},
        "/filters/{layer}/{item}": {"get": {
            "summary": "What a filter has learned (the image that maximises it), the layer's "
                       "atlas, or the first conv layer's raw kernels",
            "parameters": [layer, item, model, scale_param(served, None).openapi()],
            "responses": {"200": openapi.png_response("the picture; a bundle's own picture "
                                                      "(unscaled) has its sha256 in the manifest "
                                                      "as ETag"),
                          "304": {"description": "If-None-Match names the picture's ETag"},
                          "400": openapi.problem_response("scale is not an integer"),
                          "422": openapi.problem_response("scale outside its bounds")}
                         | not_found | openapi.UNEXPECTED}},
        "/filters/{layer}/{index}/examples": {"get": {
            "summary": "A unit's dataset examples: the training digits that excite it most, "
                       "with (conv layers) where it fires; whether it is dead, how often it "
                       "fires, how well its picture excites it",
            "parameters": [layer, unit, model, scale_param(served, None).openapi()],
            "responses": {"200": {"description": "JSON, or with Accept preferring image/png the "
                                                 "examples in a 3x3 grid with each receptive "
                                                 "field outlined (the bundle's file, its sha256 "
                                                 "as ETag when unscaled)",
                                  "headers": {"Vary": {"schema": {"type": "string"},
                                                       "required": True,
                                                       "description": "Accept"}},
                                  "content": {"application/json": {"schema": {
                                      "$ref": "#/components/schemas/UnitExamples"}}}
                                             | openapi.png_response("")["content"]},
                          "304": {"description": "If-None-Match names the sprite's ETag"},
                          "400": openapi.problem_response("scale is not an integer"),
                          "422": openapi.problem_response("scale outside its bounds"),
                          "404": openapi.problem_response(
                              "unknown model, layer or unit, or a bundle built before dataset "
                              "examples (the detail says to rebuild it)")} | openapi.UNEXPECTED}}}
    schemas = {
        "Layer": layer_schema,
        "Layers": {"type": "object", "required": ["model", "layers"],
                   "properties": {"model": {"$ref": "#/components/schemas/Model"},
                                  "layers": {"type": "array",
                                             "items": {"$ref": "#/components/schemas/Layer"}}}},
        "LayerFilters": {"allOf": [{"$ref": "#/components/schemas/Layer"}, {
            "type": "object", "required": ["filters"],
            "properties": {"filters": {"type": "array", "items": {
                "type": "object",
                "required": ["index", "image", "objective", "fidelity", "dead", "fire_rate",
                             "examples"],
                "properties": {"index": {"type": "integer"}, "image": {"type": ["string", "null"]},
                               "objective": {"type": ["number", "null"]},
                               "fidelity": unit_properties["fidelity"],
                               "dead": unit_properties["dead"],
                               "fire_rate": unit_properties["fire_rate"],
                               "examples": {"type": ["string", "null"], "description":
                                            "the unit's dataset examples; null: the bundle was "
                                            "built before them"}}}}}}]},
        "UnitExamples": {
            "type": "object",
            "required": ["model", "layer", "index", "digits", "fire_rate", "best_degree", "dead",
                         "fidelity", "examples", "links"],
            "properties": unit_properties | {
                "model": {"$ref": "#/components/schemas/Model"},
                "layer": {"type": "string"}, "index": {"type": "integer"},
                "digits": {"type": "object", "description": "the digits searched: the training "
                           "split of the manifest's training.data (source, split, count)"},
                "best_degree": {"type": "number",
                                "description": "the degree of activation of the first example"},
                "examples": {"type": "array", "items": {
                    "type": "object", "required": ["digit", "label", "degree"],
                    "properties": {
                        "digit": {"type": "integer", "minimum": 0,
                                  "description": "index into the training split"},
                        "label": {"type": "string"},
                        "degree": {"type": "number", "description": "degree of activation: the "
                                   "mean of the feature map (conv), the value (dense, logits)"},
                        "box": {"type": "array", "items": {"type": "integer"}, "minItems": 4,
                                "maxItems": 4, "description": "conv layers: the receptive field "
                                "of the cell where the unit fires most, in input pixels: top, "
                                "left (inclusive), bottom, right (exclusive)"}}},
                    "description": "the training digits that excite the unit most, best first"},
                "pushes": {"type": "object", "required": ["up", "down"],
                           "description": "dense layers feeding the output: the classes its "
                                          "outgoing weights raise and lower most",
                           "properties": {direction: {"type": "array", "items": {
                               "type": "object", "required": ["class", "weight"],
                               "properties": {"class": {"type": "string"},
                                              "weight": {"type": "number"}}}}
                               for direction in ("up", "down")}},
                "weights": {"type": "array", "description": "first conv layer: the raw kernel, "
                            "input channels x kernel height x kernel width",
                            "items": {"type": "array", "items": openapi.NUMBER_LIST}},
                "links": {"type": "object", "required": ["sprite"],
                          "additionalProperties": {"type": "string"},
                          "description": "sprite: this URL with Accept: image/png"}}}}
    return openapi.Part(paths, schemas)
