"""Cross-origin requests (CORS): off unless CNNLENS_CORS_ORIGINS names the origins whose pages may
call the API from a browser.

Off (the default), no answer carries an Access-Control-* header, so a browser lets no other
origin's script read any of them, and a preflight OPTIONS gets Flask's plain answer (200 with
Allow), which a browser takes as a refusal. On, a request from an allowed Origin gets it back in
Access-Control-Allow-Origin (or `*` when every origin is allowed), and every answer says
`Vary: Origin`, so that a cache does not hand one origin's answer to another; a preflight also
gets the route's methods, the request headers the API reads, and a max age.

Never credentials: the API uses no cookies. The admin endpoints are not offered to pages at all:
their bearer token is for operators' scripts, so Authorization is not an allowed request header
and /admin answers carry no CORS header.
"""
from __future__ import annotations

from flask import Flask, Response, request

from service.settings import ANY_ORIGIN as ANY

# What a page needs to send: JSON or image bodies (a non-form Content-Type needs a preflight),
# content negotiation, and its own request id.
ALLOW_HEADERS = "Content-Type, Accept, X-Request-ID"
# Answer headers a page may read besides the CORS-safelisted ones.
EXPOSE_HEADERS = ("X-Request-ID, X-Dream-Steps-Done, X-Dream-Redirected-Steps, X-Dream-Budget-Exhausted, "
                  "Retry-After")
# Seconds a browser may reuse a preflight's answer: a changed setting reaches pages within this.
MAX_AGE = 600
_NOT_OFFERED = {"admin"}   # blueprints whose answers never carry CORS headers


def register(app: Flask, origins: frozenset[str]) -> None:
    """`origins`: Settings.allowed_origins."""
    if not origins:
        return

    @app.after_request
    def _cors(response: Response) -> Response:
        if request.blueprint in _NOT_OFFERED:
            return response
        if ANY not in origins:
            response.vary.add("Origin")
        origin = request.headers.get("Origin", "").lower()
        if ANY not in origins and origin not in origins:
            return response
        response.headers["Access-Control-Allow-Origin"] = ANY if ANY in origins else origin
        if _is_preflight() and response.status_code == 200:
            # Flask's automatic OPTIONS answer lists the route's methods in Allow.
            response.headers["Access-Control-Allow-Methods"] = response.headers.get("Allow", "")
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = str(MAX_AGE)
        else:
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return response


def _is_preflight() -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
