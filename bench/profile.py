"""Where the time goes: python -m bench.profile [predict|lean|batch|gradient] (in-process,
no server).

predict   cProfile of 1000 single-image POST /predict through Flask's test client
lean      microseconds per POST /predict through Flask's test client, cnn-lens beside the lean
          server (bench/lean_app.py), raw and multipart bodies, interleaved: the work per request
          that bounds both under load, without HTTP
batch     cProfile of 10 POST /predict with 256 multipart PNGs
gradient  onnxruntime's own profile of gradient.onnx at 512x512 (conv2 Deep Dream), by op type
"""
from __future__ import annotations

import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from bench.servers import ROOT

BUNDLE = ROOT / "models" / "mnist-cnn"


def _client(**limits):
    from service import create_app
    from service.settings import Settings
    return create_app(Settings(models_dir=BUNDLE, **limits)).test_client()


def _profile(call, count: int, top: int = 30) -> None:
    call()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        call()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def predict() -> None:
    client = _client()
    png = (ROOT / "examples" / "mnist-7.png").read_bytes()
    _profile(lambda: client.post("/predict", data={"file": (io.BytesIO(png), "7.png")}), 1000)


def _cases() -> dict:
    """POST /predict calls through Flask's test client: cnn-lens beside the lean server."""
    from bench import lean_app
    png = (ROOT / "examples" / "mnist-7.png").read_bytes()
    ours, theirs = _client(), lean_app.app.test_client()

    def multipart(client, query=""):
        return lambda: client.post("/predict" + query, data={"file": (io.BytesIO(png), "7.png")})

    def raw(client, query=""):
        return lambda: client.post("/predict" + query, data=png, content_type="image/png")
    return {"cnn-lens multipart": multipart(ours), "cnn-lens raw": raw(ours),
            "cnn-lens raw, preprocess=none": raw(ours, "?preprocess=none"),
            "lean multipart": multipart(theirs), "lean raw": raw(theirs)}


def lean(rounds: int = 7, requests: int = 200) -> None:
    import time
    cases = _cases()
    micros = {name: [] for name in cases}
    with _quiet():
        for call in cases.values():
            assert call().status_code == 200
        for _ in range(rounds):
            for name, call in cases.items():
                start = time.perf_counter()
                for _ in range(requests):
                    call()
                micros[name].append((time.perf_counter() - start) / requests * 1e6)
    for name, values in micros.items():
        print(f"  {name:30} {np.median(values):7.0f} µs per request "
              f"({min(values):.0f}–{max(values):.0f})")


@contextlib.contextmanager
def _quiet():
    """cnn-lens's JSON log lines go where gunicorn would write them, a file: here /dev/null."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def batch() -> None:
    from bench.batch import digits
    from PIL import Image
    client = _client(max_batch=256)
    pngs = []
    for image in digits():
        out = io.BytesIO()
        Image.fromarray(image).save(out, "PNG")
        pngs.append(out.getvalue())
    _profile(lambda: client.post("/predict", data={"file": [(io.BytesIO(p), f"{i}.png")
                                                           for i, p in enumerate(pngs)]}), 10)


def gradient(size: int = 512, runs: int = 5) -> None:
    import onnxruntime as ort
    from lens.optvis.objectives import deepdream, feeds, targets
    from lens.bundle import session_options
    options = session_options(threads=1)   # as the service runs it
    options.enable_profiling = True
    options.profile_file_prefix = "/tmp/cnnlens-bench-ort-profile"
    session = ort.InferenceSession(str(BUNDLE / "gradient.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    layers = json.loads((BUNDLE / "manifest.json").read_text())["layers"]
    image = np.random.default_rng(0).uniform(0, 1, (1, 1, size, size)).astype(np.float32)
    names = [node.name for node in session.get_inputs()]
    inputs = {"image": image, **feeds([deepdream("conv2")], targets(layers, names))}
    for _ in range(runs):
        session.run(["objective", "grad.image"], inputs)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            if event["args"]["op_name"] != "If":   # an If's time is its branch's nodes, counted below
                by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values())
    print(f"gradient.onnx {size}x{size}, conv2 Deep Dream, 1 thread, {runs} runs: "
          f"{total / runs / 1000:.1f} ms of kernels per run")
    for op, us in by_op.most_common(15):
        print(f"  {op:22} {us / runs / 1000:8.2f} ms  {100 * us / total:5.1f} %")


if __name__ == "__main__":
    {"predict": predict, "lean": lean, "batch": batch,
     "gradient": gradient}[sys.argv[1] if len(sys.argv) > 1 else "predict"]()
