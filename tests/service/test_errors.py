"""Every class of bad input gets its documented 4xx as application/problem+json, never a 500."""
from __future__ import annotations

import base64
import json
import logging

import pytest

from service import create_app
from tests.service import imagefiles
from tests.service.conftest import LIMITS
from tests.service.http import InProcess, multipart

# Pillow warns between its limit (ours) and twice it; the service refuses those images anyway.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

PNG = imagefiles.encode(imagefiles.drawn_digit(imagefiles.SEVEN, size=(120, 100), width=8))
B64 = base64.b64encode(PNG).decode()


def _json(document) -> tuple[bytes, str]:
    return json.dumps(document).encode(), "application/json"


def _files(count: int) -> tuple[bytes, str]:
    boundary, body = multipart([PNG] * count)
    return body, f"multipart/form-data; boundary={boundary}"


def _big_files() -> tuple[bytes, str]:
    boundary, body = multipart([b"\0" * LIMITS["max_request_bytes"]])
    return body, f"multipart/form-data; boundary={boundary}"


BAD_UPLOADS = {   # name: (body, content type, status)
    "empty body": (b"", None, 400),
    "empty png": (b"", "image/png", 400),
    "truncated png": (PNG[:len(PNG) // 2], "image/png", 422),
    "text labelled png": (b"hello, I am not a picture", "image/png", 422),
    "jpeg bytes labelled png but broken": (b"\xff\xd8\xff\xe0" + b"\0" * 40, "image/jpeg", 422),
    "huge dimensions": (imagefiles.png_header_only(20_000, 20_000), "image/png", 413),
    "just over the pixel limit": (imagefiles.png_header_only(1001, 1000), "image/png", 413),
    "too many files": (*_files(LIMITS["max_batch"] + 1), 413),
    "too many json images": (*_json({"images": [B64] * (LIMITS["max_batch"] + 1)}), 413),
    "bad base64": (*_json({"image": "not base64 at all!"}), 400),
    "base64 of text": (*_json({"image": base64.b64encode(b"text").decode()}), 422),
    "json image not a string": (*_json({"image": 7}), 400),
    "json list empty": (*_json({"images": []}), 400),
    "json without image": (*_json({"picture": B64}), 400),
    "json array": (*_json([B64]), 400),
    "invalid json": (b"{not json", "application/json", 400),
    "unsupported type": (PNG, "text/plain", 415),
    "multipart without file": (*_files(0), 400),
    "body over the byte limit": (b"\0" * (LIMITS["max_request_bytes"] + 1), "image/png", 413),
    "json over the byte limit": (*_json({"image": "A" * LIMITS["max_request_bytes"]}), 413),
    "multipart over the byte limit": (*_big_files(), 413),
}

BAD_PARAMETERS = {   # query: status
    "/predict?top_k=NaN": 400, "/predict?top_k=-1": 422, "/predict?top_k=11": 422,
    "/predict?top_k=99999999999999999999": 422, "/predict?top_k=2.5": 400,
    "/predict?activations=maybe": 400, "/predict?feature_maps=dense1": 422,
    "/predict?feature_maps=conv9": 422, "/predict?preprocess=fancy": 422,
    "/dream?steps=NaN": 400, "/dream?steps=-5": 422, "/dream?steps=100000": 422,
    "/dream?step_size=nan": 400, "/dream?step_size=inf": 400, "/dream?step_size=-0.1": 422,
    "/dream?octaves=0": 422, "/dream?octaves=99": 422, "/dream?octave_scale=1e308": 422,
    "/dream?jitter=1e3": 400, "/dream?seed=-1": 422, "/dream?time_budget=1000": 422,
    "/dream?width=100000&start=noise": 422, "/dream?height=0&start=noise": 422,
    "/dream?targets=conv9": 422, "/dream?targets=conv2:50": 422, "/dream?targets=class:10": 422,
    "/dream?targets=conv2:": 400, "/dream?targets=conv2*nan": 400, "/dream?targets=": 400,
    "/dream?targets=conv2,,conv1": 400, "/dream?targets=conv2*1e9": 400,
    "/dream?start=sky": 422,
}


def _assert_problem(reply, status: int) -> None:
    assert reply.status == status, reply.body
    assert reply.mimetype == "application/problem+json"
    problem = reply.json()
    assert problem["status"] == status and problem["type"] == "about:blank"
    assert problem["title"] and problem["detail"]
    assert "Traceback" not in problem["detail"]


@pytest.mark.parametrize("endpoint, case", [
    (endpoint, case) for endpoint in ("/predict", "/dream") for case in BAD_UPLOADS
    # For /dream no body at all is not an error: it starts from noise.
    if (endpoint, case) != ("/dream", "empty body")])
def test_bad_upload(api, endpoint, case):
    body, content_type, status = BAD_UPLOADS[case]
    _assert_problem(api.post(endpoint, body, content_type), status)


@pytest.mark.parametrize("query", list(BAD_PARAMETERS))
def test_bad_parameter(api, query):
    _assert_problem(api.post(query, PNG, "image/png"), BAD_PARAMETERS[query])


def test_dream_image_larger_than_its_side_limit(api):
    big = imagefiles.encode(imagefiles.photo_like(LIMITS["max_dream_side"] + 1, 40))
    _assert_problem(api.post("/dream", big, "image/png"), 422)


def test_dream_image_smaller_than_the_models_conv_layers_take(api):
    """The manifest's min_side: 8 for the lecture net (3x3 conv, pool, 3x3 conv)."""
    reply = api.post("/dream", imagefiles.encode(imagefiles.photo_like(7, 40)), "image/png")
    _assert_problem(reply, 422)
    assert "at least 8 pixels" in reply.json()["detail"]
    assert api.post("/dream?steps=2", imagefiles.encode(imagefiles.photo_like(8, 40)), "image/png").status == 200
    assert api.post("/dream?start=noise&width=7").status == 422


def test_filters_scale_bounds(api):
    _assert_problem(api.get("/filters/conv1/0?scale=0"), 422)
    _assert_problem(api.get(f"/filters/conv1/0?scale={LIMITS['max_scale'] + 1}"), 422)
    _assert_problem(api.get("/filters/conv1/weights?scale=x"), 400)


@pytest.mark.parametrize("method, path", [("GET", "/predict"), ("GET", "/dream"),
                                          ("DELETE", "/filters"), ("PUT", "/filters/conv1/0"),
                                          ("POST", "/healthz")])
def test_wrong_method_is_405_with_allow(api, method, path):
    reply = api.request(method, path)
    _assert_problem(reply, 405)
    assert reply.headers["allow"]


def test_unknown_route_is_404(api):
    _assert_problem(api.get("/no/such/thing"), 404)


def test_unexpected_error_is_a_500_without_internals(settings, caplog):
    app = create_app(settings)

    def broken():
        raise RuntimeError("secret internal state")
    app.add_url_rule("/broken", view_func=broken)
    with caplog.at_level(logging.ERROR):
        reply = InProcess(app).get("/broken")
    _assert_problem(reply, 500)
    assert "secret" not in reply.body.decode()
    assert "secret internal state" in caplog.text      # ... but the log has it
