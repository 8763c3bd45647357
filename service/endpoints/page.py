"""The web playground: GET / and its static files (service/static), plain ES modules, no CDN and
no build step. The page is a client of the public HTTP API like any other (same origin).

The page and its files carry a Content-Security-Policy without 'unsafe-inline' (the page has no
inline script or style; bar widths are set through the CSSOM, which CSP allows), so an injected
tag cannot run; images may be data: (base64 PNGs in JSON answers) and blob: (dream downloads).
"""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from flask import Response, request, send_from_directory

from service.plumbing import openapi
from service.plumbing.problems import not_found

STATIC = Path(__file__).parents[1] / "static"
# A page for browsers: its URLs pick up tracking and cache-busting parameters.
blueprint = openapi.Documented("page", __name__, checks_parameters=False)

CSP = "; ".join([
    "default-src 'self'",
    "img-src 'self' data: blob:",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)   # a <script> without src
# Only these are served from service/static, each with its exact type: with nosniff, a module
# script must come with a JavaScript type, and nothing else there (editor backups, say) leaks.
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


@blueprint.get("/")
def index() -> Response:
    return _file("index.html")


@blueprint.get("/static/<path:filename>")
def asset(filename: str) -> Response:
    return _file(filename)


def _file(name: str) -> Response:
    mimetype = _TYPES.get(Path(name).suffix)
    if mimetype is None:
        raise not_found(f"no static file {name!r}")
    # Unhashed file names, so revalidate every time (ETag / Last-Modified make that a 304);
    # send_from_directory refuses paths that leave the directory (a 404).
    response = send_from_directory(STATIC, name, mimetype=mimetype, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.after_request
def _security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@blueprint.after_app_request
def _every_answer(response: Response) -> Response:
    """nosniff on every answer, the API's too: a browser must never take a JSON or PNG answer
    for a script or a page. The Swagger UI at /docs (flask-swagger-ui's page) gets the
    playground's headers, with its one inline script allowed by hash rather than by
    'unsafe-inline' (the script holds the request's host, so the hash is taken per answer), and
    inline styles allowed: Swagger UI writes some (a style cannot run code)."""
    response.headers["X-Content-Type-Options"] = "nosniff"   # (setdefault: 3x the time)
    if request.blueprint == "docs" and response.mimetype == "text/html":
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = _docs_csp(response.get_data(as_text=True))
    return response


def _docs_csp(html: str) -> str:
    hashes = [base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
              for script in _INLINE_SCRIPT.findall(html)]
    scripts = " ".join(["script-src 'self'", *(f"'sha256-{h}'" for h in hashes)])
    return (CSP.replace("script-src 'self'", scripts)
               .replace("style-src 'self'", "style-src 'self' 'unsafe-inline'"))


@blueprint.openapi
def _openapi(served, models: list[str]) -> openapi.Part:
    """The page's routes for /openapi.json (every route is documented there)."""
    return openapi.Part(paths={
        "/": {"get": {"summary": "The web playground: draw or upload a digit, see the "
                                 "prediction, activations, filters and dreams",
                      "responses": {"200": {"description": "HTML", "content": {"text/html": {}}},
                                    "304": {"description": "not modified"}}}},
        "/static/{filename}": {"get": {
            "summary": "The playground's scripts and style sheet",
            "parameters": [{"name": "filename", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the file",
                                  "content": {media: {} for media in _TYPES.values()}},
                          "304": {"description": "not modified"},
                          "404": openapi.problem_response("no such file")}}},
    })
