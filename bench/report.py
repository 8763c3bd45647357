"""Tables for the terminal (and, verbatim, for docs/benchmarks.md)."""
from __future__ import annotations


def _range(s: dict, fmt: str) -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"


def tables(results: dict, targets: list[dict]) -> str:
    out = []
    if "predict" in results:
        out += ["### /predict under load (one PNG, multipart; median (min–max) over rounds)", "",
                "| server | concurrency | req/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
        for kind, by_c in results["predict"]["table"].items():
            for c, m in by_c.items():
                out.append(f"| {kind} | {c} | {_range(m['rps'], '.0f')} | "
                           f"{_range(m['p50_ms'], '.2f')} | {_range(m['p99_ms'], '.2f')} |")
        out.append("")
    if "batch" in results:
        out += ["### Batch of 256 MNIST digits (images/s, median (min–max))", "",
                "| path | images/s |", "|---|---|"]
        for name, s in results["batch"]["images_per_s"].items():
            out.append(f"| {name} | {_range(s, '.0f')} |")
        out.append("")
    if "gradient" in results:
        out += ["### Gradient step, batch 1 (ms, median (min–max))", "",
                "| size | objective | onnx 1 thread | onnx 2 threads | torch 1 thread | torch 2 threads |",
                "|---|---|---|---|---|---|"]
        for size, row in results["gradient"]["steps"].items():
            ms = row["ms"]
            out.append(f"| {size}x{size} | {row['objective']} | " + " | ".join(
                _range(ms[k], ".2f") for k in ("onnx_1t", "onnx_2t", "torch_1t", "torch_2t")) + " |")
        out += ["", "| whole default /dream | client-side ms | steps |", "|---|---|---|"]
        for name, row in results["gradient"]["dream"].items():
            out.append(f"| {name} | {_range(row['ms'], '.0f')} | {row['steps_done']} |")
        out.append("")
    if "startup" in results:
        s = results["startup"]
        out += ["### Cold start and memory", "",
                f"- cold start, process start to /readyz 200: {_range(s['cold_start_s'], '.2f')} s",
                f"- RSS per worker after warm-up: {', '.join(f'{v:.1f}' for v in s['rss_mb_after_warmup'])} MB",
                f"- after {s['requests']} more requests: "
                f"{', '.join(f'{v:.1f}' for v in s['rss_mb_after_requests'])} MB "
                f"({', '.join(f'{g:+.1f} %' for g in s['rss_growth_percent'])})", ""]
    if "workers" in results:
        out += ["### gunicorn workers x threads: /predict req/s and p99 ms (median over rounds)", "",
                "| workers x threads | c8 req/s | c8 p99 | c64 req/s | c64 p99 | c8 beside dreams "
                "req/s | its p99 |", "|---|---|---|---|---|---|---|"]
        for name, cases in results["workers"]["configs"].items():
            cells = [f"{cases[case]['rps']['median']:.0f} | {cases[case]['p99_ms']['median']:.1f}"
                     for case in ("c8", "c64", "c8_beside_dreams")]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    if targets:
        out += ["### Targets (issue #6)", "", "| target | measured | bound | met |", "|---|---|---|---|"]
        for t in targets:
            unit = "×" if t["unit"] == "×" else t["unit"]
            out.append(f"| {t['target']} | {t['value']:.2f}{unit} | {t['bound']} | "
                       f"{'yes' if t['met'] else '**no**'} |")
        out.append("")
    return "\n".join(out)
