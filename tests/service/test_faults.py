"""Faults on a real gunicorn: slow clients (service/runtime/worker.py), a worker killed with
SIGKILL under load, bundle files corrupted on disk while they are being served, and workers that
cannot load them."""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from service.runtime import worker
from tests.service.conftest import access_lines, gunicorn_env, serving, wait_for
from tests.service.http import Client
from tests.service.reference import MODEL_DIR

ROOT = Path(__file__).resolve().parents[2]
PNG = (ROOT / "examples" / "mnist-7.png").read_bytes()
WORKERS, THREADS = 2, 2   # gunicorn_env's
SLOW = 3 * WORKERS * THREADS


def _predict(base: str, timeout: float = 10) -> int:
    """One /predict on its own connection, with a generous socket timeout (not a timed check:
    a starved worker never answers)."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(PNG) + PNG)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert b'"label":"7"' in reply.replace(b" ", b""), reply[:300]
    return int(reply.split()[1])


class _Slowloris:
    """Connections that send a request's bytes one at a time, every `interval` seconds."""

    def __init__(self, base: str, count: int, request: bytes, interval: float = 0.5):
        address = (urlsplit(base).hostname, urlsplit(base).port)
        self.sockets = [socket.create_connection(address) for _ in range(count)]
        self.request, self.interval = request, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self):
        for byte in self.request:
            for sock in self.sockets:
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    pass
            if self.stop.wait(self.interval):
                return

    def still_open(self) -> int:
        """How many were not closed by the server (no EOF or reset waiting to be read)."""
        open_ = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                open_ += sock.recv(1) == b"" and 0
            except BlockingIOError:
                open_ += 1
            except OSError:
                pass
        return open_

    def replies(self) -> list[bytes]:
        out = []
        for sock in self.sockets:
            sock.settimeout(10)
            try:
                out.append(sock.recv(65536))
            except OSError:
                out.append(b"")
        return out

    def close(self):
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


HEADERS = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: yes\r\n" * 100 + b"\r\n"


def test_slow_headers_and_silent_connections_do_not_starve_the_workers(tmp_path):
    """Three times as many trickling and silent connections as the server has threads, and
    /predict is still answered by every worker while they are connected."""
    with serving(gunicorn_env(), tmp_path / "gunicorn.log") as (_, base):
        slow = _Slowloris(base, SLOW, HEADERS)
        silent = [socket.create_connection((urlsplit(base).hostname, urlsplit(base).port))
                  for _ in range(SLOW)]
        try:
            time.sleep(1.0)   # every slow connection accepted and started
            with ThreadPoolExecutor(SLOW) as pool:
                statuses = list(pool.map(lambda _: _predict(base), range(SLOW)))
            assert statuses == [200] * SLOW
            assert slow.still_open() == SLOW   # they were served while the slow ones waited
        finally:
            slow.close()
            for sock in silent:
                sock.close()


STALLED = {   # headers, and the first bytes of the body they announce
    "declared": b"Content-Length: %d\r\n\r\n" % len(PNG) + PNG[:10],
    "chunked": b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(PNG) + PNG[:10],
}
EXPECTING = b"Expect: 100-continue\r\n" + STALLED["declared"]


@pytest.mark.parametrize("framing", [*STALLED, "expecting"])
def test_stalled_bodies_do_not_starve_the_workers(tmp_path, framing):
    """Three times as many connections as the server has threads send their headers and the
    first bytes of a body, declared, chunked or announced with Expect: 100-continue, then stall:
    they wait in the poller, holding no thread, and /predict is answered meanwhile (with a socket
    timeout well under CNNLENS_CLIENT_TIMEOUT, 30 s, which is how long each would otherwise hold
    a thread)."""
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n" + \
        (EXPECTING if framing == "expecting" else STALLED[framing])
    with serving(gunicorn_env(), tmp_path / "gunicorn.log") as (_, base):
        address = (urlsplit(base).hostname, urlsplit(base).port)
        stalled = [socket.create_connection(address) for _ in range(SLOW)]
        try:
            for sock in stalled:
                sock.sendall(request)
            time.sleep(1.0)   # every one accepted and read
            with ThreadPoolExecutor(SLOW) as pool:
                statuses = list(pool.map(lambda _: _predict(base, timeout=10), range(SLOW)))
            assert statuses == [200] * SLOW
        finally:
            for sock in stalled:
                sock.close()


