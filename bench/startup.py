"""Part 4: cold start (process start to the first /readyz 200) and RSS per worker (VmRSS of the
master's children) after warm-up and after a bounded number of /predict requests."""
from __future__ import annotations

from bench import servers
from bench.load import wrk
from bench.predict_load import IMAGE
from bench.stats import summary


def run(starts: int, requests: int) -> dict:
    ready = []
    for _ in range(starts):
        server = servers.start("cnn-lens")
        ready.append(server.ready_seconds)
        server.stop()
    server = servers.start("cnn-lens")
    try:
        # Warm-up on 64 connections, twice as long as the measure: with a few kept-alive
        # connections one worker may get them all (docs/benchmarks.md) and the other warms up
        # later, in the measured requests (measured: a worker's RSS rises about 5 MB over its
        # first few thousand requests, then stays within 0.1 MB over 30,000 more).
        wrk(server.base + "/predict", IMAGE, 64, 120, stop_after=2 * requests)
        warm = server.worker_rss_mb()
        done = wrk(server.base + "/predict", IMAGE, 64, 120, stop_after=requests)
        after = server.worker_rss_mb()
    finally:
        server.stop()
    growth = [100 * (b - a) / a for a, b in zip(warm, after)]
    return {"cold_start_s": summary(ready), "requests": done["requests"],
            "rss_mb_after_warmup": warm, "rss_mb_after_requests": after,
            "rss_growth_percent": growth}
