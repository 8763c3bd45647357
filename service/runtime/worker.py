"""gunicorn's gthread worker, made safe from slow clients, and reloading models on SIGHUP
(gunicorn.conf.py's worker_class).

gunicorn 27's gthread hands each new connection to a thread, which waits up to 5 s for its first
bytes and then reads the request headers with blocking reads and no deadline: a handful of clients
that connect and send nothing, or send their headers a byte a second (slowloris), hold every
thread of a worker, and the other connections that worker accepted wait behind them for as long
as the slow ones last (tests/service/test_faults.py). Here a thread only reads what has already
arrived: until a request's headers are complete, and its body when they declare its length or
send it chunked and it is one the application accepts (CNNLENS_MAX_REQUEST_BYTES, a chunked
body's framing included), its connection waits in the worker's poller, holding no thread, for
CNNLENS_CLIENT_TIMEOUT at most. A request whose headers are not all there by then is dropped; one
whose body is not reads as ended where it stopped, and the application answers the truncated
request as the bad input it is (400). A client that announces its body with `Expect:
100-continue` waits for an answer before it sends it: the poller sends the 100 Continue (and takes
the field out of the headers, so that gunicorn does not send another). A body over the limit
(answered 413 at once, unread) and malformed chunks go to a thread with the headers; the
application reads them there under a fresh deadline of the same length: a client that trickles
such a body holds one thread for at most that long.

Connections are spread over the workers: every worker publishes how many live connections it holds
in a table the workers share, each time it looks at them, and a worker that holds as many as it has
threads leaves a new connection to a live worker that holds fewer, or that has not looked since the
burst began (its count may be out of date), looking again every ACCEPT_YIELD seconds; it takes the
connection itself when every other worker has looked and holds as many, or once it has left
connections of the burst for PEER_PATIENCE (a worker stopped or starved of the CPU that long cannot
serve them sooner anyway). Every accepting worker wakes when a connection arrives, so a busy one
looks again within a turn of its loop. gthread lets whichever worker wakes first accept, and the
first one often takes most of a burst: a client pool of 8 kept-alive connections then runs mostly
on one worker, and one core, for as long as it lives (docs/benchmarks.md). A rule of time alone
(leave it to the others for 20 ms) is not enough: on a loaded machine a worker can go that long
without the CPU. A connection whose client has hung up is not live: when a client pool closes its
connections and opens new ones at once (wrk's rounds back to back), the old ones still wait their
turn for a thread, each with its last request, and counting them would send the new ones to the
worker whose old ones happened to go first; and until that worker has looked again, the count it
published before they hung up still holds them (CI split a burst 6/2 so). The yield is short
because in a burst beyond every worker's threads (64 connections) full workers leave connections to
each other in turn: with 20 ms it held them for hundreds of ms before their first request (p99 at
64 connections 240-260 ms in two runs, 85-91 ms with 2 ms).

Requests gunicorn cannot parse (a request line or headers too long or malformed, a bad
Content-Length) it answers itself, before the application sees them: as problem details here, like
every other error of the service, not as gunicorn's HTML page (`_write_problem`).

SIGHUP (which gunicorn.conf.py makes the master forward to every worker) reloads the worker's
models in a thread, so that requests go on meanwhile. gunicorn resets SIGHUP to its default,
terminate, before the app is loaded; the handler is set from then on, and a SIGHUP that arrives
while the app is still loading is kept and acted on once it has loaded.

This builds on gthread's internals (`handle`, `accept`, `run`, `set_accept_enabled`,
`wait_for_and_dispatch_events`, `enqueue_req`, `_accepting`, the `_DEFER` sentinel): gunicorn is
pinned in requirements/serve.txt, and the tests go through every path. Plain HTTP only, as served
here (TLS ends at the load balancer): gthread wraps TLS sockets in its own class.
"""
from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import re
import select
import signal
import socket
import threading
import time