@pytest.mark.parametrize("framing", STALLED)
def test_a_body_slower_than_the_client_timeout_is_answered_400(tmp_path, framing):
    """A body, declared or chunked, trickled a byte every half second waits in the poller for
    CNNLENS_CLIENT_TIMEOUT at most: then the application gets the body cut short and answers it
    as the bad input it is (400: it ended before its Content-Length, or mid-chunk), and other
    requests are served."""
    head = STALLED[framing][:-10]   # up to the body's first bytes
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n" + head
    with serving(gunicorn_env(CNNLENS_CLIENT_TIMEOUT="2"), tmp_path / "gunicorn.log") as (_, base):
        slow = _Slowloris(base, SLOW, request + PNG, interval=0.01)
        try:
            time.sleep(len(request) * 0.01 + 0.5)   # the headers are in; the body trickles
            slow.interval = 0.5
            assert _predict(base, timeout=60) == 200
            replies = slow.replies()
        finally:
            slow.close()
    assert all(reply.startswith(b"HTTP/1.1 400 ") for reply in replies), replies


def test_headers_slower_than_the_client_timeout_are_dropped(tmp_path):
    with serving(gunicorn_env(CNNLENS_CLIENT_TIMEOUT="2"), tmp_path / "gunicorn.log") as (_, base):
        slow = _Slowloris(base, 2, HEADERS, interval=0.5)
        try:
            assert slow.replies() == [b"", b""]   # closed without an answer after 2 s
        finally:
            slow.close()


def _chunked(body: bytes, sizes: list[int], trailers: bytes = b"") -> bytes:
    """`body` in chunks of `sizes` (the rest in a last one), with an extension on every other size
    line, in the chunked transfer coding (RFC 9112, 7.1)."""
    out, at = b"", 0
    for i, size in enumerate([*sizes, len(body) - sum(sizes)]):
        extension = b";n=%d" % i if i % 2 else b""
        out += b"%X%s\r\n%s\r\n" % (size, extension, body[at:at + size])
        at += size
    return out + b"0\r\n" + trailers + b"\r\n"


