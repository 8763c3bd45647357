"""A short soak (python -m bench.soak, bounded) on a real gunicorn: mixed traffic at concurrency
64 with no server error, no connection error, and no memory growth in any worker."""
from __future__ import annotations

from pathlib import Path

from bench.soak import soak, table
from tests.service.conftest import gunicorn_env, serving

# After the warm-up and the first half, each worker's RSS has reached its working size (onnxruntime
# arenas, the allocator's per-thread arenas, Pillow and Flask caches); a leak then shows as growth
# over the second half, about 4,000 requests here. 4 MB allows the allocator's noise (a few
# arenas growing by their 1 MB heaps, measured 0-1 MB) and catches a leak of ~1 KB a request.
RSS_GROWTH_MB = 4.0


def _worker_rss_mb(master: int):
    def measure() -> list[float]:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return [int(line.split()[1]) / 1024 for pid in children
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")]
    return measure


def test_mixed_traffic_at_concurrency_64(tmp_path):
    with serving(gunicorn_env(), tmp_path / "gunicorn.log") as (process, base):
        result = soak(base, _worker_rss_mb(process.pid), seconds=20, concurrency=64, warmup=5)
    print(table(result))
    tallies = result["tallies"]
    assert all(len(t.statuses) > 50 for t in tallies.values()), table(result)
    assert sum(t.server_errors() for t in tallies.values()) == 0, table(result)
    assert [e for t in tallies.values() for e in t.connection_errors] == [], table(result)
    assert all(t.count(400) == 0 for t in tallies.values()), table(result)
    rss = result["rss_mb"]
    assert len(rss["middle"]) == len(rss["end"]) == 2   # no worker died and was replaced
    growth = [end - middle for middle, end in zip(rss["middle"], rss["end"])]
    assert max(growth) <= RSS_GROWTH_MB, table(result)
