"""GET /openapi.json (OpenAPI 3.1), assembled from what every endpoint declares
(service.plumbing.openapi), and Swagger UI at /docs, served from the flask-swagger-ui package (no
CDN). What the document says of an operation is also kept for every request before any work is
done: a parameter it does not take is a 400 (on the blueprints that check parameters:
plumbing.openapi.Documented), an Accept header it cannot satisfy a 406. HEAD and OPTIONS, which
Flask answers for every route, are not checked."""
from __future__ import annotations

from typing import NamedTuple

from flask import Request, current_app, jsonify, request
from flask_swagger_ui import get_swaggerui_blueprint
from werkzeug.datastructures import MIMEAccept

from service.plumbing import openapi, params
from service.plumbing.problems import Problem, bad_request
from service.runtime.served import EXTENSION, current

blueprint = openapi.Documented("openapi", __name__)
swagger_ui = get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "cnn-lens"},
                                     blueprint_name="docs")
_OPERATIONS = "cnnlens.operations"   # app.extensions key of what the document says of each


@blueprint.get("/openapi.json")
def document():
    return jsonify(openapi.build(current_app, current(), current_app.extensions[EXTENSION].names()))


class _Operation(NamedTuple):
    path: str                     # the document's path, /filters/{layer}
    produced: list[str]           # the media types of its successful answers
    parameters: tuple[str, ...]   # the query parameters it declares, in the document's order
    upload: bool                  # it takes a multipart upload, whose fields may carry them too
    checks_parameters: bool       # it refuses others (plumbing.openapi.Documented)


@blueprint.before_app_request
def _check_request():
    """What the document promises about a request, kept before any work is done: a parameter the
    operation does not take is a 400 naming those it does, and an Accept header that allows none
    of the media types it answers with is a 406."""
    req = request._get_current_object()   # once: each access through the proxy costs ~0.8 µs
    rule = req.url_rule
    operation = rule and _operations().get((rule.rule, req.method))
    if operation is None:   # not routed (a 404 or 405 follows), /v2, or Swagger UI's files
        return None
    if operation.checks_parameters:
        _refuse_unknown_parameters(req, operation)
    _negotiate(req, operation.produced)
    return None


def _refuse_unknown_parameters(req: Request, operation: _Operation):
    fields = (*operation.parameters, "file") if operation.upload else ()
    unknown = [name for name in req.args if name not in operation.parameters] + \
              [name for name in params.form_fields(req) if name not in fields]
    if unknown:
        takes = ", ".join(operation.parameters) or "no parameters"
        raise bad_request(f"{req.method} {operation.path} takes no parameter {unknown[0]!r}; "
                          f"it takes {takes}")
    form = params.form_fields(req)
    for source in (req.args, form) if form else (req.args,):
        for name, values in source.lists():
            if len(set(values)) > 1:   # (the same value twice says nothing else)
                raise bad_request(f"{name} is given more than once with different values: "
                                  f"{', '.join(map(repr, values))}; give it once")


def _negotiate(req: Request, produced: list[str]):
    """No Accept header, or */*, allows all. The /v2 protocol answers JSON (or its binary
    extension) whatever the client asks."""
    header = req.environ.get("HTTP_ACCEPT")
    if not produced or not header or header == "*/*":   # (what most clients send: no parsing)
        return
    accept = req.accept_mimetypes
    if not accept:
        return
    # Media type parameters do not count: a Prometheus scraper's text/plain;version=0.0.4 is the
    # text/plain that /metrics answers with (Werkzeug alone would not match them).
    ranges = MIMEAccept([(value.split(";")[0], quality) for value, quality in accept])
    if ranges.best_match(produced):
        return
    raise Problem(406, f"this endpoint answers {', '.join(produced)}; the Accept header "
                       f"{header!r} allows none of them")


def _operations() -> dict[tuple[str, str], _Operation]:
    """(Flask rule, METHOD) -> what the document says of its operation, for every operation
    outside /v2. Computed once per app, so that a request costs one lookup: none of it depends on
    the model."""
    cached = current_app.extensions.get(_OPERATIONS)
    if cached is None:
        registry = current_app.extensions[EXTENSION]
        paths = openapi.build(current_app, registry.get(None), registry.names())["paths"]
        cached = {}
        for rule in current_app.url_map.iter_rules():
            path = openapi.path_of(rule)
            if openapi.is_v2(path):
                continue
            for method, operation in paths.get(path, {}).items():
                cached[rule.rule, method.upper()] = _Operation(
                    path, openapi.success_types(operation),
                    tuple(p["name"] for p in operation.get("parameters", []) if p["in"] == "query"),
                    "multipart/form-data" in operation.get("requestBody", {}).get("content", {}),
                    openapi.checks_parameters(current_app, rule.endpoint))
        current_app.extensions[_OPERATIONS] = cached
    return cached


@blueprint.openapi
def _openapi(served, models: list[str]) -> openapi.Part:
    """/docs/ and /openapi.json for /openapi.json."""
    paths = {
        "/docs/": {"get": {"summary": "Swagger UI for this document",
                           "responses": {"200": {"description": "HTML",
                                                 "content": {"text/html": {}}}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "parameters": [openapi.model_parameter(served, models)],
                                  "responses": {"200": {"description": "OpenAPI 3.1, described "
                                                                       "for the model",
                                                        "content": {"application/json": {}}},
                                                "404": openapi.problem_response("unknown model")}}}}
    return openapi.Part(paths)