import numpy as np
from gunicorn import util
from gunicorn.workers import gthread

from service.plumbing import problems
from service.settings import Settings

# Set in a worker that replaces one that died, which must not stop the server when it cannot load
# a bundle (service.wsgi).
REPLACEMENT = "CNNLENS_REPLACEMENT_WORKER"
_END_OF_HEADERS = b"\r\n\r\n"
# The header fields that say how a body arrives (a request line is never one: it holds no colon
# before its space).
_BODY_FIELD = re.compile(rb"\r\n(content-length|transfer-encoding|expect)[ \t]*:[ \t]*([^\r]*)",
                         re.IGNORECASE)
# Headers longer than this go to gunicorn's parser as they are, which answers them with its own
# limit errors (limit_request_line, limit_request_fields): nothing is gained by buffering more.
_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024
# How often a worker that left a connection to the others looks again whether one took it.
ACCEPT_YIELD = 0.002
# New connections a full worker weighs less than this apart belong to one burst.
BURST_GAP = 0.1
# How long a full worker leaves a burst's connections to the others before it takes them anyway.
PEER_PATIENCE = 0.5


class ThreadWorker(gthread.ThreadWorker):
    def init_process(self):
        # gunicorn numbers the workers it forks: the first `workers` boot the server, which a
        # failure there must stop (service.wsgi); a later one replaces a worker that died while
        # the others serve.
        if self.age > self.cfg.workers:
            os.environ[REPLACEMENT] = "1"
        settings = Settings.from_env()
        self.client_timeout = settings.client_timeout
        self.max_body = settings.max_request_bytes
        self.registry = None
        self.reload_pending = False
        self.accept_paused_until = -math.inf   # time.monotonic(): others may accept until then
        self.last_full = -math.inf             # time.monotonic() it last weighed one while full,
        self.burst_since = -math.inf           # when that burst began,
        self.leaving_since = None              # and when it began to leave some in it
        self.slot = None                       # this worker's row in _PEERS, while it accepts
        self.connections = _Connections()      # every connection accepted and not yet closed
        util.write_error = _write_problem
        super().init_process()

    def init_signals(self):
        super().init_signals()
        signal.signal(signal.SIGHUP, self.handle_hup)

    def handle_hup(self, *_):
        self.reload_pending = True
        if self.registry is not None:
            self._reload()

    def load_wsgi(self):
        # Here, in the worker: the master never imports onnxruntime.
        from service.runtime.served import EXTENSION

        super().load_wsgi()
        self.registry = self.wsgi.extensions[EXTENSION]
        # An admin reload in this worker tells the master, which forwards SIGHUP to all.
        self.registry.notify_peers = lambda: os.kill(self.ppid, signal.SIGHUP)
        if self.reload_pending:
            self._reload()

    def _reload(self):
        self.reload_pending = False
        threading.Thread(target=self.registry.reload, daemon=True).start()

    def run(self):
        self.slot = _PEERS.claim(self.age)
        try:
            super().run()
        finally:
            _PEERS.release(self.slot)

    def accept(self, listener):
        live = self.connections.live()
        if live >= self.cfg.threads and self._leave_to_peers(live):
            self.accept_paused_until = time.monotonic() + ACCEPT_YIELD
            self.set_accept_enabled(False)
            return
        super().accept(listener)
        _PEERS.publish(self.slot, self.connections.live())

    def enqueue_req(self, conn):
        if not isinstance(conn.sock, _DeadlineSocket):   # accept() hands every new one here
            conn.sock = _DeadlineSocket.adopt(conn.sock)
            self.connections.add(conn.sock)
        super().enqueue_req(conn)

    def _leave_to_peers(self, live: int) -> bool:
        now = time.monotonic()
        if now - self.last_full > BURST_GAP:   # a new burst: fresh counts, its own patience
            self.burst_since, self.leaving_since = now, None
        self.last_full = now
        if not _PEERS.one_may_hold_fewer(self.slot, live, self.burst_since):
            self.leaving_since = None
            return False
        if self.leaving_since is None:
            self.leaving_since = now
        return now - self.leaving_since < PEER_PATIENCE

    def set_accept_enabled(self, enabled):
        """gthread's loop enables accepting whenever it may; a pause holds until it ends or a
        thread of this worker frees up."""
        if enabled and time.monotonic() < self.accept_paused_until and \
                self.connections.live() >= self.cfg.threads:
            return
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout):
        if not self._accepting and self.alive and self.nr_conns < self.worker_connections:
            pause = self.accept_paused_until - time.monotonic()
            if pause > 0:
                timeout = min(timeout, pause)   # wake up when the pause ends
            else:
                # It ended after the loop last looked (the main thread can lose the GIL between
                # the two): waiting with accepting off could sleep the loop's whole second while
                # the peers leave connections to this worker (CI once split 32 so, 22/10).
                self.set_accept_enabled(True)
        super().wait_for_and_dispatch_events(timeout)
        if self.alive:   # connections that closed or hung up meanwhile
            _PEERS.publish(self.slot, self.connections.live())
        else:
            _PEERS.release(self.slot)                  # shutting down: take no more

    def handle(self, conn):
        """Runs in a thread each time the connection is readable: take what has arrived, and
        serve the request only once its headers are all there, and the body they declare."""
        head = getattr(conn, "cnnlens_head", None)
        if head is None:
            head = conn.cnnlens_head = _Head(time.monotonic() + self.client_timeout,
                                             self.max_body)
            if conn.initialized:   # bytes a kept-alive client sent behind its last request
                head.data += conn.parser.unreader.take_buffered()
        if not head.receive(conn.sock):
            conn.cnnlens_head = None
            return False                                # the client hung up
        late = not head.complete()
        if late:
            if not head.ended and time.monotonic() < head.deadline:
                return gthread._DEFER                   # back to the poller until more arrives
            if head.body_start is None:
                conn.cnnlens_head = None
                return False                            # headers too slow: dropped
        conn.cnnlens_head = None
        if not conn.initialized:
            conn.init()
        # A body that stopped short, or too slow to arrive whole, reads as ended where it
        # stopped: the app answers 400.
        conn.sock.read_deadline = time.monotonic() + (0 if late else self.client_timeout)
        conn.parser.unreader.unread(bytes(head.data))
        conn.data_ready = True
        return super().handle(conn)


