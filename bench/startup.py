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
        wrk(server.base + "/predict", IMAGE, 8, 2)   # warm-up: both workers serve
        warm = server.worker_rss_mb()
        done = wrk(server.base + "/predict", IMAGE, 8, 120, stop_after=requests)
        after = server.worker_rss_mb()
    finally:
        server.stop()
    growth = [100 * (b - a) / a for a, b in zip(warm, after)]
    return {"cold_start_s": summary(ready), "requests": done["requests"],
            "rss_mb_after_warmup": warm, "rss_mb_after_requests": after,
            "rss_growth_percent": growth}
