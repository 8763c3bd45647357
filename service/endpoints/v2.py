"""The Open Inference Protocol v2 (KServe's and Triton's REST protocol), beside the native API.

  GET  /v2                                         server metadata
  GET  /v2/health/live, /v2/health/ready           200 while alive / once every model is loaded
  GET  /v2/models/{name}[/versions/{v}]            model metadata
  GET  /v2/models/{name}[/versions/{v}]/ready      200 when served, 404 otherwise
  POST /v2/models/{name}[/versions/{v}]/infer      inference

Every served bundle is a model under its manifest name, with one version (the manifest's). Its
inputs, of which a request sends exactly one:
  image        FP32  [-1, C, H, W]  the graph's own input: values in [0, 1], NCHW
  image_bytes  BYTES [-1]           encoded image files (PNG, JPEG, WebP, BMP, GIF), decoded and
                                    preprocessed exactly as POST /predict does (request parameter
                                    `preprocess`: digit or none, the model's default without it);
                                    in JSON each element is the file's base64 (or a data URL),
                                    in binary data the raw file bytes
Its outputs, all FP32: probabilities and logits [-1, K] (the default when a request names none),
and every explainable layer's activation under the layer's name (conv1 [-1, 25, 26, 26], ...).

The binary tensor data extension (what tritonclient sends by default) is supported both ways: an
`Inference-Header-Content-Length` header says how long the JSON part of the body is, inputs with
`parameters.binary_data_size` take their bytes from what follows, in order (little-endian FP32;
BYTES elements as a 4-byte little-endian length and the bytes); outputs asked for with
`parameters.binary_data` (or the request's `binary_data_output`) come back the same way, in an
application/octet-stream body with that header.

Errors are the protocol's `{"error": "<message>"}` (not problem+json as in the native API): 400
for anything wrong with a request (malformed JSON, unknown input or output name, wrong shape or
datatype, non-finite values, a batch over CNNLENS_MAX_BATCH, an image that cannot be decoded or
images over CNNLENS_MAX_PIXELS or CNNLENS_MAX_REQUEST_PIXELS), 404
for an unknown model or version and for unknown /v2 routes, 405 for a wrong method, 413 for a body
over CNNLENS_MAX_REQUEST_BYTES, 500 for an unexpected error (details in the log only).
"""
from __future__ import annotations

import logging
import math

import numpy as np
from flask import Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from lens.bundle import DIGIT_SCORE
from service.plumbing import images, openapi
from service.plumbing.problems import Problem, body_too_large, drain_oversized_body
from service.runtime.preprocess import MODES, PREPROCESS_SIDE, default_mode, model_input
from service.runtime.served import EXTENSION, Served

# The Open Inference Protocol's own rules for parameters.
blueprint = openapi.Documented("v2", __name__, checks_parameters=False)
log = logging.getLogger(__name__)

VERSION = "0.1.0"   # of the service and its HTTP API
SERVER = {"name": "cnn-lens", "version": VERSION, "extensions": ["binary_tensor_data"]}
PLATFORM = "onnxruntime_onnx"
HEADER = "Inference-Header-Content-Length"
IMAGE, IMAGE_BYTES = "image", "image_bytes"
DEFAULT_OUTPUTS = ("probabilities", "logits")
FP32, BYTES = "FP32", "BYTES"


