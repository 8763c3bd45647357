"""Part 4: cold start (process start to the first /readyz 200) and RSS per worker (VmRSS of the
master's children) after warm-up and after a bounded number of /predict requests."""
from __future__ import annotations

from bench import servers
from bench.load import wrk
from bench.predict_load import IMAGE
from bench.stats import summary

WARM_UP_RUN_SECONDS = 3


def run(starts: int, requests: int) -> dict:
    ready = []
    for _ in range(starts):
        server = servers.start("cnn-lens")
        ready.append(server.ready_seconds)
        server.stop()
    server = servers.start("cnn-lens")
    try:
        # Warm-up on 64 connections, twice as many requests as the measure, in runs of a few
        # seconds with fresh connections, at least two: a worker's RSS rises about 5 MB over its
        # first few thousand requests, then stays within 0.2 MB over 80,000 more, and /readyz
        # answers once the first worker is ready, so the connections of a run opened while the
        # second was still loading (about a second) all stay with the first, and the second
        # warmed up in the measured requests (2026-12-05: +4.9 %). (A run with stop_after waits
        # out its whole duration.)
        warmed, runs = 0, 0
        while runs < 2 or warmed < 2 * requests:
            runs += 1
            answered = wrk(server.base + "/predict", IMAGE, 64, WARM_UP_RUN_SECONDS)["requests"]
            if not answered:
                raise RuntimeError(f"cnn-lens answered no request in {WARM_UP_RUN_SECONDS} s")
            warmed += answered
        warm = server.worker_rss_mb()
        done = wrk(server.base + "/predict", IMAGE, 64, 120, stop_after=requests)
        after = server.worker_rss_mb()
    finally:
        server.stop()
    growth = [100 * (b - a) / a for a, b in zip(warm, after)]
    return {"cold_start_s": summary(ready), "requests": done["requests"],
            "rss_mb_after_warmup": warm, "rss_mb_after_requests": after,
            "rss_growth_percent": growth}
