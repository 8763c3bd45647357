"""`docker compose up`, for real: the repository's Dockerfile and docker-compose.yml, unchanged,
built and run by podman-compose; everything checked over HTTP on the published 127.0.0.1 port.

The module is one story in order: up, serve, train a new bundle in the trainer container, reload
it under load, down. Building the images takes minutes (the trainer's torch most of them), so the
stack is brought up once for the module."""
from __future__ import annotations

import io
import os
import socket
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.containers.engine import (API_IMAGE, ROOT, Compose, added_bytes, build_env, inspect,
                                     podman, require_engine, wait_ready, wheelhouse)
from tests.service.http import Client
from tests.service.reference import Reference

SEVEN = (ROOT / "examples" / "mnist-7.png").read_bytes()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def stack():
    """The compose project, up, on a free host port (CNNLENS_PORT); `down -v` at the end in any
    case (test_down_leaves_nothing checks that it leaves nothing)."""
    require_engine()
    compose = Compose(f"cnnlens-test-{os.getpid()}", build_env(CNNLENS_PORT=str(_free_port())))
    try:
        compose("up", "-d", "--build")
        wait_ready(compose.base)
        yield compose
    finally:
        compose("down", "-v", check=False, timeout=120)


@pytest.fixture(scope="module")
def api(stack) -> Client:
    return Client(stack.base)


def test_the_api_is_ready_on_the_published_port(api):
    ready = api.get("/readyz").json()
    assert ready["status"] == "ready" and ready["default"] == "mnist-cnn"


def test_predict_reads_the_example_seven_as_the_bundle_does(api):
    reply = api.post("/predict", SEVEN, "image/png")
    assert reply.status == 200
    assert reply.json()["results"][0]["top_k"][0]["label"] == "7"
    # Unpreprocessed, the container's probabilities are the bundle's, run here with onnxruntime.
    raw = api.post("/predict?preprocess=none&top_k=10", SEVEN, "image/png").json()["results"][0]
    served = {entry["index"]: entry["probability"] for entry in raw["top_k"]}
    expected = Reference().run_png(SEVEN)["probabilities"]
    np.testing.assert_allclose([served[i] for i in range(10)], expected, atol=1e-6)


def test_dream_returns_a_png(api):
    photo = (ROOT / "examples" / "photo.jpg").read_bytes()
    reply = api.post("/dream?targets=conv2&octaves=2&steps=5", photo, "image/jpeg")
    assert reply.status == 200 and reply.mimetype == "image/png"
    dream = Image.open(io.BytesIO(reply.body))
    assert dream.format == "PNG" and dream.size == Image.open(ROOT / "examples" / "photo.jpg").size


def test_metrics_scrape_counts_the_requests(api):
    api.post("/predict", SEVEN, "image/png")
    reply = api.get("/metrics")
    assert reply.status == 200
    samples = [s for family in text_string_to_metric_families(reply.body.decode())
               for s in family.samples]
    predicted = sum(s.value for s in samples if s.name == "cnnlens_http_requests_total"
                    and s.labels.get("endpoint") == "/predict" and s.labels.get("status") == "200")
    assert predicted >= 1


def test_the_healthcheck_passes(stack):
    (api,) = stack.containers("api")
    assert "Healthcheck" in inspect(api)["Config"], "the image lost its HEALTHCHECK (OCI format?)"
    # No systemd here to run the timer: podman runs the image's check on demand.
    assert podman("healthcheck", "run", api, check=False).returncode == 0
    assert inspect(api)["State"]["Health"]["Status"] == "healthy"


def test_the_api_runs_unprivileged_on_a_read_only_root(stack):
    (api,) = stack.containers("api")
    config = inspect(api)
    assert config["HostConfig"]["ReadonlyRootfs"] is True
    assert podman("exec", api, "id", "-u").stdout.strip() == "10001"
    write = podman("exec", api, "touch", "/app/written", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    models = podman("exec", api, "touch", "/models/written", check=False)
    assert models.returncode != 0 and "Read-only file system" in models.stderr
    assert podman("exec", api, "touch", "/tmp/written").returncode == 0     # tmpfs


def test_the_serving_image_adds_at_most_200_mb(stack):
    """No torch, build tools, caches or tests in the layers cnn-lens adds to its base image."""
    base = stack.env.get("PYTHON_IMAGE", "python:3.11-slim-bookworm")
    assert added_bytes(API_IMAGE, base) <= 200e6


class _Load(threading.Thread):
    """Four clients posting the seven to the default model until stopped: (status, error)."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base, self.stop, self.replies = base, threading.Event(), []

    def run(self):
        workers = [threading.Thread(target=self._client) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _client(self):
        client = Client(self.base)
        while not self.stop.is_set():
            try:
                self.replies.append((client.post("/predict", SEVEN, "image/png").status, None))
            except OSError as error:   # a refused or reset connection is a failed request too
                self.replies.append((0, repr(error)))


def _models(api) -> list[str]:
    return [model["name"] for model in api.get("/models").json()["models"]]


def test_a_bundle_trained_in_the_trainer_container_is_served_after_sighup(stack, api):
    """The documented workflow: `--profile train run --rm trainer build` writes a bundle into the
    shared volume, `kill -s HUP api` makes every worker serve it, and no request fails meanwhile.
    CI builds the trainer with torch from this machine's wheelhouse (CNNLENS_TORCH_WHEELHOUSE);
    elsewhere it comes from the Dockerfile's default, PyTorch's CPU index."""
    directory = os.environ.get("CNNLENS_TORCH_WHEELHOUSE")
    with wheelhouse(Path(directory)) if directory else nullcontext() as url:
        stack("--profile", "train", "build", "trainer", timeout=1500,
              env={"TORCH_FIND_LINKS": url} if url else None)
    stack("--profile", "train", "run", "--rm", "trainer", "build", "--out", "/models/mnist-v2",
          "--name", "mnist-v2", "--epochs", "1", "--limit", "500", timeout=900)
    assert _models(api) == ["mnist-cnn"]       # not served before the reload

    load = _Load(stack.base)
    load.start()
    time.sleep(1.0)
    stack("kill", "-s", "HUP", "api")
    deadline = time.monotonic() + 60
    while "mnist-v2" not in _models(api) and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(1.0)
    load.stop.set()
    load.join(timeout=30)

    assert sorted(_models(api)) == ["mnist-cnn", "mnist-v2"]
    failed = [reply for reply in load.replies if reply[0] != 200]
    assert len(load.replies) > 50 and not failed, (len(load.replies), failed[:5])
    # Every worker has it: enough requests that both of gunicorn's workers answer some.
    for _ in range(20):
        reply = api.post("/predict?model=mnist-v2", SEVEN, "image/png")
        assert reply.status == 200 and reply.json()["model"]["name"] == "mnist-v2"


def test_down_leaves_nothing(stack):
    assert stack.containers("api", every=False)
    stack("down", "-v", timeout=120)
    assert stack.containers() == []
    assert stack.volumes() == []
