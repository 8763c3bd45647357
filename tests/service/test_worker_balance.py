"""Kept-alive connections spread evenly over gunicorn's workers (service/worker.py), on a real
gunicorn: a burst of as many connections as the server has threads, as a client pool opens them,
puts as many on each worker as it has threads; a burst of four times that, within a worker's
threads of an even share."""
from __future__ import annotations

import http.client
import json
import socket
from collections import Counter
from urllib.parse import urlsplit

import pytest

from tests.service.conftest import gunicorn_env, serving

WORKERS, THREADS = 2, 4
REQUESTS_PER_CONNECTION = 3


def _workers_of(log: str, prefix: str) -> dict[str, set[int]]:
    """Connection name -> the pids of the workers that logged its requests."""
    pids: dict[str, set[int]] = {}
    for line in log.splitlines():
        if line.startswith("{") and f'"{prefix}' in line:
            entry = json.loads(line)
            pids.setdefault(entry["request_id"].rsplit("-", 1)[0], set()).add(entry["pid"])
    return pids


@pytest.mark.parametrize("size, tolerance", [(WORKERS * THREADS, 0)] * 2 +
                         [(4 * WORKERS * THREADS, THREADS)])
def test_a_burst_of_kept_alive_connections_is_shared_evenly(tmp_path, size, tolerance):
    log_path = tmp_path / "gunicorn.log"
    env = gunicorn_env(CNNLENS_WORKERS=str(WORKERS), CNNLENS_THREADS=str(THREADS))
    with serving(env, log_path) as (_, base):
        address = (urlsplit(base).hostname, urlsplit(base).port)
        sockets = [socket.create_connection(address) for _ in range(size)]
        connections = []
        for sock in sockets:
            connection = http.client.HTTPConnection(*address)
            connection.sock = sock
            connections.append(connection)
        for round_ in range(REQUESTS_PER_CONNECTION):
            for n, connection in enumerate(connections):
                connection.request("GET", "/healthz", headers={"X-Request-ID": f"conn{n}-{round_}"})
            for connection in connections:
                reply = connection.getresponse()
                reply.read()
                assert reply.status == 200
        for connection in connections:
            connection.close()
    pids = _workers_of(log_path.read_text(), "conn")
    assert len(pids) == size
    assert all(len(served_by) == 1 for served_by in pids.values()), pids   # kept alive
    per_worker = Counter(next(iter(served_by)) for served_by in pids.values())
    assert len(per_worker) == WORKERS, per_worker
    assert all(abs(count - size // WORKERS) <= tolerance for count in per_worker.values()), \
        per_worker
