"""GET /models and GET /models/{name}: the model repository, one entry per served bundle."""
from __future__ import annotations

from flask import current_app, jsonify

from service.plumbing import openapi
from service.plumbing.problems import not_found
from service.runtime.served import EXTENSION, Served

blueprint = openapi.Documented("models", __name__)


def describe(served: Served) -> dict:
    manifest = served.bundle.manifest
    return {"name": manifest["name"], "version": manifest["version"],
            "description": manifest.get("description", ""), "architecture": manifest["architecture"],
            "labels": manifest["labels"], "input": manifest["input"],
            "metrics": manifest["training"]["metrics"],
            "layers": [layer["name"] for layer in manifest["layers"]]}


@blueprint.get("/models")
def list_models():
    registry = current_app.extensions[EXTENSION]
    return jsonify(default=registry.settings.default_model,
                   models=[describe(served) for served in registry.all()])


@blueprint.get("/models/<name>")
def one_model(name: str):
    registry = current_app.extensions[EXTENSION]
    try:
        return jsonify(describe(registry.get(name)))
    except KeyError:
        raise not_found(f"no model {name!r}; models: {', '.join(registry.names())}") from None


@blueprint.openapi
def _openapi(served, models: list[str]) -> openapi.Part:
    """The /models paths for /openapi.json."""
    paths = {
        "/models": {"get": {"summary": "The model repository: every served model",
                            "responses": {"200": openapi.json_response("the models", "Models")}
                                         | openapi.UNEXPECTED}},
        "/models/{name}": {"get": {
            "summary": "One served model",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": models}}],
            "responses": {"200": openapi.json_response("the model", "ModelInfo")}
                         | openapi.UNKNOWN_MODEL | openapi.UNEXPECTED}}}
    schemas = {
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
                                             "items": {"$ref": "#/components/schemas/ModelInfo"}}}}}
    return openapi.Part(paths, schemas)
