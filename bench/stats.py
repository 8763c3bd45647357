"""Medians and ranges of repeated measurements, and the machine they were taken on."""
from __future__ import annotations

import os
import platform
import statistics


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    memory_kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
    return {"cpu": model, "cores": os.cpu_count(),
            "affinity_cores": len(os.sched_getaffinity(0)),
            "memory_gb": round(memory_kb / 2**20, 1), "kernel": platform.release(),
            "python": platform.python_version()}
