"""GET /metrics and the JSON access log: request ids, one log line per request, counters that move
by exactly the requests made, on Flask's test client and on a real gunicorn with two workers whose
metrics are merged whichever worker answers the scrape."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service import create_app, observability
from service.settings import Settings
from tests.service.conftest import LIMITS, ROOT, gunicorn_env, json_lines, serving
from tests.service.http import Client, InProcess
from tests.service.imagefiles import mnist_png
from tests.service.reference import MODEL_DIR

AUTH = {"Authorization": "Bearer t0ken"}
LOG_FIELDS = {"timestamp", "level", "method", "path", "status", "duration_ms", "model",
              "request_id", "remote_addr", "bytes"}


def samples(text: str) -> list:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(text: str, name: str, **labels) -> float:
    """The sum of the samples called `name` whose labels include `labels` (over workers too)."""
    return sum(s.value for s in samples(text) if s.name == name
               and all(s.labels.get(k) == v for k, v in labels.items()))


def scrape(client) -> str:
    reply = client.get("/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return reply.body.decode()


@pytest.fixture()
def flask_api(app, contract) -> InProcess:
    return InProcess(app, contract)


# ------------------------------------------------------------------ Flask's test client


@pytest.mark.parametrize("given, kept", [("abc-123", True), ("a" * 128, True),
                                         ("trace id/7:x=y", True), ("a" * 129, False),
                                         ("", False), (" ", False), ("naïve", False),
                                         ("tab\there", False)])
def test_a_request_id_is_kept_if_valid_and_generated_otherwise(flask_api, given, kept):
    echoed = flask_api.get("/healthz", headers={"X-Request-ID": given}).headers["x-request-id"]
    if kept:
        assert echoed == given
    else:
        assert echoed != given and len(echoed) == 32 and int(echoed, 16) >= 0


def test_every_response_echoes_a_request_id_errors_too(flask_api):
    generated = {flask_api.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(generated) == 3 and all(len(rid) == 32 for rid in generated)
    replies = [flask_api.get("/nowhere", headers={"X-Request-ID": "r-404"}),
               flask_api.request("DELETE", "/predict", headers={"X-Request-ID": "r-405"}),
               flask_api.post("/predict", b"hello", "text/plain",
                              headers={"X-Request-ID": "r-415"}),
               flask_api.post("/predict", b"x" * (LIMITS["max_request_bytes"] + 1), "image/png",
                              headers={"X-Request-ID": "r-413"}),
               flask_api.get("/filters/conv9", headers={"X-Request-ID": "r-404b"})]
    assert [(r.status, r.headers["x-request-id"]) for r in replies] == [
        (404, "r-404"), (405, "r-405"), (415, "r-415"), (413, "r-413"), (404, "r-404b")]
    assert all(r.mimetype == "application/problem+json" for r in replies)


def test_one_json_log_line_per_request_with_its_fields(flask_api, digits, capsys):
    capsys.readouterr()
    png = mnist_png(digits[0][0])
    sent = datetime.now(timezone.utc).replace(microsecond=0)
    flask_api.post("/predict?top_k=2", png, "image/png", headers={"X-Request-ID": "log-1"})
    flask_api.get("/filters/conv1?model=mnist-cnn", headers={"X-Request-ID": "log-2"})
    flask_api.get("/nowhere", headers={"X-Request-ID": "log-3"})
    lines = json_lines(capsys.readouterr().out)
    assert [line["request_id"] for line in lines] == ["log-1", "log-2", "log-3"]
    first, second, third = lines
    assert LOG_FIELDS <= set(first)
    assert (first["method"], first["path"], first["status"], first["level"]) == \
        ("POST", "/predict", 200, "info")
    assert first["model"] == "mnist-cnn" and first["remote_addr"] == "127.0.0.1"
    assert first["bytes"] > 0 and first["duration_ms"] > 0
    stamp = first["timestamp"]
    assert len(stamp) == len("2026-12-05T06:31:17.123Z") and stamp.endswith("Z")
    assert sent <= datetime.fromisoformat(stamp) <= datetime.now(timezone.utc)
    assert (second["path"], second["model"], second["endpoint"]) == \
        ("/filters/conv1", "mnist-cnn", "/filters/<layer>")
    assert (third["status"], third["endpoint"]) == (404, "unmatched")


@pytest.mark.parametrize("seconds", [0, 1_733_380_277, 1_733_380_277, 1_733_380_278, 1_733_380_276,
                                     4_102_444_799])
def test_log_timestamps_are_utc_to_the_millisecond_as_datetime_writes_them(seconds):
    """The same second twice (its text is kept), the next, one back (a clock stepped back)."""
    for nanoseconds in (0, 1, 999_999, 1_000_000, 123_456_789, 999_999_999):
        expected = (datetime.fromtimestamp(seconds, timezone.utc)
                    + timedelta(microseconds=nanoseconds // 1000))
        assert observability.timestamp(seconds * 10**9 + nanoseconds) == \
            expected.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_generated_request_ids_are_unique_and_differ_in_a_forked_worker():
    ids = {observability.request_id(None) for _ in range(100_000)}
    assert len(ids) == 100_000 and all(len(rid) == 32 and int(rid, 16) >= 0 for rid in ids)
    # a worker forked from a process that has made ids must not make the same ones after it
    script = ("import os; from service.observability import request_id; request_id(None); "
              "reader, writer = os.pipe(); child = os.fork()\n"
              "if child == 0: os.write(writer, request_id(None).encode()); os._exit(0)\n"
              "os.waitpid(child, 0); print(os.read(reader, 64).decode(), request_id(None))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    in_child, in_parent = result.stdout.split()
    assert len(in_child) == len(in_parent) == 32 and in_child != in_parent


def test_a_500_is_logged_counted_and_echoes_its_request_id(capsys):
    app = create_app(Settings(models_dir=MODEL_DIR, **LIMITS))

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    client = InProcess(app)   # /boom is not in the API's document
    before = scrape(client)
    capsys.readouterr()
    reply = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert reply.status == 500 and reply.mimetype == "application/problem+json"
    assert reply.headers["x-request-id"] == "boom-1" and b"a bug" not in reply.body
    [line] = json_lines(capsys.readouterr().out)
    assert (line["request_id"], line["status"], line["level"]) == ("boom-1", 500, "error")
    after = scrape(client)
    name = "cnnlens_http_requests_total"
    assert value(after, name, endpoint="/boom", status="500") - \
        value(before, name, endpoint="/boom", status="500") == 1


def test_counters_move_by_exactly_the_requests_made(flask_api, digits):
    png = mnist_png(digits[0][0])
    before = scrape(flask_api)
    for _ in range(3):
        assert flask_api.post("/predict", png, "image/png").status == 200
    assert flask_api.post_files("/predict", [png, png]).status == 200
    assert flask_api.post("/predict", b"hello", "text/plain").status == 415
    assert flask_api.get("/filters/conv1/3").status == 200
    assert flask_api.get("/nowhere/at/all").status == 404
    dream = flask_api.post("/dream?targets=conv2&start=noise&steps=7")
    assert dream.status == 200 and dream.headers["x-dream-steps-done"] == "7"
    after = scrape(flask_api)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "cnnlens_http_requests_total"
    assert moved(requests, endpoint="/predict", method="POST", status="200") == 4
    assert moved(requests, endpoint="/predict", method="POST", status="415") == 1
    assert moved(requests, endpoint="/filters/<layer>/<item>", method="GET", status="200") == 1
    assert moved(requests, endpoint="unmatched", status="404") == 1
    assert moved(requests, endpoint="/dream", status="200") == 1
    assert moved(requests, endpoint="/metrics") == 1   # the first scrape; a scrape omits itself
    assert moved(requests) == 9
    assert moved("cnnlens_http_request_duration_seconds_count", endpoint="/predict") == 5
    assert moved("cnnlens_inference_duration_seconds_count", model="mnist-cnn") == 4
    assert moved("cnnlens_images_processed_total", model="mnist-cnn", endpoint="/predict") == 5
    assert moved("cnnlens_images_processed_total", model="mnist-cnn", endpoint="/dream") == 1
    assert moved("cnnlens_dream_steps_total", model="mnist-cnn") == 7
    # every step, and the objective before and after
    assert moved("cnnlens_gradient_step_duration_seconds_count", model="mnist-cnn") == 9
    buckets = [s for s in samples(after) if s.name == "cnnlens_inference_duration_seconds_bucket"]
    assert {s.labels["le"] for s in buckets} >= {"0.0001", "0.001", "1.0", "+Inf"}


def test_loads_reloads_failures_and_the_served_versions(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODEL_DIR, models / "mnist-cnn")
    second = models / "second"
    shutil.copytree(MODEL_DIR, second)

    def set_version(version: str, corrupt: bool = False):
        manifest = json.loads((second / "manifest.json").read_text())
        (second / "manifest.json").write_text(json.dumps(manifest | {"name": "mnist-b",
                                                                     "version": version}))
        if corrupt:
            (second / "model.onnx").write_bytes(b"not onnx")

    set_version("7")
    before = scrape(InProcess(create_app(Settings(models_dir=MODEL_DIR, **LIMITS))))
    client = InProcess(create_app(Settings(models_dir=models, admin_token="t0ken", **LIMITS)))
    started = scrape(client)
    assert value(started, "cnnlens_model_info", model="mnist-b", version="7") == 1
    set_version("8", corrupt=True)
    assert client.post("/admin/reload", headers=AUTH).json()["rejected"]
    shutil.rmtree(second)
    shutil.copytree(MODEL_DIR, second)
    set_version("8")
    assert client.post("/admin/reload", headers=AUTH).json()["loaded"] == ["mnist-b"]
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    # start-up loaded both; the broken bundle was rejected (named by its directory); 8 loaded
    assert moved("cnnlens_model_loads_total", model="mnist-b", outcome="loaded") == 2
    assert moved("cnnlens_model_loads_total", model="mnist-cnn", outcome="loaded") == 1
    assert moved("cnnlens_model_loads_total", model="second", outcome="rejected") == 1
    assert moved("cnnlens_model_reloads_total", outcome="ok") == 2
    assert moved("cnnlens_model_reloads_total", outcome="partial") == 1
    assert value(after, "cnnlens_model_info", model="mnist-b", version="7") == 0
    assert value(after, "cnnlens_model_info", model="mnist-b", version="8") == 1
    assert value(after, "cnnlens_model_info", model="mnist-cnn", version="1") == 1
    shutil.rmtree(models)
    assert client.post("/admin/reload", headers=AUTH).status == 500   # no models directory
    after = scrape(client)
    assert moved("cnnlens_model_reloads_total", outcome="failed") == 1


# ------------------------------------------------------------------ a real gunicorn, 2 workers


def _pids(text: str, name: str = "cnnlens_model_info") -> set[str]:
    return {s.labels["pid"] for s in samples(text) if s.name == name and s.value == 1}


def _both_workers_up(client, seconds: float = 30) -> str:
    """A scrape once both workers have loaded their models (/readyz answers after the first)."""
    deadline = time.monotonic() + seconds
    while len(_pids(text := scrape(client))) < 2:
        assert time.monotonic() < deadline, f"the second worker did not start:\n{text}"
        time.sleep(0.2)
    return text


def test_metrics_add_up_every_worker_on_gunicorn(tmp_path, digits):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale junk from an earlier run")   # wiped at start
    log = tmp_path / "gunicorn.log"
    env = gunicorn_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), CNNLENS_WORKERS="2",
                       CNNLENS_THREADS="2")
    png = mnist_png(digits[0][0])
    with serving(env, log) as (process, base):
        client = Client(base)
        before = _both_workers_up(client)
        # service.check's loads (in the master's child) are not counted: one per worker
        assert value(before, "cnnlens_model_loads_total", model="mnist-cnn", outcome="loaded") == 2
        workers = _pids(before)

        ids = [f"req-{n}-{uuid.uuid4().hex[:8]}" for n in range(24)]
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda rid: client.post("/predict", png, "image/png",
                                                             headers={"X-Request-ID": rid}), ids))
        assert [(r.status, r.headers["x-request-id"]) for r in statuses] == [(200, i) for i in ids]
        dream = client.post("/dream?targets=conv2&start=noise&steps=5",
                            headers={"X-Request-ID": "dream-1"})
        assert dream.status == 200

        scrapes = [scrape(client) for _ in range(6)]
        name = "cnnlens_http_requests_total"
        for text in scrapes:   # whichever worker answers, the sum over workers is the same
            assert value(text, name, endpoint="/predict", status="200") - \
                value(before, name, endpoint="/predict", status="200") == len(ids)
            assert value(text, "cnnlens_inference_duration_seconds_count") - \
                value(before, "cnnlens_inference_duration_seconds_count") == len(ids)
            assert value(text, "cnnlens_dream_steps_total", model="mnist-cnn") - \
                value(before, "cnnlens_dream_steps_total", model="mnist-cnn") == 5
            assert value(text, "cnnlens_images_processed_total", endpoint="/predict") - \
                value(before, "cnnlens_images_processed_total", endpoint="/predict") == len(ids)

        # a worker that dies takes its live gauge along; its counters stay in the totals
        victim = sorted(workers)[0]
        os.kill(int(victim), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in _pids(text := scrape(client)) or len(_pids(text)) < 2:
            assert time.monotonic() < deadline, f"no replacement worker:\n{text}"
            time.sleep(0.3)
        assert value(text, name, endpoint="/predict", status="200") - \
            value(before, name, endpoint="/predict", status="200") == len(ids)

    lines = json_lines(log.read_text())
    by_id = {}
    for line in lines:
        by_id.setdefault(line["request_id"], []).append(line)
    for rid in ids:
        [line] = by_id[rid]
        assert (line["method"], line["path"], line["status"], line["model"]) == \
            ("POST", "/predict", 200, "mnist-cnn")
    assert by_id["dream-1"][0]["path"] == "/dream"
    assert len({line["pid"] for rid in ids for line in by_id[rid]}) == 2, "one worker took all"
    assert "HTTP/1.1\"" not in log.read_text()   # no plain gunicorn access log beside the JSON


def test_the_shared_server_runs_in_multiprocess_mode(server):
    """The server of the other tests has no PROMETHEUS_MULTIPROC_DIR: gunicorn.conf.py makes one."""
    text = _both_workers_up(server)
    assert value(text, "cnnlens_model_loads_total", model="mnist-cnn", outcome="loaded") == 2
    assert len(_pids(text)) == 2
