"""Metrics (GET /metrics, Prometheus text format) and one structured JSON log line per request.

**Metrics across gunicorn workers.** Each worker is a process with its own counters, and a scrape
reaches one of them. With PROMETHEUS_MULTIPROC_DIR set, prometheus-client keeps every worker's
values in files there (gunicorn.conf.py makes the directory, fresh, before any worker starts, and
drops a dead worker's live gauges), and each scrape merges all of them in a fresh registry: the
answer does not depend on which worker gives it. Without it (Flask's test client, a plain
`create_app()`), the process's own default registry is served. prometheus_client decides between
the two when it is first imported, so the variable must be set before that: gunicorn's master
never imports this module (only the hook that drops dead workers imports prometheus_client, after
the directory is set).

**Labels stay bounded**: `endpoint` is the Flask URL rule (`/filters/<layer>/<item>`), never the
raw path, and "unmatched" for unknown routes and wrong methods; `model` is the name of a served
bundle (or, for a rejected one, its directory's name), never the `?model=` a client sent.
`/metrics` counts as a request like any other (the scrape rate and its latency are worth seeing,
and its endpoint label keeps it apart); a scrape does not include itself.

**Logs.** Every request, errors included, gets one JSON line on stdout; it replaces gunicorn's
access log, and gunicorn's error log on stderr keeps gunicorn's own lines and the service's
warnings and tracebacks. The line is written directly, not through `logging`, whose record,
handler lock and formatter took 6 % of the time a loaded /predict worker holds the GIL. Its `model`
is the model the request asked for (query or form), else the route's `{name}` (`/models/{name}`,
`/v2/models/{name}/...`), else the default model. The `X-Request-ID` a client sends is kept if
it is printable ASCII of at most 128 characters, else 32 random hex digits are made; either way
it is echoed on the response, 4xx and 500 included.
"""
from __future__ import annotations

import functools
import os
import random
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import orjson
from flask import Flask, Response, g, has_request_context, request
from prometheus_client import (CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, CollectorRegistry, Counter,
                               Gauge, Histogram, generate_latest, multiprocess)

from service.plumbing import openapi

blueprint = openapi.Documented("observability", __name__)
REQUEST_ID = "X-Request-ID"
_REQUEST_ID_KEY = "HTTP_X_REQUEST_ID"   # its WSGI environ key
UNMATCHED = "unmatched"   # the endpoint label of requests that match no route (404, 405)
_VALID_ID = re.compile(r"[!-~](?:[ -~]{0,126}[!-~])?")   # printable ASCII, <= 128, no edge spaces
_MAX_LOGGED = 512   # characters of a path or ?model= in a log line (one write stays atomic)

# Requests: a /filters image or a health probe takes well under a millisecond, a /predict of one
# digit a few, a batch or feature maps tens, a /dream up to its time budget (20 s by default).
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 20.0, 30.0, 60.0)
# One onnxruntime run: a 28x28 digit through model.onnx or one gradient step is ~0.1-1 ms on one
# thread; a batch of 64, or a gradient step on a 1024x1024 dream, takes up to about a second.
RUN_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
               1.0, 2.5, 5.0)

REQUESTS = Counter("cnnlens_http_requests", "HTTP requests answered, by URL rule, method and "
                   "status", ["endpoint", "method", "status"])
REQUEST_SECONDS = Histogram("cnnlens_http_request_duration_seconds",
                            "Time from the request's arrival in Flask to its response, by URL rule",
                            ["endpoint"], buckets=REQUEST_BUCKETS)
INFERENCE_SECONDS = Histogram("cnnlens_inference_duration_seconds",
                              "One model.onnx run on a batch (warm-up excluded), by model",
                              ["model"], buckets=RUN_BUCKETS)
GRADIENT_SECONDS = Histogram("cnnlens_gradient_step_duration_seconds",
                             "One gradient.onnx run (a step of /dream, and its first and last "
                             "objective), warm-up excluded, by model", ["model"],
                             buckets=RUN_BUCKETS)
