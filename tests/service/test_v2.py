"""The Open Inference Protocol v2: the official tritonclient against the real gunicorn server,
compared with model.onnx run directly; plain HTTP (test client and gunicorn, checked against
/openapi.json) for the protocol's JSON error bodies and the binary tensor data extension."""
from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from lens import digit
from tests.service import imagefiles
from tests.service.conftest import LIMITS
from tests.service.http import Client, InProcess
from tests.service.reference import Reference

MODEL = "mnist-cnn"
INFER = f"/v2/models/{MODEL}/infer"
TOLERANCE = 1e-5
HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def client(server):
    """tritonclient wants host:port, without the scheme."""
    client = triton.InferenceServerClient(server.base.removeprefix("http://"))
    yield client
    client.close()


def _image_input(batch: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    return tensor


def _bytes_input(blobs: list, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image_bytes", [len(blobs)], "BYTES")
    tensor.set_data_from_numpy(np.array(blobs, dtype=np.object_), binary_data=binary)
    return tensor


def _mnist(digits, count: int = 4) -> np.ndarray:
    """FP32 tensors as a client prepares them for a bundle trained on normalised, deskewed digits:
    each through lens.digit, what preprocess=digit does server-side."""
    pixels, _ = digits
    spec = Reference().manifest["input"]
    return np.stack([digit.normalise(row.reshape(28, 28) / 255, 28, 28, spec["foreground"],
                                     spec.get("deskew", False))
                     for row in pixels[:count]]).astype(np.float32)[:, None]


def _status(error: pytest.ExceptionInfo) -> str:
    return error.value.status()


# --- tritonclient against gunicorn ---------------------------------------------------------------

def test_server_is_live_and_ready_and_describes_itself(client):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "cnn-lens" and metadata["version"]
    assert metadata["extensions"] == ["binary_tensor_data"]


def test_model_metadata_matches_the_model_file(client, reference):
    metadata = client.get_model_metadata(MODEL)
    spec = reference.manifest["input"]
    assert metadata["name"] == MODEL and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["versions"] == [reference.manifest["version"]]
    inputs = {tensor["name"]: tensor for tensor in metadata["inputs"]}
    assert inputs["image"]["datatype"] == "FP32"
    assert inputs["image"]["shape"] == [-1, spec["channels"], spec["height"], spec["width"]]
    assert inputs["image_bytes"]["datatype"] == "BYTES" and inputs["image_bytes"]["shape"] == [-1]
    # Every output of model.onnx, with the per-sample shape onnxruntime reads from the file.
    shapes = {output.name: output.shape[1:] for output in reference.session.get_outputs()}
    outputs = {tensor["name"]: tensor for tensor in metadata["outputs"]}
    assert set(outputs) == set(shapes)
    for name, tensor in outputs.items():
        assert tensor["datatype"] == "FP32" and tensor["shape"] == [-1, *shapes[name]], name
    assert [tensor["name"] for tensor in metadata["outputs"]][:2] == ["probabilities", "logits"]
    assert client.get_model_metadata(MODEL, reference.manifest["version"]) == metadata


def test_model_ready_for_served_models_and_versions_only(client, reference):
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, reference.manifest["version"])
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready(MODEL, "999")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_mnist_digits_equal_the_model_run_directly(client, digits, reference, binary):
    batch = _mnist(digits)
    expected = reference.run(batch)
    result = client.infer(MODEL, [_image_input(batch, binary)],
                          outputs=[triton.InferRequestedOutput(name, binary_data=binary)
                                   for name in ("probabilities", "logits")])
    for name in ("probabilities", "logits"):
        got = result.as_numpy(name)
        assert got.dtype == np.float32 and got.shape == expected[name].shape
        np.testing.assert_allclose(got, expected[name], atol=TOLERANCE)
    response = result.get_response()
    assert response["model_name"] == MODEL
    assert response["model_version"] == reference.manifest["version"]
    assert all(("parameters" in output) == binary for output in response["outputs"])
    assert list(got.argmax(axis=1)) == list(digits[1][:4])


def test_without_outputs_probabilities_and_logits_come_back(client, digits, reference):
    batch = _mnist(digits, 2)
    result = client.infer(MODEL, [_image_input(batch, True)])   # binary_data_output: true
    assert [output["name"] for output in result.get_response()["outputs"]] == \
        ["probabilities", "logits"]
    np.testing.assert_allclose(result.as_numpy("probabilities"),
                               reference.run(batch)["probabilities"], atol=TOLERANCE)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_an_activation_by_name_equals_the_model_run_directly(client, digits, reference, binary):
    batch = _mnist(digits, 3)
    result = client.infer(MODEL, [_image_input(batch, binary)],
                          outputs=[triton.InferRequestedOutput("conv2", binary_data=binary)])
    assert [output["name"] for output in result.get_response()["outputs"]] == ["conv2"]
    expected = reference.run(batch)["conv2"]
    assert result.as_numpy("conv2").shape == expected.shape == (3, 50, 11, 11)
    np.testing.assert_allclose(result.as_numpy("conv2"), expected, atol=TOLERANCE)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json-base64"])
def test_encoded_images_give_what_predict_gives(client, server, binary):
    """Drawings (dark on light, off-centre, PNG and JPEG) preprocessed as /predict does."""
    files = [imagefiles.encode(imagefiles.drawn_digit(imagefiles.SEVEN)),
             imagefiles.encode(imagefiles.drawn_digit(imagefiles.ONE), "JPEG", quality=90)]
    blobs = files if binary else [base64.b64encode(blob).decode() for blob in files]
    result = client.infer(MODEL, [_bytes_input(blobs, binary)],
                          outputs=[triton.InferRequestedOutput("probabilities",
                                                               binary_data=binary)])
    reply = server.post_files("/predict?top_k=10", files)
    assert reply.status == 200, reply.body
    expected = np.zeros((2, 10), np.float32)
    for n, item in enumerate(reply.json()["results"]):
        for entry in item["top_k"]:
            expected[n, entry["index"]] = entry["probability"]
    got = result.as_numpy("probabilities")
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)
    assert list(got.argmax(axis=1)) == [7, 1]