class V2Error(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _bad(message: str) -> V2Error:
    return V2Error(400, message)


# --- errors: the protocol's {"error": ...} on every /v2 path -----------------------------------

def _error(status: int, message: str, headers=None) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    response.headers.extend(headers or {})
    return response


@blueprint.app_errorhandler(V2Error)   # app-wide too: routing errors on /v2 paths (below)
@blueprint.errorhandler(V2Error)       # and before the blueprint's Exception handler
def _v2_error(error: V2Error):
    return _error(error.status, error.message, error.headers)


@blueprint.errorhandler(Problem)
def _problem(error: Problem):
    """service.plumbing.images reports a bad image as a Problem (413, 422...): to the protocol,
    a 400."""
    return _error(400, error.detail)


@blueprint.errorhandler(HTTPException)
def _http(error: HTTPException):
    if error.code == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        drain_oversized_body(limit)
        return _error(413, body_too_large(limit))
    return _error(error.code or 500, error.description or error.name)


@blueprint.errorhandler(Exception)
def _unexpected(error: Exception):
    log.exception("unhandled error")
    return _error(500, "the server failed to handle this request; the error is logged")


@blueprint.before_app_request
def _routing_errors():
    """An unknown /v2 route or a wrong method never reaches this blueprint, so the app's
    problem+json handler would answer it. Werkzeug's routing error is raised only after the
    before-request functions, so swap it for ours (every other before-request function still
    runs, and the error goes through the usual handling)."""
    req = request._get_current_object()   # once: each access through the proxy costs ~0.8 µs
    error = req.routing_exception
    if error is None or not (req.path == "/v2" or req.path.startswith("/v2/")):
        return
    if isinstance(error, NotFound):
        req.routing_exception = V2Error(404, f"no route {req.path} in the v2 protocol")
    elif isinstance(error, MethodNotAllowed):
        allowed = ", ".join(sorted(error.valid_methods or []))
        req.routing_exception = V2Error(
            405, f"{req.method} is not allowed on {req.path}; allowed: {allowed}",
            {"Allow": allowed})


# --- server and model metadata, health ----------------------------------------------------------

@blueprint.get("/v2")
def server_metadata():
    return jsonify(SERVER)


@blueprint.get("/v2/health/live")
def live():
    return jsonify(live=True)


@blueprint.get("/v2/health/ready")
def ready():
    # The app exists only once every bundle loaded and warmed up (create_app fails otherwise).
    return jsonify(ready=True)


def _model(name: str, version: str | None) -> Served:
    registry = current_app.extensions[EXTENSION]
    try:
        served = registry.get(name)
    except KeyError:
        raise V2Error(404, f"no model {name!r}; models: {', '.join(registry.names())}") from None
    if version is not None and version != served.bundle.manifest["version"]:
        raise V2Error(404, f"model {name!r} has no version {version!r}; the version served is "
                           f"{served.bundle.manifest['version']!r}")
    return served


def _output_shapes(served: Served) -> dict[str, list[int]]:
    """Every output of model.onnx with its shape per sample, from the manifest."""
    shapes = {layer["name"]: layer["shape"] for layer in served.bundle.layers}
    shapes[DIGIT_SCORE] = []   # one score per image
    classes = [len(served.bundle.labels)]
    outputs = served.bundle.manifest["graphs"]["model"]["outputs"]
    return {name: shapes.get(name, classes) for name in outputs}


def metadata(served: Served) -> dict:
    spec = served.bundle.manifest["input"]
    shapes = _output_shapes(served)
    order = [name for name in DEFAULT_OUTPUTS if name in shapes] + \
            [name for name in shapes if name not in DEFAULT_OUTPUTS]
    return {
        "name": served.bundle.name,
        "versions": [served.bundle.manifest["version"]],
        "platform": PLATFORM,
        "inputs": [
            {"name": IMAGE, "datatype": FP32,
             "shape": [-1, spec["channels"], spec["height"], spec["width"]]},
            {"name": IMAGE_BYTES, "datatype": BYTES, "shape": [-1],
             "parameters": {"content": "encoded PNG, JPEG, WebP, BMP or GIF files: base64 in "
                                       "JSON, raw bytes in binary data",
                            "preprocess": default_mode(spec)}}],
        "outputs": [{"name": name, "datatype": FP32, "shape": [-1, *shapes[name]]}
                    for name in order],
    }


@blueprint.get("/v2/models/<name>")
@blueprint.get("/v2/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    return jsonify(metadata(_model(name, version)))


@blueprint.get("/v2/models/<name>/ready")
@blueprint.get("/v2/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    # A model is in the registry only once loaded and warmed up: served means ready.
    return jsonify(name=_model(name, version).bundle.name, ready=True)


# --- inference ----------------------------------------------------------------------------------

@blueprint.post("/v2/models/<name>/infer")
@blueprint.post("/v2/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
    served = _model(name, version)
    document, binary = _read_body()
    parameters = _object(document.get("parameters"), "parameters")
    inputs = _inputs(document.get("inputs"), binary)
    wanted = _outputs(document.get("outputs"), served,
                      _flag(parameters.get("binary_data_output", False),
                            "parameters.binary_data_output"))
    batch = _batch(served, inputs, parameters)
    results = served.infer(batch, [output for output, _ in wanted])
    body = {"model_name": served.bundle.name, "model_version": served.bundle.manifest["version"]}
    if "id" in document:
        if not isinstance(document["id"], str):
            raise _bad('"id" must be a string')
        body["id"] = document["id"]
    body["outputs"], blobs = [], []
    for output, as_binary in wanted:
        value = np.ascontiguousarray(results[output], "<f4")
        entry = {"name": output, "datatype": FP32, "shape": list(value.shape)}
        if as_binary:
            blobs.append(value.tobytes())
            entry["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            entry["data"] = value.ravel()   # app.json writes arrays itself
        body["outputs"].append(entry)
    if not blobs:
        return jsonify(body)
    header = current_app.json.dumps(body).encode()
    return Response(header + b"".join(blobs), 200, {HEADER: str(len(header))},
                    mimetype="application/octet-stream")


def _read_body() -> tuple[dict, bytes]:
    """The JSON part of the body, and the binary data after it (binary tensor data extension)."""
    encoding = request.headers.get("Content-Encoding", "identity")
    if encoding != "identity":
        raise _bad(f"Content-Encoding {encoding!r} is not supported; send the body uncompressed")
    body = request.get_data()   # 413 over MAX_CONTENT_LENGTH
    length = request.headers.get(HEADER)
    if length is None:
        text, binary = body, b""
    else:
        if not length.isdigit() or int(length) > len(body):
            raise _bad(f"{HEADER} must be the length of the JSON part of the body, at most "
                       f"{len(body)}; got {length!r}")
        text, binary = body[:int(length)], body[int(length):]
    try:
        document = current_app.json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise _bad(f"the inference request is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise _bad('the inference request must be a JSON object {"inputs": [...]}')
    return document, binary


def _object(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object")
    return value


def _flag(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"{where} must be true or false")
    return value


def _inputs(inputs, binary: bytes) -> dict[str, tuple[dict, bytes | None]]:
    """{name: (the input's JSON object, its binary data or None)}, checked for names and the
    binary data's sizes; the values themselves are read by _batch."""
    if not isinstance(inputs, list) or not inputs:
        raise _bad('"inputs" must be a non-empty list of tensors')
    found, offset = {}, 0
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise _bad(f"inputs[{i}] must be an object with name, shape, datatype and data")
        name = tensor.get("name")
        if name not in (IMAGE, IMAGE_BYTES):
            raise _bad(f"inputs[{i}]: no input {name!r}; this model takes {IMAGE!r} (FP32 "
                       f"[-1, C, H, W]) or {IMAGE_BYTES!r} (BYTES [-1], encoded images)")
        if found:
            raise _bad(f"send one input, {IMAGE!r} or {IMAGE_BYTES!r}; got more")
        parameters = _object(tensor.get("parameters"), f"input {name!r}: parameters")
        size = parameters.get("binary_data_size")
        if size is None:
            if "data" not in tensor:
                raise _bad(f"input {name!r} has neither data nor parameters.binary_data_size")
            found[name] = (tensor, None)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 \
                or offset + size > len(binary):
            raise _bad(f"input {name!r}: binary_data_size {size!r} does not fit the "
                       f"{len(binary) - offset} bytes of binary data left in the body")
        if "data" in tensor:
            raise _bad(f"input {name!r} has both data and parameters.binary_data_size")
        found[name] = (tensor, binary[offset:offset + size])
        offset += size
    if offset != len(binary):
        raise _bad(f"{len(binary) - offset} bytes of binary data follow the inputs' "
                   "binary_data_size; the sizes must add up to the binary part of the body")
    return found


def _outputs(requested, served: Served, binary_default: bool) -> list[tuple[str, bool]]:
    """[(output name, as binary data)] in the order asked for; the defaults without a list."""
    if not requested:
        return [(name, binary_default) for name in DEFAULT_OUTPUTS]
    if not isinstance(requested, list):
        raise _bad('"outputs" must be a list of {"name": ...} objects')
    available = list(_output_shapes(served))
    wanted = []
    for i, output in enumerate(requested):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in available:
            raise _bad(f"outputs[{i}]: no output {name!r}; outputs: {', '.join(available)}")
        if any(name == other for other, _ in wanted):
            raise _bad(f"output {name!r} is asked for twice")
        parameters = _object(output.get("parameters"), f"output {name!r}: parameters")
        if "classification" in parameters:
            raise _bad(f"output {name!r}: the classification extension is not supported; ask "
                       "for probabilities")
        wanted.append((name, _flag(parameters.get("binary_data", binary_default),
                                   f"output {name!r}: parameters.binary_data")))
    return wanted


def _batch(served: Served, inputs: dict, parameters: dict) -> np.ndarray:
    """The N x C x H x W float32 batch model.onnx takes, from whichever input was sent."""
    spec = served.bundle.manifest["input"]
    limit = served.settings.max_batch
    (name, (tensor, raw)), = inputs.items()
    expected = {IMAGE: FP32, IMAGE_BYTES: BYTES}[name]
    if tensor.get("datatype") != expected:
        raise _bad(f"input {name!r} is {expected}; got datatype {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    sample = [spec["channels"], spec["height"], spec["width"]] if name == IMAGE else []
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                            for d in shape)
            and len(shape) == 1 + len(sample) and shape[1:] == sample):
        raise _bad(f"input {name!r} has shape {shape!r}; this model takes {[-1, *sample]!r}")
    if not 1 <= shape[0] <= limit:
        raise _bad(f"a batch of {shape[0]} in one request; from 1 to {limit} are accepted "
                   "(CNNLENS_MAX_BATCH)")
    if name == IMAGE:
        return _floats(tensor, raw, shape)
    mode = parameters.get("preprocess", default_mode(spec))
    if mode not in MODES:
        raise _bad(f"parameters.preprocess must be one of {', '.join(MODES)}; got {mode!r}")
    decoded = images.decode_all(_blobs(tensor, raw, shape[0]), served.settings.max_pixels,
                                served.settings.max_request_pixels, shrink_to=PREPROCESS_SIDE)
    return np.stack([model_input(image, spec, mode) for image in decoded])


def _floats(tensor: dict, raw: bytes | None, shape: list[int]) -> np.ndarray:
    count = math.prod(shape)
    if raw is not None:
        if len(raw) != 4 * count:
            raise _bad(f"input 'image' of shape {shape} needs {4 * count} bytes of FP32 binary "
                       f"data; got {len(raw)}")
        values = np.frombuffer(raw, "<f4")
    else:
        data = tensor["data"]
        try:
            values = np.asarray(data) if isinstance(data, list) else None
        except ValueError:   # ragged nesting
            values = None
        if values is None or values.dtype.kind not in "iuf" or values.size != count:
            raise _bad(f"input 'image': data must be {count} numbers (shape {shape}), flat or "
                       "nested in row-major order")
    values = values.astype(np.float32).reshape(shape)
    if not np.isfinite(values).all():
        raise _bad("input 'image' has NaN or infinite values; pixels are in [0, 1]")
    return values


def _blobs(tensor: dict, raw: bytes | None, count: int) -> list[bytes]:
    if raw is not None:
        blobs, at = [], 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise _bad("input 'image_bytes': binary data ends inside an element's length")
            size = int.from_bytes(raw[at:at + 4], "little")
            if at + 4 + size > len(raw):
                raise _bad("input 'image_bytes': an element is longer than the binary data left")
            blobs.append(raw[at + 4:at + 4 + size])
            at += 4 + size
    else:
        data = tensor["data"]
        texts = data if isinstance(data, list) else [data]
        while texts and all(isinstance(item, list) for item in texts):   # nested: [[...]]
            texts = [item for nested in texts for item in nested]
        blobs = [images.from_base64(text, f"image_bytes[{i}]") for i, text in enumerate(texts)]
    if len(blobs) != count:
        raise _bad(f"input 'image_bytes' has shape [{count}] but {len(blobs)} elements")
    return blobs


# --- OpenAPI --------------------------------------------------------------------------------------

@blueprint.openapi
def _openapi(served: Served, models: list[str]) -> openapi.Part:
    """The /v2 paths for /openapi.json, with their schemas inline."""
    limits = served.settings
    error = {"type": "object", "required": ["error"], "additionalProperties": False,
             "properties": {"error": {"type": "string"}}}

    def json_reply(description: str, schema: dict) -> dict:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    def errors(statuses: dict[str, str]) -> dict:
        return {status: json_reply(description, error) for status, description in statuses.items()}

    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
            "description": f"a served model: {', '.join(models)}"}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "the model's version (its manifest's; one per model)"}
    tensor_shape = {"type": "array", "items": {"type": "integer"}}
    tensor_metadata = {"type": "object", "required": ["name", "datatype", "shape"],
                       "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                                      "shape": tensor_shape, "parameters": {"type": "object"}}}
    model_metadata = {"type": "object",
                      "required": ["name", "versions", "platform", "inputs", "outputs"],
                      "properties": {"name": {"type": "string"},
                                     "versions": {"type": "array", "items": {"type": "string"}},
                                     "platform": {"const": PLATFORM},
                                     "inputs": {"type": "array", "items": tensor_metadata},
                                     "outputs": {"type": "array", "items": tensor_metadata}}}
    model_ready = {"type": "object", "required": ["name", "ready"],
                   "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}}
    request_body = {
        "type": "object", "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {
                "binary_data_output": {"type": "boolean"},
                "preprocess": {"enum": list(MODES),
                               "description": "for image_bytes; the model's default without it"}}},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"enum": [IMAGE, IMAGE_BYTES]},
                    "shape": tensor_shape, "datatype": {"enum": [FP32, BYTES]},
                    "parameters": {"type": "object", "properties": {
                        "binary_data_size": {"type": "integer", "minimum": 0}}},
                    "data": {"type": "array", "description":
                             "row-major, flat or nested; image_bytes: base64 strings"}}}},
            "outputs": {"type": "array", "items": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"enum": list(_output_shapes(served))},
                               "parameters": {"type": "object", "properties": {
                                   "binary_data": {"type": "boolean"}}}}}}}}
    response_body = {
        "type": "object", "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "id": {"type": "string"}, "parameters": {"type": "object"},
            "outputs": {"type": "array", "items": {
                "type": "object", "required": ["name", "shape", "datatype"],
                "properties": {"name": {"type": "string"}, "shape": tensor_shape,
                               "datatype": {"const": FP32},
                               "parameters": {"type": "object", "properties": {
                                   "binary_data_size": {"type": "integer"}}},
                               "data": {"type": "array", "items": {"type": "number"}}}}}}}
    binary = {"type": "string", "contentMediaType": "application/octet-stream",
              "description": f"the JSON object, then the tensors' binary data; the "
                             f"{HEADER} header gives the JSON part's length"}
    unknown = errors({"404": "unknown model or version", "500": "unexpected server error"})
    infer = {"post": {
        "summary": "Open Inference Protocol v2 inference: an FP32 NCHW 'image' tensor or encoded "
                   "image files as BYTES 'image_bytes'; outputs probabilities, logits (the "
                   "default) and layer activations by name",
        "description": "Binary tensor data extension supported: with the "
                       f"{HEADER} header the body is JSON then binary data. Errors are "
                       '{"error": message}, not problem+json. Limits: a batch (the first '
                       f"dimension) of 1 to {limits.max_batch}; a body of at most "
                       f"{limits.max_request_bytes} bytes; image_bytes: at most "
                       f"{limits.max_pixels} pixels per image and {limits.max_request_pixels} "
                       "in all.",
        "parameters": [name],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": request_body},
                                    "application/octet-stream": {"schema": binary}}},
        "responses": {"200": {"description": "the outputs; application/octet-stream (JSON then "
                                             "binary data) when an output is asked for as binary",
                              "content": {"application/json": {"schema": response_body},
                                          "application/octet-stream": {"schema": binary}}}}
                     | errors({"400": "malformed request, unknown input or output, wrong shape "
                                      "or datatype, non-finite value, batch over the limit, or "
                                      "an image that cannot be decoded",
                               "413": "body over the size limit"})
                     | unknown}}

    def with_version(operation: dict) -> dict:
        return {method: op | {"parameters": [name, version]} for method, op in operation.items()}

    metadata_op = {"get": {"summary": "Open Inference Protocol v2 model metadata",
                           "parameters": [name],
                           "responses": {"200": json_reply("the model", model_metadata)} | unknown}}
    ready_op = {"get": {"summary": "Open Inference Protocol v2: the model is ready",
                        "parameters": [name],
                        "responses": {"200": json_reply("ready", model_ready)} | unknown}}
    return openapi.Part(paths={
        "/v2": {"get": {"summary": "Open Inference Protocol v2 server metadata",
                        "responses": {"200": json_reply("the server", {
                            "type": "object", "required": ["name", "version", "extensions"],
                            "properties": {"name": {"type": "string"},
                                           "version": {"type": "string"},
                                           "extensions": {"type": "array",
                                                          "items": {"type": "string"}}}})}}},
        "/v2/health/live": {"get": {"summary": "Open Inference Protocol v2: the server is live",
                                    "responses": {"200": json_reply("live", {
                                        "type": "object", "required": ["live"],
                                        "properties": {"live": {"const": True}}})}}},
        "/v2/health/ready": {"get": {"summary": "Open Inference Protocol v2: every model is ready",
                                     "responses": {"200": json_reply("ready", {
                                         "type": "object", "required": ["ready"],
                                         "properties": {"ready": {"const": True}}})}}},
        "/v2/models/{name}": metadata_op,
        "/v2/models/{name}/versions/{version}": with_version(metadata_op),
        "/v2/models/{name}/ready": ready_op,
        "/v2/models/{name}/versions/{version}/ready": with_version(ready_op),
        "/v2/models/{name}/infer": infer,
        "/v2/models/{name}/versions/{version}/infer": with_version(infer),
    })
