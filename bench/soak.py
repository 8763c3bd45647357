"""python -m bench.soak [--duration 180] [--concurrency 64]: a bounded soak of mixed traffic.

Starts cnn-lens (bench.servers), sends /predict, /filters, /explain and /dream with the files in
examples/ from `concurrency` keep-alive clients for `duration` seconds, and prints per endpoint the
requests, 2xx/4xx/5xx, connection errors and p50/p99, and the RSS of every worker at the start
(after a warm-up), the middle and the end. A 503 with Retry-After is the gradient endpoints'
designed answer when every gradient slot of a worker is busy
(service.runtime.gradient_slots), so it is counted apart as `shed`, not as a server error. tests/service/test_soak.py runs a short one."""
from __future__ import annotations

import argparse
import http.client
import itertools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from bench import servers
from bench.servers import ROOT

EXAMPLES = {name: (ROOT / "examples" / name).read_bytes()
            for name in ("mnist-7.png", "drawn-7.jpg", "photo.jpg")}
# (endpoint, method, path, content type, body); drawn in this order, round robin, so every run
# has the same mix: half /predict, and the gradient endpoints a small share, as in real use.
MIX = [
    ("predict", "POST", "/predict", "image/png", EXAMPLES["mnist-7.png"]),
    ("predict", "POST", "/predict?activations=true", "image/jpeg", EXAMPLES["drawn-7.jpg"]),
    ("filters", "GET", "/filters/conv2/3?scale=4", None, None),
    ("predict", "POST", "/predict?top_k=3", "image/jpeg", EXAMPLES["photo.jpg"]),
    ("explain", "POST", "/explain", "image/png", EXAMPLES["mnist-7.png"]),
    ("predict", "POST", "/predict", "image/jpeg", EXAMPLES["drawn-7.jpg"]),
    ("filters", "GET", "/filters", None, None),
    ("dream", "POST", "/dream?targets=class:3&start=noise&steps=8&seed=1", None, None),
]


@dataclass
class Tally:
    """Outcomes of one endpoint's requests (appended from many threads: list.append is atomic)."""
    latencies: list[float] = field(default_factory=list)   # seconds, answered requests only
    statuses: list[int] = field(default_factory=list)
    shed: int = 0                 # 503 with Retry-After from a gradient endpoint
    connection_errors: list[str] = field(default_factory=list)

    def count(self, low: int) -> int:
        return sum(low <= s < low + 100 for s in self.statuses)

    def server_errors(self) -> int:
        return self.count(500) - self.shed

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def load(base: str, concurrency: int, seconds: float) -> dict[str, Tally]:
    """`concurrency` clients, each on its own keep-alive connection (a new one after an error),
    for `seconds`; every request has a 60 s socket timeout, so the run is bounded."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    assert host == "127.0.0.1", "loopback only"
    tallies: dict[str, Tally] = defaultdict(Tally)
    requests = itertools.cycle(MIX)   # next() on a cycle is atomic under the GIL
    deadline = time.monotonic() + seconds

    def client():
        connection = http.client.HTTPConnection(host, port, timeout=60)
        while time.monotonic() < deadline:
            endpoint, method, path, content_type, body = next(requests)
            tally = tallies[endpoint]
            headers = {"Content-Type": content_type} if content_type else {}
            start = time.monotonic()
            try:
                connection.request(method, path, body, headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                tally.connection_errors.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
                continue
            tally.latencies.append(time.monotonic() - start)
            tally.statuses.append(response.status)
            if response.status == 503 and response.getheader("Retry-After"):
                tally.shed += 1
        connection.close()

    for endpoint, *_ in MIX:
        tallies[endpoint]   # every endpoint has a row, even with no request finished
    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    return dict(tallies)


def soak(base: str, worker_rss_mb: Callable[[], list[float]], seconds: float,
         concurrency: int, warmup: float = 5.0) -> dict:
    """A warm-up (every worker's lazily made buffers, caches and allocator arenas reach their
    working size; not counted), then two halves of the soak, RSS per worker measured after each."""
    load(base, concurrency, warmup)
    rss = {"start": worker_rss_mb()}
    first = load(base, concurrency, seconds / 2)
    rss["middle"] = worker_rss_mb()
    second = load(base, concurrency, seconds / 2)
    rss["end"] = worker_rss_mb()
    tallies = {}
    for endpoint in first:
        a, b = first[endpoint], second[endpoint]
        tallies[endpoint] = Tally(a.latencies + b.latencies, a.statuses + b.statuses,
                                  a.shed + b.shed, a.connection_errors + b.connection_errors)
    return {"tallies": tallies, "rss_mb": rss, "seconds": seconds, "concurrency": concurrency}


def table(result: dict) -> str:
    rows = [f"soak: {result['seconds']:g} s at concurrency {result['concurrency']}", "",
            "| endpoint | requests | 2xx | 4xx | 5xx | shed (503) | connection errors | p50 ms | p99 ms |",
            "|---|---|---|---|---|---|---|---|---|"]
    for endpoint, t in sorted(result["tallies"].items()):
        rows.append(f"| {endpoint} | {len(t.statuses) + len(t.connection_errors)} | {t.count(200)} "
                    f"| {t.count(400)} | {t.server_errors()} | {t.shed} | "
                    f"{len(t.connection_errors)} | {t.percentile(0.5):.1f} | {t.percentile(0.99):.1f} |")
    rows += ["", "| worker | RSS start MB | middle | end |", "|---|---|---|---|"]
    rss = result["rss_mb"]
    for k, values in enumerate(zip(rss["start"], rss["middle"], rss["end"])):
        rows.append(f"| {k} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180, help="seconds of soak (at most 3600)")
    parser.add_argument("--concurrency", type=int, default=64, help="clients (at most 512)")
    args = parser.parse_args()
    if not (1 <= args.duration <= 3600 and 1 <= args.concurrency <= 512):
        parser.error("--duration must be in [1, 3600] and --concurrency in [1, 512]")
    server = servers.start("cnn-lens")
    try:
        result = soak(server.base, server.worker_rss_mb, args.duration, args.concurrency)
    finally:
        server.stop()
    print(table(result))


if __name__ == "__main__":
    main()
