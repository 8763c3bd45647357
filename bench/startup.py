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
        # Warm-up: twice as many requests as the measure. A worker's RSS rises about 5 MB over
        # its first few thousand requests, then stays within 0.2 MB over 80,000 more.
        _requests(server, 2 * requests)
        warm = server.worker_rss_mb()
        done = _requests(server, requests)
        after = server.worker_rss_mb()
    finally:
        server.stop()
    growth = [100 * (b - a) / a for a, b in zip(warm, after)]
    return {"cold_start_s": summary(ready), "requests": done["requests"],
            "rss_mb_after_warmup": warm, "rss_mb_after_requests": after,
            "rss_growth_percent": growth}


def _requests(server: servers.Server, count: int) -> dict:
    """`count` /predict requests on 64 connections, every one answered with a 200."""
    done = wrk(server.base + "/predict", IMAGE, 64, 120, stop_after=count)
    if done["requests"] < count or done["errors"] or done["non_2xx"]:
        raise RuntimeError(f"cnn-lens answered {done['requests']} of {count} requests, "
                           f"{done['errors']} errors, {done['non_2xx']} not 200")
    return done
