"""GET /openapi.json (OpenAPI 3.1) and Swagger UI at /docs, served from the flask-swagger-ui
package (no CDN). The document is built from the same parameter declarations the handlers read
and from the served bundle, so its bounds and layer names are the ones in force."""
from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request
from flask_swagger_ui import get_swaggerui_blueprint
from werkzeug.datastructures import MIMEAccept

from service.endpoints import dream, explain, feature_maps, filters, page, predict, v2
from service.plumbing.images import MEDIA_TYPES
from service.observability import openapi_path as metrics_path
from service.plumbing.problems import Problem
from service.runtime.served import EXTENSION, Served, current

blueprint = Blueprint("openapi", __name__)
docs = get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "cnn-lens"},
                               blueprint_name="docs")
_PRODUCED = "cnnlens.produced"   # app.extensions key of what each operation answers with


@blueprint.get("/openapi.json")
def document():
    return jsonify(build(current(), current_app.extensions[EXTENSION].names()))


@blueprint.before_app_request
def _negotiate():
    """406 for a request whose Accept header allows none of the media types its operation answers
    with (as the document lists them), before any work is done. No Accept header, or */*, allows
    all. The /v2 protocol answers JSON (or its binary extension) whatever the client asks."""
    produced = _produced().get((_template(request.url_rule), request.method))
    accept = request.accept_mimetypes
    # Media type parameters do not count: a Prometheus scraper's text/plain;version=0.0.4 is the
    # text/plain that /metrics answers with (Werkzeug alone would not match them).
    ranges = MIMEAccept([(value.split(";")[0], quality) for value, quality in accept])
    if not produced or not accept or ranges.best_match(produced):
        return None
    raise Problem(406, f"this endpoint answers {', '.join(produced)}; the Accept header "
                       f"{request.headers['Accept']!r} allows none of them")


def _template(rule) -> str | None:
    """The document's path for a Flask rule: /filters/<layer> is /filters/{layer}."""
    return rule and re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)


def _produced() -> dict[tuple[str, str], list[str]]:
    """(path, METHOD) -> the media types of its successful answers, for every operation outside
    /v2. Computed once per app from the document: they depend on no model."""
    cached = current_app.extensions.get(_PRODUCED)
    if cached is None:
        registry = current_app.extensions[EXTENSION]
        paths = build(registry.get(None), registry.names())["paths"]
        cached = {(path, method.upper()): _success_types(operation)
                  for path, item in paths.items() if not _is_v2(path)
                  for method, operation in item.items()}
        current_app.extensions[_PRODUCED] = cached
    return cached


def _success_types(operation: dict) -> list[str]:
    return list(dict.fromkeys(media for status, response in operation["responses"].items()
                              if status.startswith("2") for media in response.get("content", {})))


def _is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def problem_response(description: str) -> dict:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _json(description: str, schema: str, headers: dict | None = None) -> dict:
    response = {"description": description,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
    return response | ({"headers": headers} if headers else {})


def png_response(description: str) -> dict:
    return {"description": description,
            "content": {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}}}


UNEXPECTED = {"500": problem_response("unexpected server error (details only in the server log)")}


def busy_response(why: str) -> dict:
    """503 of the gradient endpoints (service.runtime.gradient_slots), with its Retry-After."""
    return problem_response(why) | {"headers": {"Retry-After": {
        "schema": {"type": "integer", "minimum": 1}, "required": True,
        "description": "seconds after which a retry may find the server less busy"}}}


def upload_body(served: Served, required: bool, max_batch: int) -> dict:
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    base64 = {"type": "string", "contentEncoding": "base64",
              "description": "base64 of a PNG, JPEG, WebP, BMP or GIF file, or a data URL"}
    content = {media: {"schema": {"type": "string", "contentMediaType": media}} for media in MEDIA_TYPES}
    content["multipart/form-data"] = {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "array", "items": binary, "minItems": 1,
                                "maxItems": max_batch}}}}
    content["application/json"] = {"schema": {"oneOf": [
        {"type": "object", "required": ["image"], "properties": {"image": base64}},
        {"type": "object", "required": ["images"],
         "properties": {"images": {"type": "array", "items": base64, "minItems": 1,
                                   "maxItems": max_batch}}}]}}
    limits = served.settings
    return {"required": required, "content": content,
            "description": f"at most {limits.max_request_bytes} bytes; at most "
                           f"{limits.max_pixels} pixels per image; any mode (alpha, palette, "
                           "16-bit, CMYK, EXIF-rotated)"}


