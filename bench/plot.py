"""Throughput and latency against concurrency (matplotlib optional: skipped without it)."""
from __future__ import annotations

from pathlib import Path


def plot(predict: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    colours = plt.get_cmap("tab10").colors   # one per server, its p50 and p99 alike
    for (kind, by_c), colour in zip(predict["table"].items(), colours * 2):
        cs = [int(c) for c in by_c]
        left.plot(cs, [by_c[str(c)]["rps"]["median"] for c in cs], "o-", color=colour, label=kind)
        right.plot(cs, [by_c[str(c)]["p50_ms"]["median"] for c in cs], "o-", color=colour,
                   label=f"{kind} p50")
        right.plot(cs, [by_c[str(c)]["p99_ms"]["median"] for c in cs], "x--", color=colour,
                   label=f"{kind} p99")
    for axes, label in ((left, "requests/s"), (right, "latency, ms")):
        axes.set_xscale("log", base=2)
        axes.set_xticks([1, 8, 64], ["1", "8", "64"])
        axes.set_xlabel("concurrent connections")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    right.set_yscale("log")
    left.set_title("POST /predict throughput (median of rounds)")
    right.set_title("POST /predict latency")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True
