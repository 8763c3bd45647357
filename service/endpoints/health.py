"""GET /healthz (the process answers) and GET /readyz (every model is loaded and warmed up)."""
from __future__ import annotations

from flask import current_app, jsonify

from service.plumbing import openapi
from service.runtime.served import EXTENSION

blueprint = openapi.Documented("health", __name__)


@blueprint.get("/healthz")
def healthz():
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz():
    # An app only exists once its bundles loaded and the warm-up inference ran (create_app fails
    # otherwise), so answering at all means ready; the body says what is being served.
    registry = current_app.extensions[EXTENSION]
    return jsonify(status="ready", default=registry.settings.default_model,
                   models=[{"name": served.bundle.name, "version": served.bundle.manifest["version"],
                            "warmup_ms": round(served.warmup_seconds * 1000, 1)}
                           for served in registry.all()])


@blueprint.openapi
def _openapi(served, models: list[str]) -> openapi.Part:
    """/healthz and /readyz for /openapi.json."""
    paths = {
        "/healthz": {"get": {"summary": "The process answers",
                             "responses": {"200": openapi.json_response("alive", "Health")}}},
        "/readyz": {"get": {"summary": "Every model is loaded and a warm-up inference ran",
                            "responses": {"200": openapi.json_response("ready", "Ready")}}}}
    schemas = {
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"const": "ok"}}},
        "Ready": {"type": "object", "required": ["status", "default", "models"],
                  "properties": {"status": {"const": "ready"}, "default": {"type": "string"},
                                 "models": {"type": "array", "items": {"allOf": [
                                     {"$ref": "#/components/schemas/Model"},
                                     {"type": "object", "required": ["warmup_ms"],
                                      "properties": {"warmup_ms": {"type": "number"}}}]}}}}}
    return openapi.Part(paths, schemas)