def upload_problems() -> dict:
    return {"400": problem_response("no image, empty image, bad JSON or base64, or a malformed parameter"),
            "413": problem_response("body, pixel count or number of images over the limit"),
            "415": problem_response("unsupported content type"),
            "422": problem_response("not a decodable image, or a parameter outside its bounds")}


def model_parameter(served: Served, models: list[str]) -> dict:
    """`?model=`, which every model endpoint takes."""
    return {"name": "model", "in": "query", "required": False,
            "schema": {"type": "string", "enum": models, "default": served.settings.default_model},
            "description": f"the model to use (GET /models); served now: {', '.join(models)}"}


def one_image_operation(served: Served, models: list[str], summary: str, parameters: list[dict],
                        schema: dict, answers: str) -> dict:
    """A POST that takes one uploaded image and answers JSON (`schema`), or a PNG alone with
    Accept: image/png (`answers` says what each is)."""
    return {"post": {
        "summary": summary,
        "parameters": [model_parameter(served, models)] + parameters,
        "requestBody": upload_body(served, True, 1),
        "responses": {"200": {"description": answers,
                              "content": {"application/json": {"schema": schema}}
                                         | png_response("")["content"]}}
                     | upload_problems() | {"404": problem_response("unknown model")}
                     | UNEXPECTED}}


