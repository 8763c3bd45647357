"""GET /healthz (the process answers) and GET /readyz (every model is loaded and warmed up)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from service.runtime.served import EXTENSION

blueprint = Blueprint("health", __name__)


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