IMAGES = Counter("cnnlens_images_processed", "Images run through a model: each image of a "
                 "/predict batch, each dreamed image", ["model", "endpoint"])
DREAM_STEPS = Counter("cnnlens_dream_steps", "Gradient-ascent steps done by /dream", ["model"])
MODEL_LOADS = Counter("cnnlens_model_loads", "Bundles loaded (new or changed, validated and "
                      "warmed up: outcome=loaded) or rejected (outcome=rejected), at start-up and "
                      "on reloads, in each worker", ["model", "outcome"])
RELOADS = Counter("cnnlens_model_reloads", "Scans of the models directory, the one at start-up "
                  "included: ok, partial (some bundle rejected) or failed (no scan possible)",
                  ["outcome"])
# One series per worker (label pid) in multiprocess mode: 'liveall' shows which version each live
# worker serves, which is what a reload across workers can get wrong (one worker left behind), and
# a dead worker's series go with it (gunicorn.conf.py's child_exit). 'max' would merge the workers
# and keep dead ones' values. A model no longer served by a process is set to 0 there, since a
# label set cannot be removed from the other processes' files.
MODEL_INFO = Gauge("cnnlens_model_info", "1 for each model name and version this process serves "
                   "(0: served before, not now)", ["model", "version"], multiprocess_mode="liveall")
_info_set: set[tuple[str, str]] = set()


# ---------------------------------------------------------------- the service's call sites


def observe_inference(model: str, images: int, seconds: float) -> None:
    _labelled(INFERENCE_SECONDS, model).observe(seconds)
    _labelled(IMAGES, model, _endpoint()).inc(images)


@functools.cache
def _labelled(metric, *labels: str):
    """metric.labels(*labels), kept: labels() converts and checks the values and takes the
    metric's lock on every call, for a child that never changes (label sets are bounded, above).
    For the metrics of every request and gradient step; reloads, rare, call labels() as it is."""
    return metric.labels(*labels)


