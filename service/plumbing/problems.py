"""Errors as RFC 9457 problem details (`application/problem+json`).

Request handlers raise `Problem` for anything the client can fix; Werkzeug's HTTPExceptions (404
for unknown routes, 405, 413 from MAX_CONTENT_LENGTH) are rendered the same way, and anything else
becomes a 500 whose detail says nothing about the code: the stack trace goes to the log only.
"""
from __future__ import annotations

import contextlib
import logging
import math
import socket
import time

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

PROBLEM_TYPE = "application/problem+json"
log = logging.getLogger(__name__)


class Problem(Exception):
    def __init__(self, status: int, detail: str, title: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers
        self.title = title or _TITLES.get(status, "Error")

    def body(self) -> dict:
        """The RFC 9457 document, also for where no status line can carry it (an event stream)."""
        return document(self.status, self.title, self.detail)


def bad_request(detail: str) -> Problem:
    return Problem(400, detail)


def not_found(detail: str) -> Problem:
    return Problem(404, detail)


def too_large(detail: str) -> Problem:
    return Problem(413, detail)


def unsupported(detail: str) -> Problem:
    return Problem(415, detail)


def unprocessable(detail: str) -> Problem:
    return Problem(422, detail)


def unavailable(detail: str, retry_after: float) -> Problem:
    """503: the server is too busy now; the client may retry after `retry_after` seconds."""
    return Problem(503, detail, "Service Unavailable",
                   {"Retry-After": str(max(1, math.ceil(retry_after)))})


_TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           406: "Not Acceptable",
           413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
           500: "Internal Server Error"}


def response(status: int, title: str, detail: str, headers=None) -> Response:
    return Response(json.dumps(document(status, title, detail)), status, headers=headers,
                    mimetype=PROBLEM_TYPE)


def document(status: int, title: str, detail: str) -> dict:
    """The RFC 9457 problem document (the HTTP server's own error answers use it too)."""
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


# A body up to this many times the limit is read and dropped before answering 413, for at most
# _DRAIN_SECONDS (as nginx's lingering close does): a client that is still sending (most do not
# read before they have sent everything) would otherwise see its connection reset instead of the
# answer. 32 covers a 50 MB upload at the 2 MB limit of the tests, five times it at the default.
# Larger or slower bodies are not worth a thread's time, nor is a client that sends nothing for
# _DRAIN_PAUSE.
_DRAIN_FACTOR = 32
_DRAIN_SECONDS = 5.0
_DRAIN_PAUSE = 0.5


def body_too_large(limit: int) -> str:
    """The detail of a 413 for a request body over `limit` bytes, however it was found out."""
    return f"the request body is larger than the {limit} bytes this server accepts"


def drain_oversized_body(limit: int) -> None:
    """Before answering 413 for a body over `limit` bytes (see _DRAIN_FACTOR). A body not read to
    its end stays unread: the connection is shut for reading, so that gunicorn closes it after
    the answer instead of reading the rest as the next request."""
    stream, budget = request.environ["wsgi.input"], _DRAIN_FACTOR * limit
    sock = request.environ.get("gunicorn.socket")   # gunicorn's key: the client's connection
    if sock is not None:
        sock.settimeout(_DRAIN_PAUSE)
    deadline = time.monotonic() + _DRAIN_SECONDS
    with contextlib.suppress(Exception):   # a pause, a hang-up, a malformed chunk: stop
        while budget > 0 and time.monotonic() < deadline:
            chunk = stream.read(min(1 << 16, budget))
            if not chunk:
                return
            budget -= len(chunk)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)


def register(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(error: Problem):
        return response(error.status, error.title, error.detail, error.headers)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        # 405 must keep its Allow header; Werkzeug puts it in get_headers().
        headers = {k: v for k, v in error.get_headers() if k == "Allow"}
        detail = error.description or error.name
        limit = app.config["MAX_CONTENT_LENGTH"]
        if error.code == 413:
            length = request.content_length   # None for a chunked body
            if length is not None and length > limit:
                detail = body_too_large(limit)
            if length is None or length > limit:
                drain_oversized_body(limit)
        return response(error.code or 500, _TITLES.get(error.code, error.name), detail, headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error")
        return response(500, _TITLES[500], "the server failed to handle this request; "
                        "the error is logged")
