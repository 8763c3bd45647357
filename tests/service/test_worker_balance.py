"""Kept-alive connections spread evenly over gunicorn's workers (service/runtime/worker.py), on a
real gunicorn: a burst of as many connections as the server has threads, as a client pool opens them,
puts as many on each worker as it has threads, even when a worker gets no CPU while the burst
arrives, or while the connections of a burst before it are still closing; a burst of four times
that, within a worker's threads of an even share; a worker stopped for good does not keep the
connections left to it waiting; and a worker whose pause ends before it waits still accepts."""
from __future__ import annotations

import http.client
import os
import selectors
import signal
import socket
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from gunicorn.config import Config

from service.runtime.worker import PEER_PATIENCE, ThreadWorker, _Connections, _DeadlineSocket
from tests.service.conftest import ROOT, access_lines, gunicorn_env, serving, wait_for

WORKERS, THREADS = 2, 4
REQUESTS_PER_CONNECTION = 3


def _workers_of(log_path, prefix: str) -> dict[str, set[int]]:
    """Connection name -> the pids of the workers that logged its requests."""
    pids: dict[str, set[int]] = {}
    for entry in access_lines(log_path):
        if entry["request_id"].startswith(prefix):
            pids.setdefault(entry["request_id"].rsplit("-", 1)[0], set()).add(entry["pid"])
    return pids


@contextmanager
def _every_worker_serving(tmp_path):
    """gunicorn whose workers have all answered a request, so all of them accept connections
    (serving() waits for their bundles, a moment before they accept); yields (address, log path,
    worker pids)."""
    log_path = tmp_path / "gunicorn.log"
    env = gunicorn_env(CNNLENS_WORKERS=str(WORKERS), CNNLENS_THREADS=str(THREADS))
    with serving(env, log_path) as (_, base):
        def all_answered() -> bool:
            request = urllib.request.Request(base + "/healthz", headers={"X-Request-ID": "probe-0"})
            urllib.request.urlopen(request, timeout=10).read()
            return len(_workers_of(log_path, "probe").get("probe", ())) == WORKERS

        assert wait_for(all_answered)
        yield (urlsplit(base).hostname, urlsplit(base).port), log_path, \
            _workers_of(log_path, "probe")["probe"]


def _open(address, size: int) -> list[http.client.HTTPConnection]:
    """`size` connections opened at once, as a client pool opens them, before any request."""
    sockets = [socket.create_connection(address) for _ in range(size)]
    connections = []
    for sock in sockets:
        sock.settimeout(30)
        connection = http.client.HTTPConnection(*address)
        connection.sock = sock
        connections.append(connection)
    return connections


def _requests(connections: list[http.client.HTTPConnection], name: str = "conn"):
    for round_ in range(REQUESTS_PER_CONNECTION):
        for n, connection in enumerate(connections):
            connection.request("GET", "/healthz", headers={"X-Request-ID": f"{name}{n}-{round_}"})
        for connection in connections:
            reply = connection.getresponse()
            reply.read()
            assert reply.status == 200
    for connection in connections:
        connection.close()


def _connections_per_worker(log_path, size: int, name: str = "conn") -> Counter:
    pids = _workers_of(log_path, name)
    assert len(pids) == size
    assert all(len(served_by) == 1 for served_by in pids.values()), pids   # kept alive
    return Counter(next(iter(served_by)) for served_by in pids.values())


@pytest.mark.parametrize("size, tolerance", [(WORKERS * THREADS, 0)] * 2 +
                         [(4 * WORKERS * THREADS, THREADS)])
