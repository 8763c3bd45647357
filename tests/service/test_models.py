"""The model repository and hot reload: several bundles, ?model=, /admin/reload, SIGHUP, and
reloads under a stream of requests on a real gunicorn with two workers."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from service import create_app
from service.settings import Settings
from tests.service.conftest import LIMITS, gunicorn_env, serving, wait_for
from tests.service.http import Client, InProcess
from tests.service.imagefiles import mnist_png
from tests.service.reference import MODEL_DIR

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _copy_bundle(models: Path, folder: str, name: str | None = None, version: str | None = None) -> Path:
    target = models / folder
    shutil.copytree(MODEL_DIR, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["name"] = name or manifest["name"]
    manifest["version"] = version or manifest["version"]
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def _set_version(bundle: Path, version: str) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["version"] = version
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _corrupt(bundle: Path) -> None:
    model = bundle / "model.onnx"
    model.write_bytes(model.read_bytes()[: len(model.read_bytes()) // 2])


@pytest.fixture()
def models(tmp_path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    _copy_bundle(folder, "mnist-cnn")
    _copy_bundle(folder, "second", name="mnist-b", version="7")
    return folder


def _client(models: Path, token: str = TOKEN) -> InProcess:
    return InProcess(create_app(Settings(models_dir=models, admin_token=token, **LIMITS)))


def _versions(client) -> dict[str, str]:
    return {m["name"]: m["version"] for m in client.get("/models").json()["models"]}


def test_every_bundle_is_served_under_its_name(models, digits):
    client = _client(models)
    listing = client.get("/models").json()
    assert listing["default"] == "mnist-cnn"
    assert [(m["name"], m["version"]) for m in listing["models"]] == [("mnist-b", "7"), ("mnist-cnn", "1")]
    assert listing["models"][0]["labels"] == [str(d) for d in range(10)]
    assert listing["models"][0]["metrics"]["test_accuracy"] >= 0.975
    png = mnist_png(digits[0][0])
    for model in ("mnist-cnn", "mnist-b"):
        reply = client.post("/predict?model=" + model, png, "image/png").json()
        assert reply["model"]["name"] == model
    assert client.get("/models/mnist-b").json()["version"] == "7"
    assert client.get("/filters/conv1?model=mnist-b").status == 200


@pytest.mark.parametrize("path", ["/predict?model=nope", "/predict?model=../mnist-cnn",
                                  "/predict?model=..%2F..%2Fetc", "/models/nope",
                                  "/models/..%2Fmnist-cnn", "/filters?model=%2E%2E",
                                  "/dream?model=mnist-cnn%00"])
def test_unknown_models_and_traversal_are_404(models, path, digits):
    client = _client(models)
    method = client.get if path.startswith(("/models", "/filters")) else (
        lambda p: client.post(p, mnist_png(digits[0][0]), "image/png"))
    reply = method(path)
    assert reply.status == 404 and reply.mimetype == "application/problem+json"


def test_admin_reload_needs_a_token_and_is_off_without_one(models):
    assert _client(models, token="").post("/admin/reload").status == 404
    client = _client(models)
    assert client.post("/admin/reload").status == 401
    reply = client.post("/admin/reload", headers={"Authorization": "Bearer wrong"})
    assert reply.status == 401 and reply.headers["www-authenticate"].startswith("Bearer")
    assert client.post("/admin/reload", headers={"Authorization": f"Basic {TOKEN}"}).status == 401


def test_reload_picks_up_new_changed_and_removed_bundles(models):
    client = _client(models)
    _copy_bundle(models, "third", name="mnist-c")
    _set_version(models / "second", "8")
    report = client.post("/admin/reload", headers=AUTH).json()
    assert sorted(report["loaded"]) == ["mnist-b", "mnist-c"] and report["unchanged"] == ["mnist-cnn"]
    assert _versions(client) == {"mnist-b": "8", "mnist-c": "1", "mnist-cnn": "1"}
    shutil.rmtree(models / "third")
    report = client.post("/admin/reload", headers=AUTH).json()
    assert report["removed"] == ["mnist-c"] and "mnist-c" not in _versions(client)


def test_a_broken_bundle_is_rejected_and_the_old_version_keeps_serving(models, digits):
    client = _client(models)
    _set_version(models / "second", "9")
    _corrupt(models / "second")
    report = client.post("/admin/reload", headers=AUTH).json()
    assert report["loaded"] == [] and "model.onnx" in report["rejected"][0]["reason"]
    assert _versions(client)["mnist-b"] == "7"
    reply = client.post("/predict?model=mnist-b", mnist_png(digits[0][0]), "image/png")
    assert reply.status == 200
    # a bundle whose name another bundle already has is rejected too
    _copy_bundle(models, "twin")
    report = client.post("/admin/reload", headers=AUTH).json()
    assert any("already served" in r["reason"] for r in report["rejected"])


class _Stream(threading.Thread):
    """Predictions sent one after another until stopped; records every status and version."""

    def __init__(self, base: str, png: bytes):
        super().__init__(daemon=True)
        self.client, self.png = Client(base), png
        self.replies: list[tuple[int, str | None]] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set() and len(self.replies) < 5000:
            try:
                reply = self.client.post("/predict?model=mnist-b", self.png, "image/png")
                version = reply.json()["model"]["version"] if reply.status == 200 else None
                self.replies.append((reply.status, version))
            except OSError as error:   # a refused or reset connection is a failed request too
                self.replies.append((0, repr(error)))


def _reloads_by_worker(log: Path, loaded: str) -> set[str]:
    """pids of the workers whose log says they loaded `loaded`."""
    pattern = re.compile(r"\[(\d+)\] \[INFO\] models reloaded: loaded \[" + re.escape(loaded))
    return set(pattern.findall(log.read_text()))


@pytest.mark.parametrize("trigger", ["admin", "sighup"])
def test_reload_under_load_in_every_worker(models, tmp_path, digits, trigger):
    """Two workers, a stream of requests: a new version replaces the old in both workers with no
    failed request, then a broken bundle is rejected and the new version keeps serving."""
    env = gunicorn_env(CNNLENS_MODELS_DIR=str(models), CNNLENS_ADMIN_TOKEN=TOKEN, CNNLENS_WORKERS="2")
    log = tmp_path / "gunicorn.log"
    with serving(env, log) as (process, base):
        client = Client(base)
        stream = _Stream(base, mnist_png(digits[0][0]))
        stream.start()
        time.sleep(0.5)

        def reload():
            if trigger == "admin":
                assert client.post("/admin/reload", headers=AUTH).status == 200
            else:
                os.kill(process.pid, signal.SIGHUP)

        _set_version(models / "second", "8")
        reload()
        assert wait_for(lambda: len(_reloads_by_worker(log, "'mnist-b'")) == 2, seconds=20), \
            log.read_text()
        # The one request in flight when both workers had swapped may still finish on the old
        # bundle (by design); every request after it sees the new one.
        seen_after = len(stream.replies) + 1
        time.sleep(1.0)
        assert {version for _, version in stream.replies[seen_after:]} == {"8"}

        _set_version(models / "second", "9")
        _corrupt(models / "second")
        reload()
        assert wait_for(lambda: log.read_text().count("model bundle rejected") >= 2, seconds=20), \
            log.read_text()
        time.sleep(1.0)
        stream.stop.set()
        stream.join(timeout=30)

    statuses = [status for status, _ in stream.replies]
    assert len(statuses) > 20 and set(statuses) == {200}, stream.replies[:5]
    versions = [version for _, version in stream.replies]
    assert versions[0] == "7" and versions[-1] == "8" and "9" not in versions


def test_repository_endpoints_match_the_openapi_document(api):
    """Checked against /openapi.json by the api fixture, on the test client and on gunicorn."""
    listing = api.get("/models").json()
    assert [m["name"] for m in listing["models"]] == ["mnist-cnn"]
    assert api.get("/models/mnist-cnn").json()["input"]["height"] == 28
    assert api.get("/models/other").status == 404
    assert api.post("/admin/reload").status == 404   # no token configured: off
