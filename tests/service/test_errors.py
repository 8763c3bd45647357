"""Every class of bad input gets its documented 4xx as application/problem+json, never a 500;
odd but decodable images get the right answer; and a real gunicorn that took every hostile input
still answers. Cases over parameters, methods and media types are generated from /openapi.json,
so new operations and parameters are covered without listing them here."""
from __future__ import annotations

import base64
import io
import itertools
import json
import logging
import re
import shutil
import socket
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from service import create_app
from service.settings import Settings
from tests.service import imagefiles
from tests.service.conftest import LIMITS, ROOT, gunicorn_env, served_document, serving
from tests.service.http import Client, InProcess, multipart
from tests.service.reference import MODEL_DIR

# Pillow warns between its limit (ours) and twice it; the service refuses those images anyway.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

# SEVEN's strokes lie on the default 600x480 canvas: drawn there, then scaled to 120x100
DRAWN_SEVEN = imagefiles.drawn_digit(imagefiles.SEVEN).resize((120, 100))
PNG = imagefiles.encode(DRAWN_SEVEN)
JPEG = imagefiles.encode(DRAWN_SEVEN, "JPEG")
B64 = base64.b64encode(PNG).decode()
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><path d="M5 5h18L12 25"/></svg>'
DOCUMENT = served_document()
NATIVE_PATHS = {path: item for path, item in DOCUMENT["paths"].items()
                if path != "/v2" and not path.startswith("/v2/")}   # v2 has its own error format


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
    "truncated jpeg": (JPEG[:len(JPEG) // 2], "image/jpeg", 422),
    "jpeg cut in its headers": (JPEG[:200], "image/jpeg", 422),
    "text labelled png": (b"hello, I am not a picture", "image/png", 422),
    "html labelled png": (b"<!doctype html><html><body><img src=x></body></html>", "image/png", 422),
    "svg": (SVG, "image/svg+xml", 415),
    "svg labelled png": (SVG, "image/png", 422),
    "decompression bomb": (imagefiles.png_bomb(30_000), "image/png", 413),
    "jpeg bytes labelled png but broken": (b"\xff\xd8\xff\xe0" + b"\0" * 40, "image/jpeg", 422),
    "huge dimensions": (imagefiles.png_header_only(20_000, 20_000), "image/png", 413),
    "just over the pixel limit": (imagefiles.png_header_only(1001, 1000), "image/png", 413),
    "too many files": (*_files(LIMITS["max_batch"] + 1), 413),
    "a thousand files": (*_files(1000), 413),
    "too many json images": (*_json({"images": [B64] * (LIMITS["max_batch"] + 1)}), 413),
    "bad base64": (*_json({"image": "not base64 at all!"}), 400),
    "base64 of text": (*_json({"image": base64.b64encode(b"text").decode()}), 422),
    "json image not a string": (*_json({"image": 7}), 400),
    "json list empty": (*_json({"images": []}), 400),
    "json without image": (*_json({"picture": B64}), 400),
    "json with image and images": (*_json({"image": B64, "images": [B64]}), 400),
    "json with a parameter beside the image": (*_json({"image": B64, "top_k": "abc"}), 400),
    "json array": (*_json([B64]), 400),
    "invalid json": (b"{not json", "application/json", 400),
    "unsupported type": (PNG, "text/plain", 415),
    "multipart without file": (*_files(0), 400),
    "body over the byte limit": (b"\0" * (LIMITS["max_request_bytes"] + 1), "image/png", 413),
    "json over the byte limit": (*_json({"image": "A" * LIMITS["max_request_bytes"]}), 413),
    "json of 50 MB": (*_json({"image": "A" * 50 * 2**20}), 413),
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


# --- odd images that decode: the right answer, not an error ----------------------------------

def _probabilities(reply) -> list[float]:
    assert reply.status == 200, reply.body
    return [entry["probability"] for entry in reply.json()["results"][0]["top_k"]]


@pytest.mark.parametrize("size", [(1, 1), (100_000, 1), (1, 100_000)])
def test_a_degenerate_image_is_a_blank_digit_for_predict(api, reference, size):
    """Digit preprocessing makes any image 28x28; one with no strokes is the black input."""
    blank = np.zeros((1, 1, 28, 28), np.float32)
    expected = np.sort(reference.run(blank)["probabilities"][0])[::-1][:10]
    reply = api.post("/predict?top_k=10", imagefiles.encode(Image.new("L", size, 255)), "image/png")
    assert np.allclose(_probabilities(reply), expected, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (100_000, 1), (1, 100_000)])
def test_a_degenerate_image_cannot_be_dreamed(api, size):
    """Under the model's min_side, or over the dream side limit."""
    _assert_problem(api.post("/dream", imagefiles.encode(Image.new("L", size, 255)), "image/png"), 422)


def test_an_animated_gif_is_its_first_frame(api):
    frames = [imagefiles.drawn_digit(digit).convert("L") for digit in (imagefiles.SEVEN, imagefiles.ONE)]
    gif = api.post("/predict?top_k=10", imagefiles.animated_gif(frames), "image/gif")
    first = api.post("/predict?top_k=10", imagefiles.encode(frames[0]), "image/png")
    assert gif.json()["results"][0]["top_k"][0]["label"] == "7"
    assert gif.json()["results"] == first.json()["results"]


def test_a_sixteen_bit_png_is_the_same_picture_as_its_eight_bit_version(api, digits):
    """Each 8-bit value v as 257 v in 16 bits is exactly the same brightness."""
    pixels = digits[0][0].reshape(28, 28).astype(np.uint16)
    sixteen = imagefiles.encode(Image.fromarray(pixels * 257))
    assert Image.open(io.BytesIO(sixteen)).mode.startswith("I")
    replies = [api.post("/predict?top_k=10&preprocess=none", data, "image/png")
               for data in (sixteen, imagefiles.mnist_png(digits[0][0]))]
    assert np.allclose(_probabilities(replies[0]), _probabilities(replies[1]), atol=1e-6)
    assert replies[0].json()["results"][0]["top_k"][0]["label"] == str(digits[1][0])


def test_a_cmyk_jpeg_is_decoded(api):
    cmyk = imagefiles.drawn_digit(imagefiles.SEVEN).convert("CMYK")
    reply = api.post("/predict", imagefiles.encode(cmyk, "JPEG"), "image/jpeg")
    assert reply.json()["results"][0]["top_k"][0]["label"] == "7"


# --- parameters, names, methods and media types, generated from /openapi.json -----------------

_PATH_VALUES = {"item": "0", "index": "0", "filename": "app.js", "version": "1"}


def _url(path: str, operation: dict, query: str = "") -> str:
    """`path` with each path parameter a valid value, and the required query parameters."""
    parameters = operation.get("parameters", [])
    for parameter in parameters:
        if parameter["in"] == "path":
            value = parameter["schema"].get("enum", [_PATH_VALUES.get(parameter["name"])])[0]
            path = path.replace("{" + parameter["name"] + "}", value)
    required = [f"{p['name']}={p['schema']['enum'][0]}" for p in parameters
                if p["in"] == "query" and p.get("required")]
    return path + ("?" + "&".join(required + [query]) if required or query else "")


def _send(api, method: str, url: str, operation: dict, headers: dict | None = None):
    body, kind = (PNG, "image/png") if "requestBody" in operation else (None, None)
    return api.request(method, url, body, (headers or {}) | ({"Content-Type": kind} if kind else {}))


def _hostile_numbers(schema: dict):
    """(value, status): non-numbers and non-finite numbers are malformed (400), finite numbers
    outside the bounds are refused (422)."""
    yield from [("NaN", 400), ("nan", 400), ("inf", 400), ("-Infinity", 400), ("1e999", 400),
                ("abc", 400), ("", 400), ("0x10", 400)]
    if schema["type"] == "integer":
        yield from [("2.5", 400), ("1e3", 400)]
    if schema.get("minimum", -1) > -1:
        yield "-1", 422
    if "maximum" in schema:
        yield ("99999999999999999999" if schema["type"] == "integer" else "1e308"), 422


NUMERIC_CASES = [
    (method.upper(), path, f"{parameter['name']}={value}", status)
    for path, item in DOCUMENT["paths"].items() for method, operation in item.items()
    for parameter in operation.get("parameters", [])
    if parameter["in"] == "query" and parameter["schema"].get("type") in ("integer", "number")
    for value, status in _hostile_numbers(parameter["schema"])]


@pytest.mark.parametrize("method, path, query, status", NUMERIC_CASES)
def test_every_numeric_parameter_refuses_hostile_values(api, method, path, query, status):
    operation = DOCUMENT["paths"][path][method.lower()]
    _assert_problem(_send(api, method, _url(path, operation, query), operation), status)


MODEL_NAMES = ["nope", "../mnist-cnn", "..%2Fmnist-cnn", "%2e%2e%2fmnist-cnn", "%252e%252e%252f",
               "%2Fetc%2Fpasswd", "/etc/passwd", "..%5C..%5Cmnist-cnn", "mnist-cnn%00", "%00",
               "mnist-cnn%2F..%2Fmnist-cnn", ".", "", "MNIST-CNN"]
MODEL_OPERATIONS = [(method.upper(), path) for path, item in DOCUMENT["paths"].items()
                    for method, operation in item.items()
                    if any(p["name"] == "model" for p in operation.get("parameters", []))]


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("method, path", MODEL_OPERATIONS)
def test_unknown_and_path_traversing_model_names_are_404(api, method, path, name):
    operation = DOCUMENT["paths"][path][method.lower()]
    _assert_problem(_send(api, method, _url(path, operation, f"model={name}"), operation), 404)


@pytest.mark.parametrize("path", [
    "/models/nope", "/models/..%2Fmnist-cnn", "/models/%2e%2e", "/models/%252e%252e%252fetc",
    "/models/..%5Cmnist-cnn", "/models/mnist-cnn%00", "/filters/conv9", "/filters/..%2Fconv1",
    "/filters/conv1%00", "/filters/conv9/0", "/filters/conv1/25", "/filters/conv1/-1",
    "/filters/conv1/99999999999999999999", "/filters/conv1/%2e%2e", "/filters/dense1/weights",
    "/static/..%2F..%2Fservice%2Fsettings.py", "/static/%2e%2e/%2e%2e/README.md",
    "/static/..%5C..%5CREADME.md", "/static/%252e%252e%252fREADME.md", "/static/app.js%00"])
def test_unknown_layers_filters_models_and_files_are_404(api, path):
    _assert_problem(api.get(path), 404)


@pytest.mark.parametrize("query, status", [
    ("/explain?target=10", 422), ("/explain?layer=conv9", 422), ("/explain?layer=dense1", 422),
    ("/feature-maps?layer=conv9", 422), ("/feature-maps?layer=..%2Fconv1", 422),
    ("/dream?targets=conv2:-1", 400), ("/dream?targets=..%2Fconv2", 422)])
def test_unknown_layers_and_classes_in_parameters(api, query, status):
    _assert_problem(api.post(query, PNG, "image/png"), status)


def test_a_bundle_outside_the_models_directory_is_never_served(tmp_path):
    """Model names are looked up among the bundles found in the directory, never as paths."""
    models = tmp_path / "models"
    shutil.copytree(MODEL_DIR, models / "mnist-cnn")
    outside = tmp_path / "outside"
    shutil.copytree(MODEL_DIR, outside)
    manifest = json.loads((outside / "manifest.json").read_text())
    (outside / "manifest.json").write_text(json.dumps(manifest | {"name": "outside"}))
    client = InProcess(create_app(Settings(models_dir=models, **LIMITS)))
    for name in ("outside", "../outside", "..%2Foutside", str(outside), str(outside / "manifest.json")):
        _assert_problem(client.get(f"/filters?model={name}"), 404)
        _assert_problem(client.get(f"/models/{name}"), 404)
    assert client.get("/filters?model=mnist-cnn").status == 200


WRONG_METHODS = [(method, path) for path, item in NATIVE_PATHS.items()
                 for method in ("GET", "POST", "PUT", "DELETE", "PATCH") if method.lower() not in item]


@pytest.mark.parametrize("method, path", WRONG_METHODS)
def test_every_undocumented_method_is_405_with_allow(api, method, path):
    item = NATIVE_PATHS[path]
    reply = api.request(method, _url(path, next(iter(item.values()))))
    _assert_problem(reply, 405)
    assert {m.upper() for m in item} <= {m.strip() for m in reply.headers["allow"].split(",")}


ANSWERING = [(method.upper(), path) for path, item in NATIVE_PATHS.items()
             for method, operation in item.items()
             if any(status.startswith("2") and response.get("content")
                    for status, response in operation["responses"].items())]


@pytest.mark.parametrize("method, path", ANSWERING)
def test_an_accept_header_that_allows_no_answer_is_406(api, method, path):
    operation = DOCUMENT["paths"][path][method.lower()]
    reply = _send(api, method, _url(path, operation), operation, {"Accept": "application/xml"})
    _assert_problem(reply, 406)
    assert "application/xml" in reply.json()["detail"]


@pytest.mark.parametrize("method, path, accept", [
    ("GET", "/metrics", "text/plain;version=0.0.4"),       # what Prometheus asks for
    ("GET", "/metrics", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    ("GET", "/filters/conv1/0", "image/*"), ("GET", "/filters", "application/json"),
    ("POST", "/predict", "application/json, */*;q=0.1"), ("GET", "/", "text/html,*/*;q=0.8"),
    ("POST", "/dream?steps=1", "application/json")])
def test_an_accept_header_that_allows_an_answer_gets_it(api, method, path, accept):
    body, kind = (PNG, "image/png") if method == "POST" else (None, None)
    reply = api.request(method, path, body, {"Accept": accept} | ({"Content-Type": kind} if kind else {}))
    assert reply.status == 200 and reply.mimetype.split("/")[0] in accept


# --- the real server after all of it ----------------------------------------------------------

def test_gunicorn_still_answers_after_every_hostile_input(tmp_path, digits):
    """Its own server, so that no other test's order matters: every bad upload to every image
    endpoint, every hostile number and model name, then /readyz and a good /predict, and no
    worker died or was replaced on the way."""
    log = tmp_path / "gunicorn.log"
    with serving(gunicorn_env(), log) as (_, base):
        client = Client(base)
        for endpoint in ("/predict", "/dream", "/explain", "/feature-maps?layer=conv1"):
            for case, (body, content_type, _) in BAD_UPLOADS.items():
                if (endpoint, case) == ("/dream", "empty body"):   # a dream from noise
                    continue
                reply = client.post(endpoint, body, content_type)
                assert 400 <= reply.status < 500, (endpoint, case, reply.body)
        for method, path, query, status in NUMERIC_CASES:
            operation = DOCUMENT["paths"][path][method.lower()]
            assert _send(client, method, _url(path, operation, query), operation).status == status
        for (method, path), name in itertools.product(MODEL_OPERATIONS, MODEL_NAMES):
            operation = DOCUMENT["paths"][path][method.lower()]
            assert _send(client, method, _url(path, operation, f"model={name}"), operation).status == 404
        assert client.get("/readyz").status == 200
        reply = client.post("/predict", imagefiles.mnist_png(digits[0][0]), "image/png")
        assert reply.json()["results"][0]["top_k"][0]["label"] == str(digits[1][0])
    text = log.read_text()
    assert text.count("Booting worker") == 2 and "Traceback" not in text, text[-3000:]


def test_a_chunked_body_is_read_whole_under_the_byte_limit_and_refused_over_it(server):
    """A body sent without Content-Length (Transfer-Encoding: chunked) cannot be measured before
    it is read: it is counted as it is read and refused at the limit, while one whose declared
    length is within the limit is read as it comes (service.plumbing.multipart.Request)."""
    png = (ROOT / "examples" / "mnist-7.png").read_bytes()
    seven = server.post("/predict", iter([png[:100], png[100:]]), "image/png")
    assert seven.status == 200, seven.body
    assert seven.json()["results"][0]["top_k"][0]["label"] == "7"
    assert server.post("/predict", png, "image/png").json() == seven.json()
    over = server.post("/predict", iter([b"\0" * 2**19] * 5), "image/png")
    _assert_problem(over, 413)
    assert f"larger than the {LIMITS['max_request_bytes']} bytes" in over.json()["detail"]


def _raw(base: str, request: bytes, half_close: bool = False) -> tuple[bytes, bytes]:
    """Send `request` as it is on a new connection (shut for writing after it if `half_close`);
    the answer's head and body, once the server has sent its Content-Length's worth, and what
    else arrives before it closes the connection (b"" when it does)."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            data += _more(sock, data)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1])
        while len(body) < length:
            body += _more(sock, data)
        sock.settimeout(2)
        try:
            after = sock.recv(65536)
        except TimeoutError:
            after = None   # still open
    return head + b"\r\n\r\n" + body[:length], after


def _more(sock: socket.socket, data: bytes) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, f"the server closed the connection after {data[:300]!r}"
    return chunk


def _status_and_problem(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\ncontent-type: application/problem+json" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


PNG_HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"


@pytest.mark.parametrize("body, half_close", [
    (b"zz\r\nabc\r\n0\r\n\r\n", False),   # a chunk size that is not hexadecimal
    (b"10\r\nabc", True),                 # the client stops in the middle of a chunk
])
def test_a_chunked_body_the_server_cannot_read_is_a_400(server, body, half_close):
    answer, _ = _raw(server.base, PNG_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body,
                     half_close)
    status, problem = _status_and_problem(answer)
    assert status == 400 and problem["detail"].startswith("the chunked request body cannot be read")


def test_a_body_shorter_than_its_content_length_is_a_400(server):
    """Even when the bytes that came are a whole PNG: the client stopped sending."""
    png = (ROOT / "examples" / "mnist-7.png").read_bytes()
    answer, _ = _raw(server.base, PNG_HEAD + b"Content-Length: %d\r\n\r\n" % (len(png) + 100)
                     + png, half_close=True)
    status, problem = _status_and_problem(answer)
    assert status == 400
    assert problem["detail"] == "the request body ended 100 bytes before its Content-Length"


def test_a_declared_length_over_the_limit_is_answered_at_once_and_the_connection_closed(server):
    """The client sends the headers and waits: it gets its 413 without sending the body (the
    socket timeout, 10 s, is a third of the client timeout a body read would wait for), and the
    connection is closed, its body unread, instead of reading the body as the next request."""
    too_long = LIMITS["max_request_bytes"] + 1
    answer, after = _raw(server.base, PNG_HEAD + b"Content-Length: %d\r\n\r\n" % too_long)
    status, problem = _status_and_problem(answer)
    assert status == 413 and "larger than the" in problem["detail"]
    assert after == b""


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /predict?x=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9_000 + b"\r\n\r\n", 431),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"GARBAGE\r\n\r\n", 400),
])
def test_requests_the_http_server_cannot_parse_get_problem_details_too(server, request_bytes,
                                                                       status):
    """gunicorn answers these itself, before the application sees them: as JSON problem details,
    like every other error (its own answer is an HTML page), and it closes the connection."""
    answer, after = _raw(server.base, request_bytes)
    got, problem = _status_and_problem(answer)
    assert got == status == problem["status"] and problem["title"] and problem["detail"]
    assert after == b""