def test_a_burst_of_kept_alive_connections_is_shared_evenly(tmp_path, size, tolerance):
    with _every_worker_serving(tmp_path) as (address, log_path, _):
        _requests(_open(address, size))
    per_worker = _connections_per_worker(log_path, size)
    assert len(per_worker) == WORKERS, per_worker
    assert all(abs(count - size // WORKERS) <= tolerance for count in per_worker.values()), \
        per_worker


def test_every_burst_is_shared_not_only_the_first(tmp_path):
    """A worker waits for its peers afresh in each burst, after a pause longer than its patience."""
    size = WORKERS * THREADS
    with _every_worker_serving(tmp_path) as (address, log_path, pids):
        _requests(_open(address, size), "first")
        time.sleep(2 * PEER_PATIENCE)
        _requests(_open(address, size), "second")
    for burst in ("first", "second"):
        assert _connections_per_worker(log_path, size, burst) == {pid: THREADS for pid in pids}


def test_a_worker_without_the_cpu_for_a_moment_still_gets_its_share(tmp_path):
    """As on a loaded machine: the other worker takes its threads' worth at once and leaves the
    rest for PEER_PATIENCE to the stopped one, which takes them when it runs again."""
    with _every_worker_serving(tmp_path) as (address, log_path, pids):
        stopped = min(pids)
        os.kill(stopped, signal.SIGSTOP)
        try:
            connections = _open(address, WORKERS * THREADS)
            time.sleep(PEER_PATIENCE / 3)
        finally:
            os.kill(stopped, signal.SIGCONT)
        _requests(connections)
    assert _connections_per_worker(log_path, WORKERS * THREADS) == \
        {pid: THREADS for pid in pids}


def test_a_burst_is_shared_while_the_last_ones_connections_still_close(tmp_path):
    """As when wrk ends a round and starts the next: a client pool hangs up with a request in
    flight on each connection and opens new ones at once. The worker holding the old ones (all of
    them here: the other was stopped while they arrived) answers them one by one, and counted as
    its connections until then they would send every new one to the other worker."""
    png = (ROOT / "examples" / "mnist-7.png").read_bytes()
    with _every_worker_serving(tmp_path) as (address, log_path, pids):
        stopped = min(pids)
        os.kill(stopped, signal.SIGSTOP)
        try:
            old = _open(address, 8 * THREADS)
            time.sleep(2 * PEER_PATIENCE)   # the running worker takes them all
        finally:
            os.kill(stopped, signal.SIGCONT)
        for connection in old:
            connection.request("POST", "/predict", body=png, headers={"Content-Type": "image/png"})
        for connection in old:
            connection.close()
        _requests(_open(address, WORKERS * THREADS))
    assert _connections_per_worker(log_path, WORKERS * THREADS) == \
        {pid: THREADS for pid in pids}


def test_connections_left_to_a_stopped_worker_are_taken_after_a_while(tmp_path):
    """A worker that does not run (hung, or starved for longer than PEER_PATIENCE) cannot hold
    up the connections left to it: every request is answered while it is still stopped."""
    with _every_worker_serving(tmp_path) as (address, log_path, pids):
        stopped = min(pids)
        os.kill(stopped, signal.SIGSTOP)
        try:
            _requests(_open(address, WORKERS * THREADS))
        finally:
            os.kill(stopped, signal.SIGCONT)
    assert _connections_per_worker(log_path, WORKERS * THREADS) == \
        {max(pids): WORKERS * THREADS}


def test_a_pause_that_ends_before_the_worker_waits_does_not_leave_it_deaf():
    """A full worker that left a connection to its peers stops accepting for a moment; the loop's
    next turn may not re-enable it while the pause holds. If the pause ends before the worker
    then waits (its main thread lost the GIL in between), it must wait accepting, not sleep its
    poll's whole second deaf to new connections while the peers leave them to it."""
    cfg = Config()
    cfg.set("threads", THREADS)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        worker = ThreadWorker(1, os.getppid(), [listener], None, 30, cfg, None)
        worker.poller, worker.slot = selectors.DefaultSelector(), None
        worker.connections = _Connections()
        accepted = []
        worker.accept = lambda sock: accepted.append(sock.accept()[0])
        pairs = [socket.socketpair() for _ in range(THREADS)]   # a full worker
        held = [_DeadlineSocket.adopt(server_side) for server_side, _ in pairs]
        for sock in held:
            worker.connections.add(sock)
        worker.accept_paused_until = time.monotonic() + 60
        worker.set_accept_enabled(True)                         # the loop's turn, in the pause
        assert not worker._accepting
        worker.accept_paused_until = time.monotonic()           # the pause ends meanwhile
        with socket.create_connection(listener.getsockname()):
            worker.wait_for_and_dispatch_events(timeout=5.0)
        assert len(accepted) == 1
        for sock in accepted + held + [client for _, client in pairs]:
            sock.close()
        worker.poller.close()
        worker.tmp.close()


def test_the_connection_count_follows_opens_hang_ups_and_closes():
    """What each worker publishes: its open connections whose client has not hung up. A closed
    connection leaves the count before its descriptor is freed, so a new connection that gets
    the same number is counted once."""
    table = _Connections()
    pairs = [socket.socketpair() for _ in range(3)]
    ours = []
    for server_side, _ in pairs:
        sock = _DeadlineSocket.adopt(server_side)
        table.add(sock)
        ours.append(sock)
    try:
        assert table.live() == 3
        pairs[0][1].close()                  # a client hangs up: still open here, not live
        assert table.live() == 2
        number = ours[1].fileno()
        ours[1].close()
        assert table.live() == 1
        one, other = socket.socketpair()     # POSIX: the lowest free numbers, the closed one's too
        again, client = (one, other) if one.fileno() == number else (other, one)
        assert again.fileno() == number
        reused = _DeadlineSocket.adopt(again)
        table.add(reused)
        assert table.live() == 2
        reused.close()
        client.close()
        assert table.live() == 1
    finally:
        for sock in ours:
            sock.close()
        for _, client in pairs:
            client.close()
    assert table.live() == 0
