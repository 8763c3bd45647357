"""The OpenAPI 3.1 document: its shared parts, and its assembly from what the endpoints declare.

Each endpoint module declares its operations, and the component schemas only it uses, beside its
routes: its blueprint is a `Documented` one, and a function decorated with `@blueprint.openapi`
gives them for the served model. `build` assembles what an app's blueprints declare, so the bounds
and layer names in the document are the ones in force. Nothing here knows an endpoint."""
from __future__ import annotations

import re
from typing import Callable, NamedTuple

from flask import Blueprint, Flask
from werkzeug.routing import Rule

from service.plumbing.images import MEDIA_TYPES

NUMBER_LIST = {"type": "array", "items": {"type": "number"}}
PNG_BASE64 = {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"}
TOP_K = {"type": "array", "items": {
    "type": "object", "required": ["index", "label", "probability"],
    "properties": {"index": {"type": "integer"}, "label": {"type": "string"},
                   "probability": {"type": "number", "minimum": 0, "maximum": 1}}}}
SCHEMAS = {   # the components every part may refer to
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                "description": "RFC 9457 problem details",
                "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "integer"}, "detail": {"type": "string"}}},
    "Model": {"type": "object", "required": ["name", "version"],
              "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
}


class Part(NamedTuple):
    """What one blueprint adds to the document: {path: {method: operation}}, and schemas."""
    paths: dict
    schemas: dict = {}


class Documented(Blueprint):
    """A blueprint that declares its part of the document: `@blueprint.openapi` on a function
    (served, models) -> Part, where `served` is the model described (a runtime Served) and
    `models` the names of every served model.

    Its routes refuse parameters their operations do not declare (a typo must not pass
    silently), unless `checks_parameters` is False: pages for browsers, whose URLs pick up
    tracking and cache-busting parameters, protocols with their own rules (/v2), and endpoints
    that must not answer anything before their own checks (/admin)."""

    describe: Callable[..., Part] | None = None

    def __init__(self, *args, checks_parameters: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.checks_parameters = checks_parameters

    def openapi(self, describe: Callable[..., Part]) -> Callable[..., Part]:
        self.describe = describe
        return describe


def checks_parameters(app: Flask, endpoint: str) -> bool:
    """Whether the route of Flask endpoint `endpoint` refuses parameters it does not declare."""
    blueprint = app.blueprints.get(endpoint.rpartition(".")[0])
    return isinstance(blueprint, Documented) and blueprint.checks_parameters


def path_of(rule: Rule) -> str:
    """The document's path for a Flask rule: /filters/<layer> is /filters/{layer}."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)


def problem_response(description: str) -> dict:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def json_response(description: str, schema: str, headers: dict | None = None) -> dict:
    response = {"description": description,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
    return response | ({"headers": headers} if headers else {})


def png_response(description: str) -> dict:
    return {"description": description,
            "content": {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}}}


UNEXPECTED = {"500": problem_response("unexpected server error (details only in the server log)")}
UNKNOWN_MODEL = {"404": problem_response("unknown model")}


def busy_response(why: str) -> dict:
    """503 of the gradient endpoints (service.runtime.gradient_slots), with its Retry-After."""
    return problem_response(why) | {"headers": {"Retry-After": {
        "schema": {"type": "integer", "minimum": 1}, "required": True,
        "description": "seconds after which a retry may find the server less busy"}}}


def upload_body(served, required: bool, max_batch: int, sides: str = "") -> dict:
    """`sides`: what the operation accepts of an image's sides, when it limits them."""
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
                           f"{limits.max_pixels} pixels per image"
                           + (f" and {limits.max_request_pixels} in all" if max_batch > 1 else "")
                           + (f"; {sides}" if sides else "")
                           + "; any mode (alpha, palette, 16-bit, CMYK, EXIF-rotated)"}


def upload_problems() -> dict:
    return {"400": problem_response("no image, empty image, bad JSON or base64, or a malformed parameter"),
            "413": problem_response("body, pixel count or number of images over the limit"),
            "415": problem_response("unsupported content type"),
            "422": problem_response("not a decodable image, or a parameter outside its bounds")}


def model_parameter(served, models: list[str]) -> dict:
    """`?model=`, which every model endpoint takes."""
    return {"name": "model", "in": "query", "required": False,
            "schema": {"type": "string", "enum": models, "default": served.settings.default_model},
            "description": f"the model to use (GET /models); served now: {', '.join(models)}"}


def one_image_operation(served, models: list[str], summary: str, parameters: list[dict],
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
                     | upload_problems() | UNKNOWN_MODEL
                     | UNEXPECTED}}


def _not_acceptable(paths: dict) -> dict:
    """Every operation outside /v2 that answers content answers 406 too (service.endpoints.docs)."""
    for path, item in paths.items():
        for operation in item.values():
            if not is_v2(path) and success_types(operation):
                operation["responses"]["406"] = problem_response(
                    "the Accept header allows none of the media types of this operation's answers")
    return paths


def _form_fields(paths: dict) -> dict:
    """An upload's parameters may come as multipart form fields too (service.plumbing.params)."""
    for item in paths.values():
        for operation in item.values():
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if form:
                form["schema"]["properties"] |= {
                    p["name"]: p["schema"] | {"description": f"as the query parameter: "
                                                             f"{p['description']}"}
                    for p in operation.get("parameters", []) if p["in"] == "query"}
    return paths


def _unknown_parameters(app: Flask, paths: dict) -> dict:
    """Every operation that refuses undeclared parameters says so in its 400."""
    why = ("a parameter this operation does not take (the detail names those it does), or one "
           "given in the query and the form, or twice in one, with different values")
    for rule in app.url_map.iter_rules():
        item = paths.get(path_of(rule))
        if item is None or not checks_parameters(app, rule.endpoint):
            continue
        for method in rule.methods & {m.upper() for m in item}:
            responses = item[method.lower()]["responses"]
            said = responses.get("400", {}).get("description")
            responses["400"] = problem_response(f"{said}; or {why}" if said else why)
    return paths


def success_types(operation: dict) -> list[str]:
    """The media types of an operation's successful answers."""
    return list(dict.fromkeys(media for status, response in operation["responses"].items()
                              if status.startswith("2") for media in response.get("content", {})))


def is_v2(path: str) -> bool:
    """The KServe v2 protocol's paths, which answer its JSON whatever the Accept header."""
    return path == "/v2" or path.startswith("/v2/")


def build(app: Flask, served, models: list[str]) -> dict:
    """The document for the model `served` (?model=, the default without it): parameter bounds
    such as layer names and top_k depend on the model."""
    paths, schemas = {}, dict(SCHEMAS)
    for blueprint in app.blueprints.values():
        if isinstance(blueprint, Documented) and blueprint.describe is not None:
            part = blueprint.describe(served, models)
            paths |= part.paths
            schemas |= part.schemas
    return {
        "openapi": "3.1.0",
        "info": {"title": "cnn-lens",
                 "version": served.bundle.manifest["version"],
                 "description": f"Described for model {served.bundle.name!r} (the others: "
                                "/openapi.json?model=NAME): predictions, filter visualisations "
                                "and Deep Dream. Errors are RFC 9457 problem details. A "
                                "malformed parameter is a 400, a well-formed one outside its "
                                "bounds a 422, and one the operation does not take a 400 (but "
                                "on /v2, /admin and the playground's pages). An upload's "
                                "parameters may come in the query or as multipart form fields."},
        "paths": _not_acceptable(_unknown_parameters(app, _form_fields(paths))),
        "components": {"schemas": schemas,
                       "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}}},
    }