def _paths(served: Served, models: list[str]) -> dict:
    model = model_parameter(served, models)
    unknown_model = {"404": problem_response("unknown model")}
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
    not_found = {"404": problem_response("unknown model, layer or filter")}
    return {
        "/predict": {"post": {
            "summary": "Classify one or more images; optionally the degree of activation of "
                       "every filter and feature maps",
            "parameters": [model] + [p.openapi() for p in predict.parameters(served)],
            "requestBody": upload_body(served, True, served.settings.max_batch),
            "responses": {"200": _json("one result per image, in order", "Prediction")}
                         | upload_problems() | unknown_model | UNEXPECTED}},
        "/dream": {"post": {
            "summary": "Deep Dream an uploaded image, or maximise a target from noise or grey",
            "parameters": [model] + [p.openapi() for p in dream.parameters(served)],
            "requestBody": upload_body(served, False, 1),
            "responses": {
                "200": {"description": "the dreamed image (PNG, or JSON by Accept); with "
                                       "Accept: text/event-stream, the dream as it goes, as "
                                       "server-sent events: `progress` (a DreamProgress) at "
                                       "least every 0.25 s and at each octave's first and last "
                                       "step, `preview` (a DreamPreview) every preview_every "
                                       "steps, then `result` (a Dream, its image the very bytes "
                                       "of the non-streamed PNG) or `error` (a Problem). "
                                       "Closing the connection stops the dream before its next "
                                       "step",
                        # Not on a streamed answer, whose headers go before the dream runs.
                        "headers": {"X-Dream-Steps-Done": {"schema": {"type": "integer"}},
                                    "X-Dream-Redirected-Steps": {
                                        "schema": {"type": "integer"},
                                        "description": "steps taken on a pre-activation "
                                                       "because the target was off everywhere"},
                                    "X-Dream-Budget-Exhausted": {
                                        "schema": {"type": "string", "enum": ["true", "false"]},
                                        "description": "true: the time budget cut it short"}},
                        "content": png_response("")["content"] | {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Dream"}},
                            "text/event-stream": {"schema": {"type": "string"}}}}}
                         | upload_problems() | unknown_model | UNEXPECTED
                         | {"422": problem_response(
                             "not a decodable image, a parameter outside its bounds, a target "
                             "the model does not have, or more work (steps x pixels, summed "
                             f"over octaves) than {served.settings.max_dream_work} pixel-steps"),
                            "503": busy_response("every gradient slot of the worker stayed "
                                                 "busy; retry after Retry-After seconds")}}},
        "/filters": {"get": {
            "summary": "Every explainable layer with its kind, size, kernel, receptive field and links",
            "parameters": [model],
            "responses": {"200": _json("the layers", "Layers")} | unknown_model | UNEXPECTED}},
        "/filters/{layer}": {"get": {
            "summary": "A layer and its filters",
            "parameters": [layer, model],
            "responses": {"200": _json("the layer", "LayerFilters")} | not_found | UNEXPECTED}},
        "/filters/{layer}/{item}": {"get": {
            "summary": "What a filter has learned (the image that maximises it), the layer's "
                       "atlas, or the first conv layer's raw kernels",
            "parameters": [layer, item, model, filters.scale_param(served, None).openapi()],
            "responses": {"200": png_response("the picture; a bundle's own picture (unscaled) "
                                              "has its sha256 in the manifest as ETag"),
                          "304": {"description": "If-None-Match names the picture's ETag"},
                          "400": problem_response("scale is not an integer"),
                          "422": problem_response("scale outside its bounds")} | not_found | UNEXPECTED}},
        "/filters/{layer}/{index}/examples": {"get": {
            "summary": "A unit's dataset examples: the training digits that excite it most, "
                       "with (conv layers) where it fires; whether it is dead, how often it "
                       "fires, how well its picture excites it",
            "parameters": [layer, unit, model, filters.scale_param(served, None).openapi()],
            "responses": {"200": {"description": "JSON, or with Accept preferring image/png the "
                                                 "examples in a 3x3 grid with each receptive "
                                                 "field outlined (the bundle's file, its sha256 "
                                                 "as ETag when unscaled)",
                                  "headers": {"Vary": {"schema": {"type": "string"},
                                                       "required": True,
                                                       "description": "Accept"}},
                                  "content": {"application/json": {"schema": {
                                      "$ref": "#/components/schemas/UnitExamples"}}}
                                             | png_response("")["content"]},
                          "304": {"description": "If-None-Match names the sprite's ETag"},
                          "400": problem_response("scale is not an integer"),
                          "422": problem_response("scale outside its bounds"),
                          "404": problem_response(
                              "unknown model, layer or unit, or a bundle built before dataset "
                              "examples (the detail says to rebuild it)")} | UNEXPECTED}},
        "/healthz": {"get": {"summary": "The process answers",
                             "responses": {"200": _json("alive", "Health")}}},
        "/readyz": {"get": {"summary": "Every model is loaded and a warm-up inference ran",
                            "responses": {"200": _json("ready", "Ready")}}},
        "/metrics": metrics_path(),
        "/models": {"get": {"summary": "The model repository: every served model",
                            "responses": {"200": _json("the models", "Models")} | UNEXPECTED}},
        "/models/{name}": {"get": {
            "summary": "One served model",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": models}}],
            "responses": {"200": _json("the model", "ModelInfo")} | unknown_model | UNEXPECTED}},
        "/admin/reload": {"post": {
            "summary": "Load new and changed bundles, drop removed ones, in every worker; a "
                       "broken bundle is rejected and the version served before stays",
            "security": [{"adminToken": []}],
            "responses": {"200": _json("what changed", "Reload"),
                          "401": problem_response("missing or wrong token"),
                          "404": problem_response("admin endpoints are off (no CNNLENS_ADMIN_TOKEN)")}
                         | UNEXPECTED}},
        "/docs/": {"get": {"summary": "Swagger UI for this document",
                           "responses": {"200": {"description": "HTML",
                                                 "content": {"text/html": {}}}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {"application/json": {}}}}}},
    } | v2.openapi_paths(served, models) | page.openapi_paths() \
        | explain.openapi_paths(served, models) | feature_maps.openapi_paths(served, models)


