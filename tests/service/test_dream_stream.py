"""POST /dream with Accept: text/event-stream: progress, previews and the final frame, which is the
non-streamed answer to the byte; a client that goes away stops the dream and frees its slot."""
from __future__ import annotations

import base64
import http.client
import io
import json
import re
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from lens.optvis.render import Ascent
from service.endpoints import dream
from tests.service import imagefiles
from tests.service.conftest import gunicorn_env, serving, wait_for
from tests.service.http import InProcess

STREAM = {"Accept": "text/event-stream"}
PHOTO = imagefiles.encode(Image.new("RGB", (120, 90), (40, 90, 160)))
# 3 octaves of 12 steps at up to 120x90: long enough to see every kind of event
QUERY = "targets=conv2&octaves=3&steps=12&preview_every=5&seed=3"


def parse(body: bytes) -> list[tuple[str, dict]]:
    """(event name, data) of a text/event-stream body, checked against the format."""
    blocks = body.decode().split("\n\n")
    assert blocks[-1] == "", "an event stream ends with a blank line"
    events = []
    for block in blocks[:-1]:
        name, data = re.fullmatch(r"event: (\w+)\ndata: (.*)", block).groups()
        events.append((name, json.loads(data)))
    return events


def _png(base64_png: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(base64_png)))


@pytest.fixture(params=["flask", "gunicorn"])
def api(request):
    if request.param == "flask":
        return InProcess(request.getfixturevalue("app"))
    return request.getfixturevalue("server")


def test_the_stream_shows_every_octave_and_ends_with_the_non_streamed_png(api):
    reply = api.post(f"/dream?{QUERY}", PHOTO, "image/png", headers=STREAM)
    assert reply.status == 200 and reply.mimetype == "text/event-stream"
    assert reply.headers["cache-control"] == "no-cache"
    events = parse(reply.body)
    names = [name for name, _ in events]
    assert names[-1] == "result" and names.count("result") == 1 and "error" not in names

    progress = [data for name, data in events if name == "progress"]
    assert [p["steps_done"] for p in progress] == sorted({p["steps_done"] for p in progress})
    assert {p["total_steps"] for p in progress} == {36} and progress[-1]["steps_done"] == 36
    for octave in (1, 2, 3):      # each octave's first and last step at least
        steps = [p["step"] for p in progress if p["octave"] == octave]
        assert steps[0] == 1 and steps[-1] == 12
    assert all(p["octaves"] == 3 and np.isfinite(p["objective"]) for p in progress)

    previews = [data for name, data in events if name == "preview"]
    assert [p["steps_done"] for p in previews] == [5, 10, 15, 20, 25, 30, 35]
    assert {_png(p["image"]).size for p in previews} == {(120, 90)}
    # The picture evolves: later previews differ from earlier ones.
    first, last = (np.asarray(_png(p["image"]), float) for p in (previews[0], previews[-1]))
    assert np.abs(first - last).mean() > 1

    result = events[-1][1]
    png = api.post(f"/dream?{QUERY}", PHOTO, "image/png").body
    assert base64.b64decode(result["image"]) == png
    plain = api.post(f"/dream?{QUERY}", PHOTO, "image/png", headers={"Accept": "application/json"})
    assert result == plain.json()


def test_a_bad_request_is_a_problem_before_any_stream(api):
    reply = api.post("/dream?targets=conv9&steps=4", PHOTO, "image/png", headers=STREAM)
    assert reply.status == 422 and reply.mimetype == "application/problem+json"
    reply = api.post("/dream?preview_every=0", PHOTO, "image/png", headers=STREAM)
    assert reply.status == 422 and "preview_every" in reply.json()["detail"]


def test_a_dream_that_cannot_move_ends_with_an_error_event(api):
    grey = imagefiles.encode(Image.new("L", (28, 28), 128))
    reply = api.post("/dream?targets=conv2:1*0&steps=4&preprocess=none", grey, "image/png",
                     headers=STREAM)
    assert reply.status == 200
    name, problem = parse(reply.body)[-1]
    assert name == "error" and problem["status"] == 422 and "zero everywhere" in problem["detail"]


def test_a_client_gone_stops_the_ascent_before_its_next_step(app, monkeypatch):
    """The check runs between steps: the dream takes no step after the one it noticed."""
    taken = []
    original = Ascent.__iter__

    def counting(self):
        for progress in original(self):
            taken.append(progress.steps_done)
            yield progress

    monkeypatch.setattr(Ascent, "__iter__", counting)
    checks = iter([False, False, True])
    monkeypatch.setattr(dream.events, "client_gone", lambda environ: lambda: next(checks))
    reply = InProcess(app).post("/dream?targets=conv2&steps=50", PHOTO, "image/png", headers=STREAM)
    names = [name for name, _ in parse(reply.body)]
    assert taken == [1, 2, 3] and "result" not in names
    # ... and the slot is free again: the next dream gets one.
    assert InProcess(app).post("/dream?steps=2", PHOTO, "image/png").status == 200


def test_closing_the_connection_stops_the_dream_and_frees_the_slot(tmp_path):
    """On a real gunicorn with one worker and one gradient slot: while a streamed dream runs, a
    second dream is turned away (503); once its client closes the connection, the worker stops
    it early (its log says after how many steps) and the next dream gets the slot."""
    log = tmp_path / "gunicorn.log"
    env = gunicorn_env(CNNLENS_WORKERS="1", CNNLENS_MAX_CONCURRENT_GRADIENT="1",
                       CNNLENS_DREAM_TIME_BUDGET="300", CNNLENS_MAX_DREAM_STEPS="1000",
                       CNNLENS_MAX_DREAM_WORK="100000000", CNNLENS_TIMEOUT="320")
    with serving(env, log) as (_, base):
        host = urlsplit(base)
        connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        connection.request("POST", "/dream?targets=conv2&steps=1000&preview_every=1000",
                           body=PHOTO, headers={**STREAM, "Content-Type": "image/png"})
        stream = connection.getresponse()
        assert stream.status == 200
        for _ in range(3):             # a few steps are done: the dream is under way
            assert stream.readline().startswith(b"event: progress")
            stream.readline(), stream.readline()
        busy = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        busy.request("POST", "/dream?steps=2", body=PHOTO, headers={"Content-Type": "image/png"})
        assert busy.getresponse().status == 503
        stream.close()                 # the response's file holds the socket open too
        connection.close()

        stopped = re.compile(rb"dream stopped after (\d+) of 1000 steps: the client went away")
        assert wait_for(lambda: stopped.search(log.read_bytes()), seconds=30), log.read_text()
        assert int(stopped.search(log.read_bytes()).group(1)) < 1000
        after = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        after.request("POST", "/dream?steps=2", body=PHOTO, headers={"Content-Type": "image/png"})
        assert after.getresponse().status == 200


def test_the_document_describes_the_stream(app):
    document = InProcess(app).get("/openapi.json").json()
    answer = document["paths"]["/dream"]["post"]["responses"]["200"]
    assert "text/event-stream" in answer["content"]
    assert "progress" in answer["description"] and "preview_every" in answer["description"]
    names = {p["name"] for p in document["paths"]["/dream"]["post"]["parameters"]}
    assert "preview_every" in names
    assert {"DreamProgress", "DreamPreview"} <= set(document["components"]["schemas"])