def test_a_chunked_body_ends_where_its_last_chunk_and_trailers_do():
    """The worker's scan finds the end of a chunked body as its bytes arrive, byte by byte, and
    not a byte sooner, with or without trailer fields, and with a next request behind it."""
    rng = np.random.default_rng(0)
    for trailers in (b"", b"X-Checksum: 1\r\nX-Other: 2\r\n"):
        sizes = [int(n) for n in rng.integers(1, len(PNG) // 5, 5)]
        message = _chunked(PNG, sizes, trailers)
        data, chunks = bytearray(b"HEAD"), worker._Chunks(4, 10**6)
        for byte in message:
            assert chunks.end(data) is None
            data.append(byte)
        assert chunks.end(data + b"GET / HTTP/1.1\r\n") == 4 + len(message)


@pytest.mark.parametrize("body", [b"zz\r\n", b"-1\r\nabc", b"0x10\r\n", b"\r\n",
                                  b"400\r\n" + b"a" * 1024 + b"\r\n"])
def test_a_chunked_body_malformed_or_over_the_limit_is_left_to_the_thread(body):
    """Handed over at once, to be refused there (400 by gunicorn's parser, 413 by the app)."""
    data = bytearray(body)
    assert worker._Chunks(0, 1000).end(data) == len(data)


def test_a_chunked_body_sent_in_pieces_and_a_request_behind_it_are_both_answered(tmp_path):
    """Two requests with chunked bodies (extensions, trailers) on one connection, the second
    right behind the first, sent in pieces with pauses between them: each is answered as a whole
    body is."""
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n" \
              b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(PNG, [7, 100], b"X-Checksum: 1\r\n")
    both = request * 2
    with serving(gunicorn_env(), tmp_path / "gunicorn.log") as (_, base):
        with socket.create_connection((urlsplit(base).hostname, urlsplit(base).port),
                                      timeout=10) as sock:
            for cut in range(0, len(both), 150):
                sock.sendall(both[cut:cut + 150])
                time.sleep(0.2)
            replies = [_answer(sock) for _ in range(2)]
    assert [status for status, _ in replies] == [200, 200]
    assert replies[0][1] == replies[1][1]
    assert replies[0][1]["results"][0]["top_k"][0]["label"] == "7"


@pytest.mark.parametrize("version, framing", [
    ("1.1", b"Content-Length: %d\r\n\r\n" % len(PNG)),
    ("1.1", b"Transfer-Encoding: chunked\r\n\r\n"),
    ("1.0", b"Content-Length: %d\r\n\r\n" % len(PNG)),
])
def test_a_client_that_waits_for_100_continue_gets_it_once(tmp_path, version, framing):
    """It sends its headers with Expect: 100-continue and its body only once the 100 Continue has
    come (HTTP/1.1); one 100 Continue, then the answer, on a connection kept alive for a second
    request. An HTTP/1.0 client sends at once and gets no 100 (RFC 9110, 10.1.1)."""
    chunked = b"chunked" in framing
    body = _chunked(PNG, [50]) if chunked else PNG
    head = (b"POST /predict HTTP/%s\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Connection: keep-alive\r\nExpect: 100-continue\r\n" % version.encode()) + framing
    with serving(gunicorn_env(), tmp_path / "gunicorn.log") as (_, base):
        with socket.create_connection((urlsplit(base).hostname, urlsplit(base).port),
                                      timeout=10) as sock:
            for _ in range(2):
                sock.sendall(head)
                if version == "1.1":
                    interim = b""
                    while not interim.endswith(b"\r\n\r\n"):
                        interim += sock.recv(1)
                    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
                sock.sendall(body)
                status, answer = _answer(sock)
                assert status == 200 and answer["results"][0]["top_k"][0]["label"] == "7"
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(1)   # nothing more: no second 100 Continue came after the body


def _answer(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the next answer on `sock`, read up to its Content-Length and
    no further (the next answer may follow it at once)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(1)
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", data)[1])
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return int(data.split()[1]), json.loads(body)


def _children(master: int) -> set[int]:
    return {int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()}


def _dead(worker: int, master: int) -> bool:
    """Whether a killed worker is a zombie or already reaped by its master."""
    try:
        return worker not in _children(master) or \
            "State:\tZ" in Path(f"/proc/{worker}/status").read_text()
    except FileNotFoundError:   # reaped between the two reads
        return True


def test_a_killed_worker_is_replaced_and_only_its_requests_fail(tmp_path):
    log = tmp_path / "gunicorn.log"
    clients = 6
    with serving(gunicorn_env(), log) as (process, base):
        stop, outcomes = threading.Event(), []   # (started, ended, status or error)

        def stream():
            client = Client(base)
            while not stop.is_set():
                started = time.monotonic()
                try:
                    status = client.post("/predict", PNG, "image/png").status
                except (OSError, http.client.HTTPException) as error:   # a lost connection
                    status = repr(error)
                outcomes.append((started, time.monotonic(), status))

        threads = [threading.Thread(target=stream, daemon=True) for _ in range(clients)]
        for thread in threads:
            thread.start()
        try:   # the clients stop whatever happens: left running, they slow every later test
            time.sleep(1.0)
            before = _children(process.pid)
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            assert wait_for(lambda: _dead(victim, process.pid))
            killed = time.monotonic()
            assert wait_for(lambda: len(_children(process.pid) - before) == 1), log.read_text()
            replacement = (_children(process.pid) - before).pop()
            assert Client(base).get("/readyz").status == 200
            assert wait_for(lambda: replacement in {line["pid"] for line in access_lines(log)})   # it serves
            time.sleep(1.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
    failed = [o for o in outcomes if o[2] != 200]
    # Only requests in flight at the kill fail (at most one per client, each on a lost
    # connection, never a 5xx); every request sent after it succeeds.
    assert all(started < killed and not isinstance(status, int) for started, _, status in failed), failed
    assert len(failed) <= clients
    assert sum(started > killed for started, _, _ in outcomes) > 10


@pytest.fixture()
def models(tmp_path) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(MODEL_DIR, folder / "mnist-cnn")
    return folder


def test_bundle_files_corrupted_on_disk_while_serving(models, tmp_path):
    """The sessions, filter pictures and model.onnx are in memory: truncated files and a garbage
    manifest change nothing until a reload, which rejects the bundle and keeps serving the
    version loaded before."""
    bundle = models / "mnist-cnn"
    log = tmp_path / "gunicorn.log"
    pictures = ("/filters/conv1/3", "/filters/conv2/atlas")
    with serving(gunicorn_env(CNNLENS_MODELS_DIR=str(models)), log) as (process, base):
        client = Client(base)
        before = client.post("/predict", PNG, "image/png").json()
        committed = {path: (MODEL_DIR / "filters" / (path.split("/", 2)[2] + ".png")).read_bytes()
                     for path in pictures}
        for name in ("model.onnx", "gradient.onnx", *(f"filters/{p.split('/', 2)[2]}.png"
                                                       for p in pictures)):
            (bundle / name).write_bytes((bundle / name).read_bytes()[:100])
        (bundle / "manifest.json").write_text("{not json")

        def still_serving():
            assert client.post("/predict", PNG, "image/png").json() == before
            for path in pictures:
                assert client.get(path).body == committed[path]
            assert client.get("/filters/conv1/weights").status == 200
            assert client.post("/explain", PNG, "image/png").status == 200
            dream = client.post("/dream?targets=class:3&start=noise&steps=4")
            assert dream.status == 200 and dream.mimetype == "image/png"
            assert client.get("/models/mnist-cnn").json()["version"] == before["model"]["version"]

        still_serving()
        os.kill(process.pid, signal.SIGHUP)
        assert wait_for(lambda: log.read_text().count("model bundle rejected") == WORKERS), \
            log.read_text()
        assert "manifest.json: not valid JSON" in log.read_text()
        still_serving()
        assert client.get("/readyz").status == 200
    assert "Traceback" not in log.read_text()


def test_a_worker_replaced_while_the_bundle_on_disk_is_broken(models, tmp_path):
    """The replacement of a killed worker cannot load the broken bundle: it retries, while the
    other worker serves the version it loaded, instead of stopping the server (gunicorn halts on
    a worker's boot error); once the bundle is mended, the replacement boots and serves."""
    manifest = models / "mnist-cnn" / "manifest.json"
    good = manifest.read_bytes()
    log = tmp_path / "gunicorn.log"
    with serving(gunicorn_env(CNNLENS_MODELS_DIR=str(models)), log) as (process, base):
        client = Client(base)
        before = client.post("/predict", PNG, "image/png").json()
        manifest.write_text("{not json")
        workers = _children(process.pid)
        os.kill(min(workers), signal.SIGKILL)
        assert wait_for(lambda: log.read_text().count("replacement worker cannot load") >= 2), \
            log.read_text()
        for _ in range(20):
            assert client.post("/predict", PNG, "image/png").json() == before
        assert process.poll() is None
        manifest.write_bytes(good)
        assert wait_for(lambda: any(f"[{pid}] [INFO] models reloaded" in log.read_text()
                                     for pid in _children(process.pid) - workers),
                         seconds=60), log.read_text()
        assert len(_children(process.pid)) == WORKERS
        assert client.post("/predict", PNG, "image/png").json() == before
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("age, replacement", [(1, False), (WORKERS, False), (WORKERS + 1, True)])
def test_only_a_worker_forked_after_the_first_boot_is_a_replacement(monkeypatch, age, replacement):
    """gunicorn numbers the workers it forks; the first ones boot the server."""
    from gunicorn.config import Config
    from gunicorn.workers import gthread

    from service.runtime.worker import REPLACEMENT, ThreadWorker

    config = Config()
    config.set("workers", WORKERS)
    monkeypatch.delenv(REPLACEMENT, raising=False)
    monkeypatch.setattr(gthread.ThreadWorker, "init_process", lambda self: None)  # no serving
    ThreadWorker(age, os.getpid(), [], None, 30, config, None).init_process()
    assert (os.environ.get(REPLACEMENT) == "1") is replacement


@pytest.mark.parametrize("replacement, status", [(False, 3), (True, 1)])
def test_a_worker_that_cannot_load_stops_the_server_only_at_first_boot(tmp_path, replacement,
                                                                       status):
    """Exit status 3 is gunicorn's "worker failed to boot", on which the master stops; on 1 it
    forks another worker (service/wsgi.py)."""
    from service.runtime.worker import REPLACEMENT

    env = gunicorn_env(CNNLENS_MODELS_DIR=str(tmp_path / "nowhere"))
    env |= {REPLACEMENT: "1"} if replacement else {}
    result = subprocess.run([sys.executable, "-c", "import service.wsgi"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    said = "replacement worker cannot load" if replacement else "cnn-lens cannot start"
    assert said in result.stderr


def test_sighup_while_a_worker_is_still_loading_does_not_kill_it(tmp_path):
    """gunicorn resets SIGHUP to terminate until the app is loaded: a reload asked for while a
    replacement worker boots must not kill it (service/runtime/worker.py keeps it for after the
    load)."""
    log = tmp_path / "gunicorn.log"
    with serving(gunicorn_env(), log) as (process, base):
        workers = _children(process.pid)
        os.kill(min(workers), signal.SIGKILL)
        assert wait_for(lambda: len(_children(process.pid) - workers) == 1, seconds=30)
        os.kill(process.pid, signal.SIGHUP)   # while the replacement loads its bundle
        # The first loads of both workers and of the replacement, then a reload in the other
        # worker; the replacement reloads too unless the signal came before it set its handler
        # (then it was lost, and harmlessly: it loads the bundles on disk after it anyway).
        assert wait_for(lambda: log.read_text().count("models reloaded") >= 2 + WORKERS)
        assert Client(base).get("/readyz").status == 200
        assert len(_children(process.pid)) == WORKERS
    assert "was sent SIGHUP" not in log.read_text()
