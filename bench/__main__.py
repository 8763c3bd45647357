"""python -m bench [--parts predict,batch,gradient,startup,workers,pictures] [--quick] [--out PATH]
                  [--gradient-baseline PATH] [--before PATH]

Measures cnn-lens on loopback, prints the tables and the issue's targets, writes JSON (and a plot
of /predict against concurrency beside it, if matplotlib is installed)."""
from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path

from bench import batch, gradient, pictures, predict_load, startup, workers
from bench.plot import plot
from bench.report import tables
from bench.stats import machine
from bench.targets import check

PARTS = ("predict", "batch", "gradient", "startup", "workers", "pictures")
FULL = dict(rounds=3, seconds=6, batch_rounds=10, grad_rounds=3, grad_repeats=10,
            dream_repeats=5, starts=5, requests=10_000, picture_rounds=5, pictures_per_layer=None)
QUICK = dict(rounds=1, seconds=2, batch_rounds=2, grad_rounds=1, grad_repeats=3,
             dream_repeats=1, starts=2, requests=1_000, picture_rounds=1, pictures_per_layer=5)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[2])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="one short round of everything")
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--gradient-baseline", type=Path,
                        help="a gradient.onnx to time beside the bundle's in the gradient part")
    parser.add_argument("--before", type=Path,
                        help="a checkout of an earlier commit whose server joins the /predict rounds")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    k = QUICK if args.quick else FULL
    results = {"when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), "quick": args.quick, "load_average": {}}
    runners = {
        "predict": lambda: predict_load.run(k["rounds"], k["seconds"], args.before),
        "batch": lambda: batch.run(k["batch_rounds"]),
        "gradient": lambda: {"steps": gradient.steps(k["grad_rounds"], k["grad_repeats"],
                                                     args.gradient_baseline),
                             "dream": gradient.dreams(k["dream_repeats"])},
        "startup": lambda: startup.run(k["starts"], k["requests"]),
        "workers": lambda: workers.run(k["rounds"], k["seconds"]),
        "pictures": lambda: pictures.run(k["picture_rounds"], k["pictures_per_layer"]),
    }
    for part in parts:
        print(f"== {part}", flush=True)
        before = os.getloadavg()[0]
        results[part] = runners[part]()
        results["load_average"][part] = {"before": before, "after": os.getloadavg()[0]}
    targets = check(results)
    results["targets"] = targets
    print()
    print(tables(results, targets))
    if "gradient" in results:
        print(gradient.floor_table(results["gradient"]["steps"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    if "predict" in results and plot(results["predict"], args.out.with_suffix(".png")):
        print(f"wrote {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
