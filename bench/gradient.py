"""Part 3: one gradient step through gradient.onnx (onnxruntime, 1 and 2 intra-op threads) next
to torch autograd on the same checkpoint and objective (1 and 2 threads), interleaved; then whole
default /dream requests, timed by the client on loopback.

Each step is also set against its floor: its multiply-adds (those of the convolutions and dense
layers it runs, forward and input gradient, counted on the model at that size) at the SGEMM rate
measured in the same rounds at the same thread count. The rate is onnxruntime's MatMul (MLAS, the
GEMM its convolutions run, on the same thread pool), the faster of two shapes: the im2col GEMM of
the step's largest convolution over a block of 4096 output pixels (MLAS's convolutions work in
cache-sized blocks; one GEMM over all 64,009 pixels of conv2 at 512x512 would time the memory
that streams its 57 MB operand), and a square 1024x1024x1024.

With a baseline gradient.onnx (python -m bench --gradient-baseline PATH) that graph is timed in
the same rounds, as the step before a change."""
from __future__ import annotations

import io
import json
import time
import urllib.request
from dataclasses import fields
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
from onnx import numpy_helper
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn

from bench import servers
from bench.stats import summary
from lens import bundle as bundles
from lens.optvis.objectives import class_logit, deepdream, feeds, targets
from training.layers import Layer, capture, state_of
from training.onnx_export import gradient_function, objective_targets
from training.train import load_model

BUNDLE = servers.ROOT / "models" / "mnist-cnn"
# size -> objective: the class logit needs the training size; conv objectives work at any size
CASES = {28: ("class:7", class_logit(7)), 224: ("conv2 deepdream", deepdream("conv2")),
         512: ("conv2 deepdream", deepdream("conv2"))}
THREADS = (1, 2)


GEMM_BLOCK = 4096   # output pixels per im2col block in the SGEMM rate's conv-shaped GEMM
SQUARE = 1024


def session(threads: int, path=BUNDLE / "gradient.onnx") -> ort.InferenceSession:
    """A gradient graph with the options the service runs it with."""
    return ort.InferenceSession(str(path), bundles.session_options(threads),
                                providers=["CPUExecutionProvider"])


def torch_step(model, layers: list[dict], targets: list[str] | None = None):
    """gradient_function (what gradient.onnx was traced from), run eagerly with autograd; its
    objective weighs `targets` (default: all, as gradient.onnx computes them)."""
    keep = {f.name for f in fields(Layer)}
    as_layers = [Layer(**{k: v for k, v in layer.items() if k in keep}) for layer in layers]
    f = gradient_function(model, as_layers, targets)
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


def steps(rounds: int, repeats: int, baseline: Path | None = None) -> dict:
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    model = load_model(torch.load(BUNDLE / "checkpoint.pt", weights_only=False))
    sessions = {t: session(t) for t in THREADS}
    baselines = {t: session(t, baseline) for t in THREADS} if baseline else {}
    rng = np.random.default_rng(0)
    results = {}
    for size, (label, objective) in CASES.items():
        image = rng.uniform(0, 1, (1, 1, size, size)).astype(np.float32)
        all_layers = manifest["layers"]
        used = all_layers if size == 28 else [l for l in all_layers if l["kind"] == "conv"]
        inputs = [node.name for node in sessions[1].get_inputs()]
        onnx_feeds = {"image": image, **feeds([objective], targets(all_layers, inputs))}
        torch_run = torch_step(model, used)
        torch_target_run = torch_step(model, used, sorted(objective.layers))
        # same numbers from all (a sanity check that the comparison is fair)
        grad_onnx = sessions[1].run(["grad.image"], onnx_feeds)[0]
        torch.set_num_threads(1)
        for run in (torch_run, torch_target_run):
            assert np.allclose(grad_onnx, run(image, onnx_feeds)[1].numpy(), rtol=1e-3, atol=1e-5), size
        cases = {f"onnx_{t}t": (lambda t=t: sessions[t].run(["objective", "grad.image"], onnx_feeds))
                 for t in THREADS}
        cases |= {f"baseline_{t}t": (lambda t=t: baselines[t].run(["objective", "grad.image"], onnx_feeds))
                  for t in baselines}
        cases |= {f"torch_{t}t": (lambda t=t: torch_run(image, onnx_feeds)) for t in THREADS}
        cases |= {f"torch_target_{t}t": (lambda t=t: torch_target_run(image, onnx_feeds))
                  for t in THREADS}
        macs, largest = multiply_adds(model, used, image)
        gemms = {t: gemm_sessions(t, largest) for t in THREADS}
        samples = {name: [] for name in cases}
        rates = {f"{shape}_{t}t": [] for t in THREADS for shape in gemms[t]}
        for _ in range(rounds):
            for name, call in cases.items():
                if name.startswith("torch"):
                    torch.set_num_threads(int(name[-2]))
                call()   # warm-up after a thread change
                samples[name].append(_time(call, repeats) * 1000)
            for t in THREADS:
                for shape, (gemm, feed, gemm_macs) in gemms[t].items():
                    gemm.run(None, feed)
                    rates[f"{shape}_{t}t"].append(2 * gemm_macs / _time(lambda: gemm.run(None, feed), repeats) / 1e9)
        ms = {name: summary(values) for name, values in samples.items()}
        gflops = {name: summary(values) for name, values in rates.items()}
        floor = {}
        for t in THREADS:
            rate = max(gflops[f"{shape}_{t}t"]["median"] for shape in gemms[t])
            floor[f"{t}t"] = {"gflop_per_s": rate, "ms": 2 * macs / rate / 1e6}
        results[str(size)] = {"objective": label, "ms": ms, "multiply_adds": macs,
                              "largest_gemm": largest, "sgemm_gflop_per_s": gflops, "floor": floor}
        print(f"  {size}x{size} {label}: " + "  ".join(
            f"{name} {ms[name]['median']:.2f} ms" for name in cases)
            + "  " + "  ".join(f"floor_{t} {floor[t]['ms']:.2f} ms" for t in floor), flush=True)
    return results