def _write_problem(sock: socket.socket, status: int, reason: str, message: str) -> None:
    """gunicorn's own answer to a request it cannot parse (a request line or headers too long or
    malformed, a bad Content-Length or Transfer-Encoding), as problem details like every other
    error of the service instead of gunicorn's HTML page: `gunicorn.util.write_error`, which the
    worker's `handle_error` calls, is this in a cnn-lens worker."""
    body = json.dumps(problems.document(status, reason, message or reason),
                      separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: {problems.PROBLEM_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class _PeerTable:
    """Each accepting worker's pid, number of connections and when it last counted them (the
    system-wide time.monotonic(), in ns), in an anonymous shared mapping made when gunicorn's
    master imports this module (to find the worker class), before it forks: every worker writes
    only its own row and reads the others'."""

    ROWS = 256   # above CNNLENS_WORKERS's bound, with room for replacements

    def __init__(self):
        self._memory = mmap.mmap(-1, self.ROWS * 24)
        self._rows = np.frombuffer(self._memory, np.int64).reshape(self.ROWS, 3)   # pid, conns, ns

    def claim(self, age: int) -> int | None:
        """A free row for this worker, from the one its fork number gives (gunicorn numbers
        workers, so the workers alive never start from the same row)."""
        for offset in range(self.ROWS):
            row = (age + offset) % self.ROWS
            if not _alive(int(self._rows[row, 0])):
                self._rows[row, 1:] = 0, time.monotonic_ns()
                self._rows[row, 0] = os.getpid()
                return row
        return None   # never with the bounded worker count; such a worker is just not counted

    def release(self, row: int | None):
        if row is not None and self._rows[row, 0] == os.getpid():
            self._rows[row, 0] = 0

    def publish(self, row: int | None, connections: int):
        if row is not None:
            self._rows[row, 1] = connections
            self._rows[row, 2] = time.monotonic_ns()

    def one_may_hold_fewer(self, row: int | None, connections: int, since: float) -> bool:
        """Whether another live worker holds fewer connections, or has not counted them since
        `since` (time.monotonic())."""
        rows = self._rows
        unsure = (rows[:, 1] < connections) | (rows[:, 2] < int(since * 1e9))
        return any(other != row and _alive(int(rows[other, 0]))
                   for other in np.flatnonzero((rows[:, 0] > 0) & unsure))


def _alive(pid: int) -> bool:
    """A worker killed without releasing its row (gunicorn's timeout kill) is not waited for."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PEERS = _PeerTable()


class _Head:
    """The bytes of one request received so far: up to the end of its headers, and on to the end
    of its body when they declare a length up to `max_body` or send it chunked (see the module's
    docstring)."""

    def __init__(self, deadline: float, max_body: int):
        self.deadline = deadline
        self.max_body = max_body
        self.data = bytearray()
        self.body_start = None   # offset of the body, once the headers are in
        self.size = None         # of the headers and the body waited for, once known
        self.chunks = None       # a chunked body's chunks, read as they arrive until its end
        self.interim = b""       # a 100 Continue still to send, for a client that waits for it
        self.ended = False       # the client sent the headers, then shut its side of the connection

    def receive(self, sock: socket.socket) -> bool:
        """Read what has arrived without waiting; False if the client closed the connection
        before its headers were in."""
        sock.setblocking(False)
        try:
            while not self.complete():
                if self.interim:
                    self.interim = self.interim[socket.socket.send(sock, self.interim):]
                chunk = socket.socket.recv(sock, _CHUNK)   # not _DeadlineSocket's: no waiting
                if not chunk:
                    self.ended = True
                    return self.body_start is not None
                self.data += chunk
        except BlockingIOError:
            pass
        except OSError:   # reset by the client
            return False
        return True

    def complete(self) -> bool:
        if self.body_start is None:
            end = self.data.find(_END_OF_HEADERS)
            if end < 0:
                return len(self.data) > _MAX_HEAD
            length, expect = self._framing(self.data[:end])
            if expect:
                # Answered here, and taken out of the headers so that gunicorn does not answer it
                # again once the body is in.
                del self.data[expect.start():expect.end()]
                end -= expect.end() - expect.start()
                self.interim = _CONTINUE
            self.body_start = end + len(_END_OF_HEADERS)
            if length is None:
                self.chunks = _Chunks(self.body_start, self.max_body)
            else:
                self.size = self.body_start + length
        if self.size is None:
            self.size = self.chunks.end(self.data)
            if self.size is None:
                return False
        return len(self.data) >= self.size

    def _framing(self, headers: bytearray) -> tuple[int | None, re.Match | None]:
        """How much body to wait for: the declared length, None for a chunked body (whose end is
        found as it arrives), 0 where the body is left to the thread (or malformed headers to
        gunicorn's parser); and the field `Expect: 100-continue` of an HTTP/1.1 request whose body
        is waited for (its client sends the body only once answered)."""
        framing, expect = [], None
        for field in _BODY_FIELD.finditer(headers):
            name, value = field[1].lower(), field[2].strip().lower()
            if name != b"expect":
                framing.append((name, value))
            elif value != b"100-continue" or expect:
                return 0, None   # an expectation gunicorn refuses (417), or a repeated one
            elif headers[:headers.find(b"\r\n")].endswith(b" HTTP/1.1"):
                expect = field   # (HTTP/1.0 has no 100 Continue: the client sends at once)
        if framing == [(b"transfer-encoding", b"chunked")]:
            return None, expect
        length = 0
        for name, value in framing:
            if name != b"content-length" or not value.isdigit():
                return 0, None   # another transfer coding, or a malformed length
            length = int(value)
        if not 0 < length <= self.max_body:
            return 0, None       # no body, or one the application refuses (413) unread
        return length, expect


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Chunks:
    """Where a chunked body ends, found as its bytes arrive: each chunk's size line is read once,
    and its data skipped. A body whose bytes, framing included, pass `max_body` or whose framing
    is malformed is waited for no longer: the thread reads it, and the application answers it
    (413) or gunicorn's parser does (400)."""

    def __init__(self, start: int, max_body: int):
        self.limit = start + max_body
        self.at = start          # where the next size line (or trailer line) begins
        self.trailers = False    # past the last chunk (of size 0): trailer fields, then a blank line

    def end(self, data: bytearray) -> int | None:
        """The offset just past the body, or None while more is to come."""
        while True:
            if len(data) > self.limit:
                return len(data)
            line_end = data.find(b"\r\n", self.at)
            if line_end < 0:
                return None
            line = bytes(data[self.at:line_end])
            self.at = line_end + 2
            if self.trailers:
                if not line:
                    return self.at
                continue
            size = line.split(b";", 1)[0].strip()
            if not size or size.strip(b"0123456789abcdefABCDEF"):
                return len(data)
            if int(size, 16) == 0:
                self.trailers = True
            else:
                self.at += int(size, 16) + 2   # the data and the CRLF after it
                if self.at > self.limit:
                    return len(data)


class _Connections:
    """A worker's open connections, and how many of their clients have not hung up (POLLRDHUP:
    such a client may still have sent a last request, and is answered, but will not send
    another). The poll set is kept as connections open and close, so that counting them, which
    the worker does on every turn of its loop, is one poll(2) call: a set built afresh for each
    count took 13 µs at 32 connections (4 µs now), 8 % of a loaded worker's time with the GIL."""

    def __init__(self):
        self._lock = threading.Lock()   # connections close in the main loop and in threads
        self._open = set()              # file descriptors
        self._hangups = select.poll()

    def add(self, sock: _DeadlineSocket):
        fd = sock.fileno()
        with self._lock:
            self._open.add(fd)
            self._hangups.register(fd, select.POLLRDHUP)
        sock.on_close = self._remove

    def _remove(self, fd: int):
        """Called before the descriptor is closed: a new connection may get its number."""
        with self._lock:
            self._open.discard(fd)
            self._hangups.unregister(fd)

    def live(self) -> int:
        with self._lock:
            return len(self._open) - len(self._hangups.poll(0))


class _DeadlineSocket(socket.socket):
    """A socket whose reads end at `read_deadline`; past it the connection reads as closed by
    the client (shut down for reading, so the worker closes it rather than keeping it alive).
    `on_close(fd)` is called as it closes."""

    read_deadline = math.inf
    on_close = None

    @classmethod
    def adopt(cls, sock: socket.socket) -> _DeadlineSocket:
        """The connection `sock` holds, now held by a _DeadlineSocket (`sock` is detached)."""
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach())

    def close(self):
        fd = self.fileno()
        if fd != -1 and self.on_close:
            self.on_close(fd)
        super().close()

    def recv(self, size, flags=0):
        remaining = self.read_deadline - time.monotonic()
        if remaining > 0:
            prior = self.gettimeout()   # gunicorn's own timeouts (draining a body) still apply
            self.settimeout(remaining if prior is None else min(prior, remaining))
            try:
                return super().recv(size, flags)
            except TimeoutError:
                if time.monotonic() < self.read_deadline:
                    raise
            finally:
                self.settimeout(prior)
        with contextlib.suppress(OSError):
            self.shutdown(socket.SHUT_RD)
        return b""
