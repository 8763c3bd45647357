"""GET /healthz (the process answers) and GET /readyz (the bundle is loaded and warmed up)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from service.served import current

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz():
    # An app only exists once its bundle loaded and the warm-up inference ran (create_app fails
    # otherwise), so answering at all means ready; the body says what is being served.
    served = current()
    return jsonify(status="ready", model={"name": served.bundle.name,
                                          "version": served.bundle.manifest["version"]},
                   warmup_ms=round(served.warmup_seconds * 1000, 1))