def test_encoded_mnist_digits_without_preprocessing_equal_the_model(client, digits, reference):
    pixels, _ = digits
    pngs = [imagefiles.mnist_png(row) for row in pixels[:4]]
    result = client.infer(MODEL, [_bytes_input(pngs, True)], parameters={"preprocess": "none"},
                          outputs=[triton.InferRequestedOutput("logits")])
    np.testing.assert_allclose(result.as_numpy("logits"), reference.run(pixels[:4] / 255)["logits"],
                               atol=TOLERANCE)


def test_the_request_id_is_echoed(client, digits):
    result = client.infer(MODEL, [_image_input(_mnist(digits, 1), True)], request_id="req-42")
    assert result.get_response()["id"] == "req-42"
    assert result.get_response()["model_version"]


def test_an_unknown_model_or_version_is_a_404(client, digits):
    batch = _mnist(digits, 1)
    with pytest.raises(InferenceServerException, match="no model 'no-such-model'") as error:
        client.infer("no-such-model", [_image_input(batch, True)])
    assert _status(error) == "404"
    with pytest.raises(InferenceServerException, match="no version '999'") as error:
        client.infer(MODEL, [_image_input(batch, True)], model_version="999")
    assert _status(error) == "404"
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata("no-such-model")
    assert _status(error) == "404"