@contextmanager
def gradient_step(model: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        _labelled(GRADIENT_SECONDS, model).observe(time.perf_counter() - start)


def dreamed(model: str, steps: int, images: int, endpoint: str | None = None) -> None:
    """`endpoint`: the request's, where its context is gone (the end of a streamed answer)."""
    _labelled(DREAM_STEPS, model).inc(steps)
    _labelled(IMAGES, model, endpoint or _endpoint()).inc(images)


def reloaded(report, served: list) -> None:
    """After a registry reload (report: a service.runtime.registry.ReloadReport; served: every
    Served now in use), or after one that failed before it could scan (report None)."""
    if report is None:
        RELOADS.labels("failed").inc()
        return
    RELOADS.labels("partial" if report.rejected else "ok").inc()
    for name in report.loaded:
        MODEL_LOADS.labels(name, "loaded").inc()
    for rejected in report.rejected:
        MODEL_LOADS.labels(Path(rejected["directory"]).name, "rejected").inc()
    now = {(s.bundle.name, str(s.bundle.manifest["version"])) for s in served}
    for labels in _info_set - now:
        MODEL_INFO.labels(*labels).set(0)
    for labels in now:
        MODEL_INFO.labels(*labels).set(1)
    _info_set.clear()
    _info_set.update(now)


def _endpoint() -> str:
    if not has_request_context():
        return "none"
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


# ---------------------------------------------------------------- GET /metrics


def multiprocess_dir() -> str | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and os.path.isdir(path) else None


@blueprint.get("/metrics")
def metrics():
    directory = multiprocess_dir()
    if directory:
        registry = CollectorRegistry()   # fresh per scrape: the files change between scrapes
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


@blueprint.openapi
def _openapi(served, models: list[str]) -> openapi.Part:
    """/metrics for /openapi.json."""
    return openapi.Part(paths={"/metrics": {"get": {
        "summary": "Prometheus metrics, merged over every gunicorn worker",
        "responses": {"200": {
            "description": "Prometheus text exposition format 0.0.4",
            "headers": {REQUEST_ID: {"schema": {"type": "string", "maxLength": 128}, "required": True,
                                     "description": "echoed on every response of this API: the "
                                                    "client's if printable ASCII of at most 128 "
                                                    "characters, else generated"}},
            "content": {"text/plain": {"schema": {"type": "string"}}}}}}}})


# ---------------------------------------------------------------- per-request hooks and logs


def register(app: Flask, default_model: str) -> None:
    """Request ids, the JSON access log and the request metrics on every request; GET /metrics.
    A request that names no model is logged with `default_model`."""
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(functools.partial(_teardown, default_model=default_model))
    app.register_blueprint(blueprint)


class _Trace:
    """What the log line and the metrics of one request need, kept on g from its start."""
    __slots__ = ("start", "request_id", "status", "size")

    def __init__(self, start: float, request_id: str):
        self.start, self.request_id = start, request_id
        self.status, self.size = 500, None   # until a response is made


def request_id(given: str | None) -> str:
    """`given` if valid, else 128 random bits in hex: from `random`, not uuid4's os.urandom, whose
    syscall lets go of the GIL and then waits for it behind the worker's other threads (a request
    id needs to be unique, not unguessable; `random` reseeds itself in a forked worker)."""
    if given is not None and _VALID_ID.fullmatch(given):
        return given
    return f"{random.getrandbits(128):032x}"


def _before() -> None:
    g.cnnlens = _Trace(time.perf_counter(), request_id(request.environ.get(_REQUEST_ID_KEY)))


def _after(response: Response) -> Response:
    trace = g.get("cnnlens")
    response.headers[REQUEST_ID] = trace.request_id if trace else request_id(None)
    if trace:
        trace.status, trace.size = response.status_code, response.content_length
    return response


def _teardown(error: BaseException | None, default_model: str) -> None:
    trace, asked = g.get("cnnlens"), g.get("requested_model")
    req = request._get_current_object()   # once: each access through the proxy costs ~0.8 µs
    seconds = time.perf_counter() - trace.start if trace else 0.0
    status, size = (trace.status, trace.size) if trace else (500, None)
    endpoint = _endpoint()
    _labelled(REQUESTS, endpoint, req.method, str(status)).inc()
    _labelled(REQUEST_SECONDS, endpoint).observe(seconds)
    model = asked or (req.args["model"] if "model" in req.args else None) \
        or (req.view_args or {}).get("name") or default_model
    _log_line("error" if status >= 500 else "info", {
        "method": req.method, "path": req.path[:_MAX_LOGGED], "status": status,
        "duration_ms": round(seconds * 1000, 3), "model": (model or "")[:_MAX_LOGGED] or None,
        "request_id": trace.request_id if trace else None, "remote_addr": req.remote_addr,
        "bytes": size, "endpoint": endpoint, "pid": os.getpid()})


def _log_line(level: str, fields: dict) -> None:
    """One JSON object on one line of stdout: timestamp (UTC, ms), level, then `fields`. Written
    by one call and flushed, so that lines from a worker's threads never interleave and a
    container's log shows each request as it ends. sys.stdout is looked up at each write (pytest
    swaps it per test)."""
    stamp = timestamp(time.time_ns())
    line = orjson.dumps({"timestamp": stamp, "level": level} | fields).decode() + "\n"
    out = sys.stdout
    out.write(line)
    out.flush()


_second: tuple[int, str] = (-1, "")   # the last second stamped, and its text


def timestamp(nanoseconds: int) -> str:
    """A time.time_ns() as UTC ISO 8601 to the millisecond, e.g. 2026-12-05T06:31:17.123Z: the
    date and time of day formatted once a second (datetime's isoformat took 2.8 µs a line; this
    takes 0.6)."""
    global _second
    whole, rest = divmod(nanoseconds, 1_000_000_000)
    second = _second   # read once: another thread may replace it meanwhile
    if second[0] != whole:
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{rest // 1_000_000:03d}Z"
