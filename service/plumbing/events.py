"""Server-sent events (text/event-stream, the WHATWG HTML standard's format) for answers that take
long, and knowing when the client has gone so that the work stops with it."""
from __future__ import annotations

import json
import select
import socket
from typing import Callable

MIMETYPE = "text/event-stream"
# Proxies (nginx) buffer a response unless told not to, which would hold every event to the end.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(name: str, data: dict) -> bytes:
    """One event; its data is one line of JSON (a data line may not hold a newline)."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def client_gone(environ: dict) -> Callable[[], bool]:
    """A check, cheap enough for every step, that the client closed its connection: gunicorn hands
    the application its socket, which then reads as end-of-file. A write to a closed connection
    would tell too, but only a write or two later, while the work goes on. Without gunicorn's
    socket (Flask's test client), that later write is all there is."""
    connection = environ.get("gunicorn.socket")
    if connection is None:
        return lambda: False

    def gone() -> bool:
        try:
            readable, _, _ = select.select([connection], [], [], 0)
            # Readable with data is a next request pipelined on the connection; empty is its end.
            return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:   # reset by the peer, or already closed
            return True

    return gone
