"""Part 3: one gradient step through gradient.onnx (onnxruntime, 1 and 2 intra-op threads) next
to torch autograd on the same checkpoint and objective (1 and 2 threads), interleaved; then whole
default /dream requests, timed by the client on loopback."""
from __future__ import annotations

import io
import json
import time
import urllib.request
from dataclasses import fields

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from bench import servers
from bench.stats import summary
from lens import bundle as bundles
from lens.optvis.objectives import class_logit, deepdream, feeds, targets
from training.layers import Layer, state_of
from training.onnx_export import gradient_function, objective_targets
from training.train import load_model

BUNDLE = servers.ROOT / "models" / "mnist-cnn"
# size -> objective: the class logit needs the training size; conv objectives work at any size
CASES = {28: ("class:7", class_logit(7)), 224: ("conv2 deepdream", deepdream("conv2")),
         512: ("conv2 deepdream", deepdream("conv2"))}
THREADS = (1, 2)


def session(threads: int) -> ort.InferenceSession:
    """gradient.onnx with the options the service runs it with."""
    return ort.InferenceSession(str(BUNDLE / "gradient.onnx"), bundles.session_options(threads),
                                providers=["CPUExecutionProvider"])


def torch_step(model, layers: list[dict]):
    """gradient_function (what gradient.onnx was traced from), run eagerly with autograd."""
    keep = {f.name for f in fields(Layer)}
    as_layers = [Layer(**{k: v for k, v in layer.items() if k in keep}) for layer in layers]
    f = gradient_function(model, as_layers)
    state = list(state_of(model).values())
    names = objective_targets(as_layers)

    def step(image: np.ndarray, weights: dict[str, np.ndarray]):
        """`weights`: gradient.onnx's weight inputs (those of targets not in `layers` unused)."""
        inputs = [torch.from_numpy(weights[f"weights.{t}"]) for t in names] + \
                 [torch.from_numpy(weights[f"energy.{t}"]) for t in names]
        return f(state, torch.from_numpy(image), *inputs)
    return step


def _time(call, repeats: int) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def steps(rounds: int, repeats: int) -> dict:
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    model = load_model(torch.load(BUNDLE / "checkpoint.pt", weights_only=False))
    sessions = {t: session(t) for t in THREADS}
    rng = np.random.default_rng(0)
    results = {}
    for size, (label, objective) in CASES.items():
        image = rng.uniform(0, 1, (1, 1, size, size)).astype(np.float32)
        all_layers = manifest["layers"]
        used = all_layers if size == 28 else [l for l in all_layers if l["kind"] == "conv"]
        inputs = [node.name for node in sessions[1].get_inputs()]
        onnx_feeds = {"image": image, **feeds([objective], targets(all_layers, inputs))}
        torch_run = torch_step(model, used)
        # same numbers from both (a sanity check that the comparison is fair)
        grad_onnx = sessions[1].run(["grad.image"], onnx_feeds)[0]
        torch.set_num_threads(1)
        grad_torch = torch_run(image, onnx_feeds)[1].numpy()
        assert np.allclose(grad_onnx, grad_torch, rtol=1e-3, atol=1e-5), size
        cases = {f"onnx_{t}t": (lambda t=t: sessions[t].run(["objective", "grad.image"], onnx_feeds))
                 for t in THREADS}
        cases |= {f"torch_{t}t": (lambda t=t: torch_run(image, onnx_feeds)) for t in THREADS}
        samples = {name: [] for name in cases}
        for _ in range(rounds):
            for name, call in cases.items():
                if name.startswith("torch"):
                    torch.set_num_threads(int(name[-2]))
                call()   # warm-up after a thread change
                samples[name].append(_time(call, repeats) * 1000)
        results[str(size)] = {"objective": label,
                              "ms": {name: summary(values) for name, values in samples.items()}}
        print(f"  {size}x{size} {label}: " + "  ".join(
            f"{name} {results[str(size)]['ms'][name]['median']:.2f} ms" for name in cases),
            flush=True)
    return results


def photo_512() -> bytes:
    image = Image.open(servers.ROOT / "examples" / "photo.jpg").convert("RGB").resize((512, 512))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def dreams(repeats: int) -> dict:
    bodies = {"digit_28x28_png": ((servers.ROOT / "examples" / "mnist-7.png").read_bytes(),
                                  "image/png"),
              "photo_512x512_jpeg": (photo_512(), "image/jpeg")}
    server = servers.start("cnn-lens")
    try:
        samples = {name: [] for name in bodies}
        headers = {}
        for i in range(repeats + 1):   # the first of each is a warm-up
            for name, (body, kind) in bodies.items():
                request = urllib.request.Request(server.base + "/dream", body,
                                                 {"Content-Type": kind}, method="POST")
                start = time.perf_counter()
                with urllib.request.urlopen(request, timeout=120) as response:
                    response.read()
                    headers[name] = response.headers["X-Dream-Steps-Done"]
                if i:
                    samples[name].append((time.perf_counter() - start) * 1000)
    finally:
        server.stop()
    return {name: {"ms": summary(values), "steps_done": int(headers[name])}
            for name, values in samples.items()}