def _bad_inputs() -> dict:
    good = np.zeros((1, 1, 28, 28), np.float32)
    wrong_shape = triton.InferInput("image", [1, 1, 27, 28], "FP32")
    wrong_shape.set_data_from_numpy(np.zeros((1, 1, 27, 28), np.float32))
    wrong_type = triton.InferInput("image", [1, 1, 28, 28], "FP64")
    wrong_type.set_data_from_numpy(good.astype(np.float64))
    wrong_name = triton.InferInput("pixels", [1, 1, 28, 28], "FP32")
    wrong_name.set_data_from_numpy(good)
    too_many = LIMITS["max_batch"] + 1
    over_limit = triton.InferInput("image", [too_many, 1, 28, 28], "FP32")
    over_limit.set_data_from_numpy(np.zeros((too_many, 1, 28, 28), np.float32))
    return {"wrong shape": ([wrong_shape], None, "has shape [1, 1, 27, 28]"),
            "wrong datatype": ([wrong_type], None, "got datatype 'FP64'"),
            "unknown input": ([wrong_name], None, "no input 'pixels'"),
            "batch over the limit": ([over_limit], None, "CNNLENS_MAX_BATCH"),
            "unknown output": ([_image_input(good, True)],
                               [triton.InferRequestedOutput("conv9")], "no output 'conv9'"),
            "not an image": ([_bytes_input([b"not an image"], True)], None, "is not a PNG")}


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_requests_are_400_with_the_reason(client, case):
    inputs, outputs, message = _bad_inputs()[case]
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, inputs, outputs=outputs)
    assert _status(error) == "400"
    assert message in error.value.message()


# --- plain HTTP: error bodies, the binary extension by hand, the OpenAPI contract ----------------

def _image(shape=(1, 1, 28, 28), **extra) -> dict:
    return {"name": "image", "shape": list(shape), "datatype": "FP32",
            "data": np.zeros(shape).ravel().tolist()} | extra


