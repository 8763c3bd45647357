"""Part 1: /predict under load, cnn-lens next to the lean reference server (bench/lean_app.py),
the HTTP ceiling and the naive torch baseline, interleaved (every round runs each concurrency on
each series in turn). cnn-lens and the lean server are loaded with both bodies: the PNG as a
multipart upload (a new boundary per request) and as the raw body; cnn-lens also with
preprocess=none, the lean server's own pipeline. With `before` (a checkout of an
earlier commit: python -m bench --before PATH), cnn-lens as it was there joins the rounds too.
"""
from __future__ import annotations

from pathlib import Path

from bench import servers
from bench.load import wrk
from bench.stats import summary
from bench.servers import ROOT

IMAGE = ROOT / "examples" / "mnist-7.png"
SERIES = {   # name -> (server kind, body, path)
    "cnn-lens": ("cnn-lens", "multipart", "/predict"),
    "cnn-lens raw": ("cnn-lens", "raw", "/predict"),
    # the lean server's own pipeline (a plain resize to 28x28, no digit preprocessing)
    "cnn-lens raw none": ("cnn-lens", "raw", "/predict?preprocess=none"),
    "lean": ("lean", "multipart", "/predict"),
    "lean raw": ("lean", "raw", "/predict"),
    "ceiling": ("ceiling", "multipart", "/predict"),
    "naive": ("naive", "multipart", "/predict"),
}
CONCURRENCY = (1, 8, 64)


def run(rounds: int, seconds: float, before: Path | None = None) -> dict:
    series = dict(SERIES)
    started = {kind: servers.start(kind) for kind in dict.fromkeys(k for k, _, _ in SERIES.values())}
    if before:
        started["cnn-lens before"] = servers.start("cnn-lens", root=before)
        series |= {"cnn-lens before": ("cnn-lens before", "multipart", "/predict"),
                   "cnn-lens before raw": ("cnn-lens before", "raw", "/predict")}
    try:
        for server in started.values():   # warm up every worker and connection path
            wrk(server.base + "/predict", IMAGE, 8, 1)
        samples = {name: {c: [] for c in CONCURRENCY} for name in series}
        for round_ in range(rounds):
            for c in CONCURRENCY:
                for name, (kind, body, path) in series.items():
                    server = started[kind]
                    cpu, switches = server.worker_usage()
                    result = wrk(server.base + path, IMAGE, c, seconds, body=body)
                    if result["errors"] or result["non_2xx"]:
                        raise RuntimeError(f"{name} c{c}: {result}")
                    cpu_after, switches_after = server.worker_usage()
                    # what each request costs the server, whichever worker served it: unlike req/s,
                    # not halved in a round where most connections piled onto one worker
                    result["cpu_us"] = (cpu_after - cpu) / result["requests"] * 1e6
                    result["switches"] = (switches_after - switches) / result["requests"]
                    samples[name][c].append(result)
                    print(f"  round {round_ + 1} c{c:<3} {name:12} {result['rps']:8.0f} req/s  "
                          f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                          f"worker CPU {result['cpu_us']:5.0f} µs  "
                          f"{result['switches']:4.1f} context switches a request", flush=True)
        rss = {kind: server.worker_rss_mb() for kind, server in started.items()}
    finally:
        for server in started.values():
            server.stop()
    table = {name: {str(c): {metric: summary([s[metric] for s in samples[name][c]])
                             for metric in ("rps", "p50_ms", "p99_ms", "cpu_us", "switches")}
                    for c in CONCURRENCY} for name in series}
    return {"rounds": rounds, "seconds_per_run": seconds, "image": str(IMAGE.relative_to(ROOT)),
            "before": str(before) if before else None, "table": table, "worker_rss_mb_after": rss}
