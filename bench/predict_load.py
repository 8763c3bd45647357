"""Part 1: /predict under load, cnn-lens next to the HTTP ceiling and the naive torch baseline,
interleaved (every round runs each concurrency on each server in turn)."""
from __future__ import annotations

from bench import servers
from bench.load import wrk
from bench.stats import summary
from bench.servers import ROOT

IMAGE = ROOT / "examples" / "mnist-7.png"
KINDS = ("cnn-lens", "ceiling", "naive")
CONCURRENCY = (1, 8, 64)


def run(rounds: int, seconds: float) -> dict:
    started = {kind: servers.start(kind) for kind in KINDS}
    try:
        for server in started.values():   # warm up every worker and connection path
            wrk(server.base + "/predict", IMAGE, 8, 1)
        samples = {kind: {c: [] for c in CONCURRENCY} for kind in KINDS}
        for round_ in range(rounds):
            for c in CONCURRENCY:
                for kind in KINDS:
                    result = wrk(started[kind].base + "/predict", IMAGE, c, seconds)
                    if result["errors"] or result["non_2xx"]:
                        raise RuntimeError(f"{kind} c{c}: {result}")
                    samples[kind][c].append(result)
                    print(f"  round {round_ + 1} c{c:<3} {kind:9} {result['rps']:8.0f} req/s  "
                          f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms",
                          flush=True)
        rss = {kind: server.worker_rss_mb() for kind, server in started.items()}
    finally:
        for server in started.values():
            server.stop()
    table = {kind: {str(c): {metric: summary([s[metric] for s in samples[kind][c]])
                             for metric in ("rps", "p50_ms", "p99_ms")}
                    for c in CONCURRENCY} for kind in KINDS}
    return {"rounds": rounds, "seconds_per_run": seconds, "image": str(IMAGE.relative_to(ROOT)),
            "table": table, "worker_rss_mb_after": rss}