def multiply_adds(model: nn.Module, layers: list[dict], image: np.ndarray) -> tuple[int, dict]:
    """Multiply-adds of one step on `image` (batch 1): those of every convolution and dense layer
    the forward pass to `layers` runs, twice (forward and input gradient, which has as many), and
    the im2col GEMM (output pixels, K, output channels) of the largest convolution."""
    keep = {f.name for f in fields(Layer)}
    as_layers = [Layer(**{k: v for k, v in layer.items() if k in keep}) for layer in layers]
    counted = []

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            pixels = output.shape[2] * output.shape[3]
            counted.append((pixels * k * module.out_channels, (pixels, k, module.out_channels)))
        else:
            counted.append((module.in_features * module.out_features, None))

    handles = [m.register_forward_hook(count) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            capture(model, as_layers, state_of(model), torch.from_numpy(image))
    finally:
        for handle in handles:
            handle.remove()
    convs = [shape for _, shape in counted if shape is not None]
    pixels, k, n = max(convs, key=lambda shape: shape[0] * shape[1] * shape[2])
    return 2 * sum(macs for macs, _ in counted), {"pixels": pixels, "k": k, "n": n}


def gemm_sessions(threads: int, largest: dict) -> dict:
    """onnxruntime MatMul sessions for the SGEMM rate: shape -> (session, feed, multiply-adds).
    B is an initializer, as a convolution's kernel is: onnxruntime packs it once."""
    rng = np.random.default_rng(1)
    shapes = {"conv_block": (min(GEMM_BLOCK, largest["pixels"]), largest["k"], largest["n"]),
              "square": (SQUARE, SQUARE, SQUARE)}
    out = {}
    for name, (m, k, n) in shapes.items():
        b = rng.standard_normal((k, n)).astype(np.float32)
        graph = oh.make_graph(
            [oh.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
            [oh.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [m, k])],
            [oh.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [m, n])],
            [numpy_helper.from_array(b, "b")])
        model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])
        model.ir_version = 8
        gemm = ort.InferenceSession(model.SerializeToString(), bundles.session_options(threads),
                                    providers=["CPUExecutionProvider"])
        out[name] = (gemm, {"a": rng.standard_normal((m, k)).astype(np.float32)}, m * k * n)
    return out


def floor_table(steps: dict) -> str:
    """The steps against their floor and against torch, per thread count (medians of one run)."""
    first = next(iter(steps.values()))
    baseline = "baseline_1t" in first["ms"]
    out = ["### Gradient step against its floor and against torch (ratios of medians)", "",
           "| size | objective | GFLOP | threads | SGEMM GFLOP/s | floor ms | onnx ms | onnx / floor | "
           "onnx / torch | onnx / torch, target only |"
           + (" baseline ms | baseline / floor | baseline / torch |" if baseline else ""),
           "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if baseline else "")]
    for size, row in steps.items():
        ms = row["ms"]
        for t in THREADS:
            floor = row["floor"][f"{t}t"]
            onnx_ms = ms[f"onnx_{t}t"]["median"]
            torch_ms = ms[f"torch_{t}t"]["median"]
            cells = [f"{size}x{size}", row["objective"], f"{2 * row['multiply_adds'] / 1e9:.3f}",
                     str(t), f"{floor['gflop_per_s']:.1f}", f"{floor['ms']:.2f}",
                     _range(ms[f"onnx_{t}t"]), f"{onnx_ms / floor['ms']:.2f}×",
                     f"{onnx_ms / torch_ms:.2f}×",
                     f"{onnx_ms / ms[f'torch_target_{t}t']['median']:.2f}×"]
            if baseline:
                base = ms[f"baseline_{t}t"]["median"]
                cells += [_range(ms[f"baseline_{t}t"]), f"{base / floor['ms']:.2f}×",
                          f"{base / torch_ms:.2f}×"]
            out.append("| " + " | ".join(cells) + " |")
    out += ["", "torch: gradient_function over every target gradient.onnx weighs (zero weights "
            "but the objective's), as the graph computes them; target only: over the objective's "
            "targets alone. Floor: the step's multiply-adds at the SGEMM rate of the same rounds "
            "and thread count (onnxruntime MatMul, the faster of an im2col block of the largest "
            "convolution and a square 1024³).", ""]
    return "\n".join(out)


def _range(s: dict) -> str:
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


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
