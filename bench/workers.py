"""Part 5: gunicorn's worker and thread counts, measured. /predict at concurrency 8 and 64 for
each configuration (interleaved over rounds), and /predict at concurrency 8 while one client
posts dreams back to back: with one thread per worker (gunicorn's sync worker) a dream holds its
whole worker, and the /predict requests queued behind it wait for it."""
from __future__ import annotations

import threading
import urllib.request

from bench import servers
from bench.load import wrk
from bench.servers import ROOT
from bench.stats import summary

IMAGE = ROOT / "examples" / "mnist-7.png"
PHOTO = ROOT / "examples" / "photo.jpg"
CONFIGS = ((2, 1), (2, 2), (2, 4), (3, 2), (4, 1))   # (workers, threads); threads 1 = sync worker
DREAM_QUERY = "/dream?steps=32&octaves=2"


def _dreams_until(base: str, stop: threading.Event) -> None:
    body = PHOTO.read_bytes()
    while not stop.is_set():
        request = urllib.request.Request(base + DREAM_QUERY, body, {"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()


def _with_dreams(base: str, seconds: float) -> dict:
    stop = threading.Event()
    dreamer = threading.Thread(target=_dreams_until, args=(base, stop))
    dreamer.start()
    try:
        return wrk(base + "/predict", IMAGE, 8, seconds)
    finally:
        stop.set()
        dreamer.join()


def run(rounds: int, seconds: float) -> dict:
    names = [f"{w}x{t}" for w, t in CONFIGS]
    started = {name: servers.start("cnn-lens", WORKERS=w, THREADS=t)
               for name, (w, t) in zip(names, CONFIGS)}
    cases = {"c8": lambda base: wrk(base + "/predict", IMAGE, 8, seconds),
             "c64": lambda base: wrk(base + "/predict", IMAGE, 64, seconds),
             "c8_beside_dreams": lambda base: _with_dreams(base, seconds)}
    samples = {name: {case: [] for case in cases} for name in names}
    try:
        for server in started.values():
            wrk(server.base + "/predict", IMAGE, 8, 1)
        for round_ in range(rounds):
            for case, measure in cases.items():
                for name in names:
                    result = measure(started[name].base)
                    if result["errors"] or result["non_2xx"]:
                        raise RuntimeError(f"{name} {case}: {result}")
                    samples[name][case].append(result)
                    print(f"  round {round_ + 1} {case:16} {name:4} {result['rps']:7.0f} req/s  "
                          f"p99 {result['p99_ms']:8.2f} ms", flush=True)
    finally:
        for server in started.values():
            server.stop()
    return {"configs": {name: {case: {metric: summary([s[metric] for s in runs])
                                      for metric in ("rps", "p50_ms", "p99_ms")}
                               for case, runs in by_case.items()}
                        for name, by_case in samples.items()},
            "rounds": rounds, "seconds_per_run": seconds, "dream": DREAM_QUERY}
