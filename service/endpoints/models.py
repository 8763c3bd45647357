"""GET /models and GET /models/{name}: the model repository, one entry per served bundle."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from service.plumbing.problems import not_found
from service.runtime.served import EXTENSION, Served

blueprint = Blueprint("models", __name__)


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
