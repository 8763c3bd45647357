"""POST /admin/reload: pick up new, changed and removed bundles without downtime.

Off (404, as if absent) unless CNNLENS_ADMIN_TOKEN is set; then it needs
`Authorization: Bearer <token>`, compared in constant time.
"""
from __future__ import annotations

import hmac
from dataclasses import asdict

from flask import Blueprint, current_app, jsonify, request

from service.plumbing.problems import Problem, not_found
from service.runtime.served import EXTENSION

blueprint = Blueprint("admin", __name__)


@blueprint.post("/admin/reload")
def reload():
    registry = current_app.extensions[EXTENSION]
    token = registry.settings.admin_token
    if not token:
        raise not_found("the admin endpoints are off: set CNNLENS_ADMIN_TOKEN to turn them on")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise Problem(401, "send Authorization: Bearer <CNNLENS_ADMIN_TOKEN>",
                      headers={"WWW-Authenticate": 'Bearer realm="cnn-lens admin"'})
    report = registry.reload()
    registry.notify_peers()
    return jsonify(asdict(report) | {"models": registry.names()})
