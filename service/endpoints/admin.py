"""POST /admin/reload: pick up new, changed and removed bundles without downtime.

Off (404, as if absent) unless CNNLENS_ADMIN_TOKEN is set; then it needs
`Authorization: Bearer <token>`, compared in constant time.
"""
from __future__ import annotations

import hmac
from dataclasses import asdict

from flask import current_app, jsonify, request

from service.plumbing import openapi
from service.plumbing.problems import Problem, not_found
from service.runtime.served import EXTENSION

# Off, it must look absent (404) whatever is asked; on, a caller without the token learns nothing
# of its parameters (401 first). It takes none.
blueprint = openapi.Documented("admin", __name__, checks_parameters=False)


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


@blueprint.openapi
def _openapi(served, models: list[str]) -> openapi.Part:
    """/admin/reload for /openapi.json."""
    paths = {
        "/admin/reload": {"post": {
            "summary": "Load new and changed bundles, drop removed ones, in every worker; a "
                       "broken bundle is rejected and the version served before stays",
            "security": [{"adminToken": []}],
            "responses": {"200": openapi.json_response("what changed", "Reload"),
                          "401": openapi.problem_response("missing or wrong token"),
                          "404": openapi.problem_response(
                              "admin endpoints are off (no CNNLENS_ADMIN_TOKEN)")}
                         | openapi.UNEXPECTED}}}
    schemas = {
        "Reload": {"type": "object",
                   "required": ["loaded", "unchanged", "removed", "rejected", "models"],
                   "properties": {name: {"type": "array"} for name in
                                  ("loaded", "unchanged", "removed", "rejected", "models")}}}
    return openapi.Part(paths, schemas)