BAD_DOCUMENTS = {   # name: (request document, words in the error)
    "no inputs": ({}, '"inputs" must be'),
    "empty inputs": ({"inputs": []}, '"inputs" must be'),
    "both inputs": ({"inputs": [_image(), {"name": "image_bytes", "shape": [1],
                                           "datatype": "BYTES", "data": ["AAAA"]}]},
                    "send one input"),
    "no data": ({"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32"}]},
                "neither data"),
    "too few values": ({"inputs": [_image() | {"data": [0.0] * 10}]}, "784 numbers"),
    "strings for floats": ({"inputs": [_image() | {"data": ["0"] * 784}]}, "784 numbers"),
    "ragged nesting": ({"inputs": [_image() | {"data": [[0.0] * 28] * 27 + [[0.0] * 3]}]},
                       "784 numbers"),
    "empty batch": ({"inputs": [_image((0, 1, 28, 28))]}, "a batch of 0"),
    "shape not a list": ({"inputs": [_image() | {"shape": "1x1x28x28"}]}, "has shape"),
    "id not a string": ({"id": 7, "inputs": [_image()]}, '"id" must be a string'),
    "bad base64": ({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                "data": ["###"]}]}, "not valid base64"),
    "bytes count": ({"inputs": [{"name": "image_bytes", "shape": [2], "datatype": "BYTES",
                                 "data": ["AAAA"]}]}, "but 1 elements"),
    "unknown preprocess": ({"parameters": {"preprocess": "fancy"},
                            "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                        "data": ["AAAA"]}]}, "preprocess must be one of"),
    "binary flag not boolean": ({"inputs": [_image()], "outputs": [
                                    {"name": "logits", "parameters": {"binary_data": "yes"}}]},
                                "must be true or false"),
    "classification": ({"inputs": [_image()],
                        "outputs": [{"name": "logits", "parameters": {"classification": 3}}]},
                       "classification extension is not supported"),
    "output twice": ({"inputs": [_image()], "outputs": [{"name": "logits"}, {"name": "logits"}]},
                     "asked for twice"),
}


@pytest.mark.parametrize("case", list(BAD_DOCUMENTS))
def test_bad_documents_get_the_protocols_error_object(api, case):
    document, words = BAD_DOCUMENTS[case]
    reply = api.post_json(INFER, document)
    assert reply.status == 400 and reply.mimetype == "application/json"
    assert list(reply.json()) == ["error"] and words in reply.json()["error"], reply.body


@pytest.mark.parametrize("body, headers, words", [
    (b"{not json", {}, "not valid JSON"),
    (b'[1, 2]', {}, "must be a JSON object"),
    # NaN is not JSON: Python's json writes it, but the server's parser refuses it
    (json.dumps({"inputs": [_image() | {"data": [float("nan")] * 784}]}).encode(), {},
     "not valid JSON"),
    (b'{"inputs": []}', {HEADER: "99"}, HEADER),
    (b'{"inputs": []}', {"Content-Encoding": "gzip"}, "not supported"),
])
def test_malformed_bodies_are_400(api, body, headers, words):
    reply = api.post(INFER, body, "application/json", headers)
    assert reply.status == 400 and words in reply.json()["error"], reply.body


def _binary_request(tensors: bytes, size: int, document: dict | None = None) -> tuple[bytes, dict]:
    document = document or {"inputs": [{"name": "image", "shape": [1, 1, 28, 28],
                                         "datatype": "FP32",
                                         "parameters": {"binary_data_size": size}}]}
    header = json.dumps(document).encode()
    return header + tensors, {HEADER: str(len(header))}


def test_nan_pixels_in_binary_data_are_400(api):
    pixels = np.full(784, np.nan, "<f4")
    body, headers = _binary_request(pixels.tobytes(), pixels.nbytes)
    reply = api.post(INFER, body, "application/octet-stream", headers)
    assert reply.status == 400 and "NaN or infinite" in reply.json()["error"], reply.body


def test_the_binary_extension_by_hand(api, digits, reference):
    """Binary data in and out, parsed here without tritonclient: the JSON part, then each
    output's bytes in order, as little-endian FP32."""
    batch = _mnist(digits, 2)
    document = {"id": "by-hand",
                "inputs": [{"name": "image", "shape": list(batch.shape), "datatype": "FP32",
                            "parameters": {"binary_data_size": batch.nbytes}}],
                "outputs": [{"name": "logits", "parameters": {"binary_data": True}},
                            {"name": "probabilities", "parameters": {"binary_data": False}}]}
    body, headers = _binary_request(batch.astype("<f4").tobytes(), batch.nbytes, document)
    reply = api.post(INFER, body, "application/octet-stream", headers)
    assert reply.status == 200 and reply.mimetype == "application/octet-stream", reply.body
    length = int(reply.headers[HEADER.lower()])
    response = json.loads(reply.body[:length])
    assert response["id"] == "by-hand"
    logits, probabilities = response["outputs"]
    assert logits["parameters"]["binary_data_size"] == len(reply.body) - length == 2 * 10 * 4
    expected = reference.run(batch)
    np.testing.assert_allclose(np.frombuffer(reply.body[length:], "<f4").reshape(2, 10),
                               expected["logits"], atol=TOLERANCE)
    np.testing.assert_allclose(np.array(probabilities["data"]).reshape(probabilities["shape"]),
                               expected["probabilities"], atol=TOLERANCE)


def test_bytes_elements_in_binary_are_length_prefixed(api, digits, reference):
    pixels, _ = digits
    png = imagefiles.mnist_png(pixels[0])
    document = {"parameters": {"preprocess": "none"},
                "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                            "parameters": {"binary_data_size": 4 + len(png)}}]}
    body, headers = _binary_request(struct.pack("<I", len(png)) + png, 4 + len(png), document)
    reply = api.post(INFER, body, None, headers)
    assert reply.status == 200, reply.body
    got = reply.json()["outputs"][0]
    np.testing.assert_allclose(got["data"], reference.run(pixels[:1] / 255)["probabilities"][0],
                               atol=TOLERANCE)
    truncated, headers = _binary_request(struct.pack("<I", len(png) + 1) + png, 4 + len(png),
                                         document)
    assert api.post(INFER, truncated, None, headers).status == 400


@pytest.mark.parametrize("tensors, size, words", [
    (b"\0" * 3136, 3000, "bytes of binary data follow"),
    (b"\0" * 3000, 3136, "does not fit"),
    (b"\0" * 3000, 3000, "needs 3136 bytes"),
])
def test_binary_sizes_must_add_up(api, tensors, size, words):
    body, headers = _binary_request(tensors, size)
    reply = api.post(INFER, body, "application/octet-stream", headers)
    assert reply.status == 400 and words in reply.json()["error"], reply.body


def test_a_body_over_the_limit_is_413_in_the_protocols_format(api):
    reply = api.post(INFER, b"x" * (LIMITS["max_request_bytes"] + 1), "application/json")
    assert reply.status == 413 and "bytes" in reply.json()["error"]


@pytest.mark.parametrize("path", ["/v2", "/v2/health/live", "/v2/health/ready",
                                  f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/versions/1",
                                  f"/v2/models/{MODEL}/ready",
                                  f"/v2/models/{MODEL}/versions/1/ready",
                                  "/v2/models/nope", "/v2/models/nope/ready",
                                  f"/v2/models/{MODEL}/versions/2/ready"])
def test_metadata_and_health_replies_follow_the_document(api, path):
    reply = api.get(path)   # the contract check validates the body
    assert reply.status == (404 if "nope" in path or "versions/2" in path else 200)
    assert reply.mimetype == "application/json"


def test_the_versioned_infer_route(api, reference):
    good = api.post_json(f"/v2/models/{MODEL}/versions/{reference.manifest['version']}/infer",
                         {"inputs": [_image()]})
    assert good.status == 200 and len(good.json()["outputs"]) == 2
    wrong = api.post_json(f"/v2/models/{MODEL}/versions/0/infer", {"inputs": [_image()]})
    assert wrong.status == 404 and "no version '0'" in wrong.json()["error"]


@pytest.fixture(params=["flask", "gunicorn"])
def plain(request) -> Client:
    """Without the contract check, which expects problem+json for unknown routes and 405s: on
    /v2 paths those are the protocol's error objects too."""
    if request.param == "flask":
        return InProcess(request.getfixturevalue("app"))
    return Client(request.getfixturevalue("server").base)


def test_unknown_routes_and_wrong_methods_under_v2_are_error_objects(plain):
    missing = plain.get("/v2/models/mnist-cnn/config")
    assert missing.status == 404 and missing.mimetype == "application/json"
    assert "no route" in missing.json()["error"]
    wrong = plain.get(INFER)
    assert wrong.status == 405 and "POST" in wrong.headers["allow"]
    assert "GET is not allowed" in wrong.json()["error"]
    elsewhere = plain.get("/v3/models")   # the native API's problem+json is untouched
    assert elsewhere.status == 404 and elsewhere.mimetype == "application/problem+json"


def test_the_v2_routes_are_in_the_document(contract):
    paths = contract.document["paths"]
    assert {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
            "/v2/models/{name}/ready", "/v2/models/{name}/infer",
            "/v2/models/{name}/versions/{version}/infer"} <= set(paths)
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert set(infer["responses"]["200"]["content"]) == {"application/json",
                                                         "application/octet-stream"}
    outputs = infer["requestBody"]["content"]["application/json"]["schema"]["properties"]["outputs"]
    assert {"probabilities", "logits", "digit_score", "conv1", "conv2", "dense1"} == \
        set(outputs["items"]["properties"]["name"]["enum"])


def test_an_unexpected_error_is_a_500_error_object_without_details(app, contract, monkeypatch,
                                                                    caplog):
    def broken(*args):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("service.endpoints.v2._batch", broken)
    reply = InProcess(app, contract).post_json(INFER, {"inputs": [_image()]})
    assert reply.status == 500 and "secret" not in reply.json()["error"]
    assert "secret internals" in caplog.text