def _schemas() -> dict:
    number_list = {"type": "array", "items": {"type": "number"}}
    model = {"type": "object", "required": ["name", "version"],
             "properties": {"name": {"type": "string"}, "version": {"type": "string"}}}
    png_base64 = {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"}
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
    layer = {
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
    return {
        "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                    "description": "RFC 9457 problem details",
                    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                                   "status": {"type": "integer"}, "detail": {"type": "string"}}},
        "Model": model,
        "Prediction": {
            "type": "object", "required": ["model", "preprocess", "results"],
            "properties": {
                "model": {"$ref": "#/components/schemas/Model"},
                "preprocess": {"type": "string"},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["top_k"], "additionalProperties": False,
                    "properties": {
                        "top_k": {"type": "array", "items": {
                            "type": "object", "required": ["index", "label", "probability"],
                            "properties": {"index": {"type": "integer"},
                                           "label": {"type": "string"},
                                           "probability": {"type": "number", "minimum": 0,
                                                           "maximum": 1}}}},
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
                                "properties": {"mean": number_list, "max": number_list}}},
                        "feature_maps": {"type": "object", "additionalProperties": png_base64}}}}}},
        "Layer": layer,
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
                            "items": {"type": "array", "items": number_list}},
                "links": {"type": "object", "required": ["sprite"],
                          "additionalProperties": {"type": "string"},
                          "description": "sprite: this URL with Accept: image/png"}}},
        "Dream": {"type": "object",
                  "required": ["image", "targets", "objective_before", "objective_after",
                               "history", "steps_done", "redirected_steps",
                               "budget_exhausted"],
                  "properties": {"image": png_base64, "targets": {"type": "string"},
                                 "objective_before": {"type": "number"},
                                 "objective_after": {"type": "number"},
                                 "history": number_list,
                                 "steps_done": {"type": "integer"},
                                 "redirected_steps": {"type": "integer"},
                                 "budget_exhausted": {"type": "boolean"}}},
        "DreamProgress": {"type": "object",
                          "required": ["octave", "octaves", "step", "steps_done", "total_steps",
                                       "objective", "elapsed"],
                          "properties": {"octave": {"type": "integer", "minimum": 1},
                                         "octaves": {"type": "integer", "minimum": 1},
                                         "step": {"type": "integer", "minimum": 1,
                                                  "description": "within the octave"},
                                         "steps_done": {"type": "integer", "minimum": 1},
                                         "total_steps": {"type": "integer", "minimum": 1},
                                         "objective": {"type": "number", "description":
                                                       "before this step"},
                                         "elapsed": {"type": "number", "description":
                                                     "seconds since the first step began"}}},
        "DreamPreview": {"type": "object", "required": ["steps_done", "image"],
                         "properties": {"steps_done": {"type": "integer", "minimum": 1},
                                        "image": png_base64}},
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"const": "ok"}}},
        "Ready": {"type": "object", "required": ["status", "default", "models"],
                  "properties": {"status": {"const": "ready"}, "default": {"type": "string"},
                                 "models": {"type": "array", "items": {"allOf": [
                                     {"$ref": "#/components/schemas/Model"},
                                     {"type": "object", "required": ["warmup_ms"],
                                      "properties": {"warmup_ms": {"type": "number"}}}]}}}},
        "ModelInfo": {"type": "object",
                      "required": ["name", "version", "labels", "input", "metrics", "layers"],
                      "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                     "description": {"type": "string"},
                                     "architecture": {"type": "string"},
                                     "labels": {"type": "array", "items": {"type": "string"}},
                                     "input": {"type": "object"}, "metrics": {"type": "object"},
                                     "layers": {"type": "array", "items": {"type": "string"}}}},
        "Models": {"type": "object", "required": ["default", "models"],
                   "properties": {"default": {"type": "string"},
                                  "models": {"type": "array",
                                             "items": {"$ref": "#/components/schemas/ModelInfo"}}}},
        "Reload": {"type": "object",
                   "required": ["loaded", "unchanged", "removed", "rejected", "models"],
                   "properties": {name: {"type": "array"} for name in
                                  ("loaded", "unchanged", "removed", "rejected", "models")}},
    }


def _not_acceptable(paths: dict) -> dict:
    """Every operation outside /v2 that answers content answers 406 too (see _negotiate)."""
    for path, item in paths.items():
        for operation in item.values():
            if not _is_v2(path) and _success_types(operation):
                operation["responses"]["406"] = problem_response(
                    "the Accept header allows none of the media types of this operation's answers")
    return paths


def build(served: Served, models: list[str]) -> dict:
    """The document for the model `served` (?model=, the default without it): parameter bounds
    such as layer names and top_k depend on the model."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "cnn-lens",
                 "version": served.bundle.manifest["version"],
                 "description": f"Described for model {served.bundle.name!r} (the others: "
                                "/openapi.json?model=NAME): predictions, filter visualisations "
                                "and Deep Dream. Errors are RFC 9457 problem details. A "
                                "malformed parameter is a 400, a well-formed one outside its "
                                "bounds a 422."},
        "paths": _not_acceptable(_paths(served, models)),
        "components": {"schemas": _schemas(),
                       "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}}},
    }
