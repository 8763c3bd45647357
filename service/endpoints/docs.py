"""GET /openapi.json (OpenAPI 3.1), assembled from what every endpoint declares
(service.plumbing.openapi), and Swagger UI at /docs, served from the flask-swagger-ui package (no
CDN). A request whose Accept header allows none of the media types its operation answers with, as
the document lists them, is a 406 before any work is done."""
from __future__ import annotations

import re

from flask import current_app, jsonify, request
from flask_swagger_ui import get_swaggerui_blueprint
from werkzeug.datastructures import MIMEAccept

from service.plumbing import openapi
from service.plumbing.problems import Problem
from service.runtime.served import EXTENSION, current

blueprint = openapi.Documented("openapi", __name__)
swagger_ui = get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "cnn-lens"},
                                     blueprint_name="docs")
_PRODUCED = "cnnlens.produced"   # app.extensions key of what each operation answers with


@blueprint.get("/openapi.json")
def document():
    return jsonify(openapi.build(current_app, current(), current_app.extensions[EXTENSION].names()))


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
        paths = openapi.build(current_app, registry.get(None), registry.names())["paths"]
        cached = {(path, method.upper()): openapi.success_types(operation)
                  for path, item in paths.items() if not openapi.is_v2(path)
                  for method, operation in item.items()}
        current_app.extensions[_PRODUCED] = cached
    return cached


@blueprint.openapi
def _openapi(served, models: list[str]) -> openapi.Part:
    """/docs/ and /openapi.json for /openapi.json."""
    paths = {
        "/docs/": {"get": {"summary": "Swagger UI for this document",
                           "responses": {"200": {"description": "HTML",
                                                 "content": {"text/html": {}}}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {"application/json": {}}}}}}}
    return openapi.Part(paths)
