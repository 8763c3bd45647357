"""Tables for the terminal (and, verbatim, for docs/benchmarks.md)."""
from __future__ import annotations


def _range(s: dict, fmt: str) -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"


def tables(results: dict, targets: list[dict]) -> str:
    out = []
    if "predict" in results:
        out += ["### /predict under load (one PNG as a multipart upload, or as the body in the raw rows; "
                "median (min–max) over rounds)", "",
                "| server | concurrency | req/s | p50 ms | p99 ms | worker CPU µs a request | "
                "context switches a request |", "|---|---|---|---|---|---|---|"]
        for kind, by_c in results["predict"]["table"].items():
            for c, m in by_c.items():
                out.append(f"| {kind} | {c} | {_range(m['rps'], '.0f')} | "
                           f"{_range(m['p50_ms'], '.2f')} | {_range(m['p99_ms'], '.2f')} | "
                           f"{_range(m['cpu_us'], '.0f')} | {_range(m['switches'], '.1f')} |")
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
    if "pictures" in results:
        out += _pictures(results["pictures"])
    if targets:
        out += ["### Targets (issues #6 and #14)", "", "| target | measured | bound | met |", "|---|---|---|---|"]
        for t in targets:
            unit = "×" if t["unit"] == "×" else t["unit"]
            out.append(f"| {t['target']} | {t['value']:.2f}{unit} | {t['bound']} | "
                       f"{'yes' if t['met'] else '**no**'} |")
        out.append("")
    return "\n".join(out)


def _pictures(p: dict) -> list[str]:
    rounds = p["total"]["ratio"]["n"]
    out = [f"### Filter pictures: render time with the settings before ({p['before_commit']}) "
           f"and after (current) (median (min–max) over {rounds} round{'s' * (rounds > 1)})", "",
           "| layer | pictures | gradient runs per picture | s per layer batch, before | after | "
           "ms per picture, before | after | after/before, paired | beat best digit, before → after |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, row in p["layers"].items():
        b, a = row["before"], row["after"]
        beat = f"{b['fidelity']['beat_best_digit']} → {a['fidelity']['beat_best_digit']} of {row['pictures']}"
        above = next((k for k in a["fidelity"] if k.startswith("above_p")), None)
        if above:
            beat += f"; above the {above[7:]}th percentile logit {b['fidelity'][above]} → {a['fidelity'][above]}"
        runs = f"{b['runs_per_picture']} → {a['runs_per_picture']} " \
               f"({a['runs_per_picture'] / b['runs_per_picture']:.2f}×)"
        out.append(f"| {name} ({row['kind']}) | {row['pictures']} | {runs} | "
                   f"{_range(b['batch_s'], '.2f')} | {_range(a['batch_s'], '.2f')} | "
                   f"{_range(b['per_picture_ms'], '.0f')} | {_range(a['per_picture_ms'], '.0f')} | "
                   f"{_range(row['ratio'], '.2f')}× | {beat} |")
    t = p["total"]
    beats = {which: sum(row[which]["fidelity"]["beat_best_digit"] for row in p["layers"].values())
             for which in ("before", "after")}
    out.append(f"| all layers | {t['pictures']} | | {_range(t['before']['s'], '.1f')} | "
               f"{_range(t['after']['s'], '.1f')} | | | {_range(t['ratio'], '.2f')}× | "
               f"{beats['before']} → {beats['after']} of {t['pictures']} |")
    same = all(row["after_matches_bundle"] for row in p["layers"].values())
    out += ["", f"Before: training/export.py's VISUALIZATION at {p['before_commit']}; after: the "
            "current one. Both are rendered by the current lens/optvis/render.py, so only the settings "
            f"differ, from export's start noise (unchanged) through {p['bundle']}'s gradient.onnx, "
            "each layer's pictures as one batch as export renders them"
            + (f" (here only each layer's first {p['per_layer']})" if p.get("per_layer") else "")
            + ". One gradient run takes the whole batch; a picture takes part in steps + 2 of them "
            "(the objective is measured before and after). Per round each layer is rendered before, "
            "then after, back to back; after/before is over those pairs. A picture beats the best "
            f"digit when it excites its unit more than the best of the {p['training_digits']} "
            "training digits (training/verify.py's criterion for hidden units; for classes verify's "
            "bar is the 99th percentile logit). The after pictures "
            + ("are" if same else "are **not**")
            + " the bundle's own (their objectives match the manifest's)."]
    return out + [""]
