"""Settings, startup on a good or bad bundle, health endpoints, and no torch in the service."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from lens.bundle import BundleError
from service import create_app
from service.settings import Settings, SettingsError
from tests.service.conftest import ROOT, gunicorn, gunicorn_env, serving
from tests.service.http import Client
from tests.service.reference import MODEL_DIR


def test_settings_defaults_and_environment():
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env({"CNNLENS_MAX_BATCH": "8", "CNNLENS_DREAM_TIME_BUDGET": "2.5",
                                  "CNNLENS_MODELS_DIR": "/somewhere", "CNNLENS_BIND": "0.0.0.0:80"})
    assert (settings.max_batch, settings.dream_time_budget) == (8, 2.5)
    assert str(settings.models_dir) == "/somewhere" and settings.bind == "0.0.0.0:80"


@pytest.mark.parametrize("variable, value", [("CNNLENS_MAX_BATCH", "0"),
                                             ("CNNLENS_MAX_BATCH", "100000"),
                                             ("CNNLENS_MAX_PIXELS", "lots"),
                                             ("CNNLENS_DREAM_TIME_BUDGET", "nan"),
                                             ("CNNLENS_WORKERS", "-1")])
def test_bad_settings_name_the_variable(variable, value):
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_gunicorn_timeout_must_outlast_a_dream():
    with pytest.raises(SettingsError, match="CNNLENS_TIMEOUT"):
        Settings.from_env({"CNNLENS_DREAM_TIME_BUDGET": "120"})
    assert Settings.from_env({"CNNLENS_DREAM_TIME_BUDGET": "120", "CNNLENS_TIMEOUT": "130"})


def test_health_and_readiness(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz").json()
    assert ready["status"] == "ready" and ready["default"] == "mnist-cnn"
    assert [model["name"] for model in ready["models"]] == ["mnist-cnn"]


@pytest.fixture()
def broken_bundle(tmp_path):
    """A copy of the bundle whose model.onnx lost its last byte."""
    copy = tmp_path / "bundle"
    shutil.copytree(MODEL_DIR, copy)
    model = copy / "model.onnx"
    model.write_bytes(model.read_bytes()[:-1])
    return copy


def test_a_bad_bundle_stops_create_app(broken_bundle):
    with pytest.raises(BundleError, match="model.onnx"):
        create_app(Settings(models_dir=broken_bundle))


def _start_fails(tmp_path, **env) -> str:
    """gunicorn's log of a start that must fail: non-zero exit, no worker, no traceback, and one
    line saying why (returned)."""
    log = tmp_path / "log"
    with open(log, "wb") as out:
        process = gunicorn(gunicorn_env(CNNLENS_BIND="127.0.0.1:0", **env), out)
    try:
        code = process.wait(timeout=30)
    finally:
        process.kill()
    text = log.read_text()
    assert code != 0
    assert "Traceback" not in text and "Booting worker" not in text
    lines = [line for line in text.splitlines() if "cnn-lens cannot start" in line]
    assert len(lines) == 1, text
    return lines[0]


def test_a_bad_bundle_stops_gunicorn_with_one_line(broken_bundle, tmp_path):
    line = _start_fails(tmp_path, CNNLENS_MODELS_DIR=str(broken_bundle))
    assert line.startswith(f"cnn-lens cannot start: {broken_bundle / 'model.onnx'}:")


def test_a_missing_or_non_directory_models_dir_stops_gunicorn(tmp_path):
    for path, problem in ((tmp_path / "nowhere", "does not exist"),
                          (ROOT / "README.md", "not a directory")):
        line = _start_fails(tmp_path, CNNLENS_MODELS_DIR=str(path))
        assert line == f"cnn-lens cannot start: {path}: {problem} (CNNLENS_MODELS_DIR)"


def test_a_setting_out_of_bounds_stops_gunicorn_with_one_line(tmp_path):
    line = _start_fails(tmp_path, CNNLENS_MAX_BATCH="0")
    assert line == "cnn-lens cannot start: CNNLENS_MAX_BATCH=0 is outside [1, 1024]"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a directory whatever its mode")
def test_an_unreadable_models_dir_stops_gunicorn(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODEL_DIR, models / "mnist-cnn")
    models.chmod(0)
    try:
        line = _start_fails(tmp_path, CNNLENS_MODELS_DIR=str(models))
    finally:
        models.chmod(0o755)
    assert line == f"cnn-lens cannot start: {models}: Permission denied"


def test_a_metrics_dir_that_cannot_be_written_stops_gunicorn(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _start_fails(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(blocker / "metrics"))
    assert line.endswith(f"PROMETHEUS_MULTIPROC_DIR={blocker / 'metrics'}: cannot write the "
                         "workers' metrics there (Not a directory)")


@pytest.fixture()
def full_disk(tmp_path):
    """A tmpfs of 8 KiB: smaller than one metrics file. Mounting needs root (CAP_SYS_ADMIN)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_metrics_disk_stops_gunicorn(full_disk, tmp_path):
    line = _start_fails(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(full_disk / "metrics"))
    assert line.endswith("cannot write the workers' metrics there (No space left on device)")


def test_a_metrics_dir_that_does_not_exist_yet_is_made(tmp_path):
    metrics = tmp_path / "new" / "metrics"
    with serving(gunicorn_env(PROMETHEUS_MULTIPROC_DIR=str(metrics)), tmp_path / "log") as (_, base):
        assert Client(base).get("/metrics").status == 200
    assert metrics.is_dir()


def test_the_service_never_imports_torch():
    code = ("import sys; from service import create_app; from service.settings import Settings; "
            f"create_app(Settings(models_dir={str(MODEL_DIR)!r})); "
            "import service.wsgi; "
            "assert 'onnxruntime' in sys.modules; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "CNNLENS_MODELS_DIR": str(MODEL_DIR)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
