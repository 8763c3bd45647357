"""GET /filters...: compared with the bundle's files and with model.onnx's conv1 activations."""
from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from tests.service.reference import MODEL_DIR

MANIFEST = json.loads((MODEL_DIR / "manifest.json").read_text())


def _png(reply) -> Image.Image:
    assert reply.status == 200 and reply.mimetype == "image/png", reply.body
    return Image.open(io.BytesIO(reply.body))


def test_layers_list_what_the_manifest_says(api):
    reply = api.get("/filters")
    layers = reply.json()["layers"]
    assert [layer["name"] for layer in layers] == [layer["name"] for layer in MANIFEST["layers"]]
    for listed, declared in zip(layers, MANIFEST["layers"]):
        for key in ("kind", "channels", "kernel", "stride", "receptive_field"):
            assert listed[key] == declared[key]
        assert api.get(listed["links"]["self"]).status == 200
        assert api.get(listed["links"]["atlas"]).status == 200
    assert "weights" in layers[0]["links"] and "weights" not in layers[1]["links"]


def test_bundle_pictures_carry_their_sha256_as_etag(api):
    digest = MANIFEST["files"]["filters/conv2/7.png"]["sha256"]
    reply = api.get("/filters/conv2/7")
    assert reply.status == 200 and reply.headers["etag"] == f'"{digest}"'
    assert api.get("/filters/conv2/7", headers={"If-None-Match": f'"{digest}"'}).status == 304
    assert api.get("/filters/conv2/7", headers={"If-None-Match": '"other"'}).status == 200


@pytest.mark.parametrize("layer", ["conv1", "conv2", "dense1", "logits"])
def test_every_filter_picture_is_the_bundles_file(api, layer):
    listing = api.get(f"/filters/{layer}").json()["filters"]
    count = MANIFEST["visualizations"]["layers"][layer]["count"]
    assert [entry["index"] for entry in listing] == list(range(count))
    for k in (0, count - 1):
        reply = api.get(listing[k]["image"])
        assert reply.body == (MODEL_DIR / f"filters/{layer}/{k}.png").read_bytes()
    atlas = api.get(f"/filters/{layer}/atlas")
    assert atlas.body == (MODEL_DIR / f"filters/{layer}/atlas.png").read_bytes()


def test_scale_upscales_by_nearest_neighbour(api):
    original = Image.open(MODEL_DIR / "filters/conv2/5.png")
    scaled = _png(api.get("/filters/conv2/5?scale=3"))
    assert scaled.size == (original.width * 3, original.height * 3)
    assert np.array_equal(np.asarray(scaled)[::3, ::3], np.asarray(original))
    assert np.array_equal(np.asarray(scaled)[2::3, 2::3], np.asarray(original))


def test_conv1_weights_picture_shows_the_kernels_that_make_conv1(api, reference):
    """Decode the kernels from the picture and recompute conv1 with numpy on a random image:
    the result must match model.onnx's own conv1 output."""
    picture = np.asarray(_png(api.get("/filters/conv1/weights?scale=1")), np.float32) / 255
    graph = onnx.load(str(MODEL_DIR / "model.onnx")).graph
    tensors = [numpy_helper.to_array(t) for t in graph.initializer]
    kernels = next(t for t in tensors if t.shape == (25, 1, 3, 3))
    bias = next(t for t in tensors if t.shape == (25,))
    peak = np.abs(kernels).max()
    decoded = np.stack([(picture[r * 4:r * 4 + 3, c * 4:c * 4 + 3] - 0.5) * 2 * peak
                        for r in range(5) for c in range(5)])
    assert np.abs(decoded - kernels[:, 0]).max() <= peak / 127      # 8-bit rounding only

    image = np.random.default_rng(0).random((28, 28), dtype=np.float32)
    normalisation = MANIFEST["input"]["normalization"]
    x = (image - normalisation["mean"][0]) / normalisation["std"][0]
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3))        # 26 x 26 x 3 x 3
    conv1 = np.maximum(np.einsum("ijkl,ckl->cij", windows, decoded) + bias[:, None, None], 0)
    expected = reference.run(image[None])["conv1"][0]
    assert np.abs(conv1 - expected).max() < 0.05 * expected.max()


def test_weights_default_scale_makes_kernels_visible(api):
    assert _png(api.get("/filters/conv1/weights")).size == (19 * 16, 19 * 16)


@pytest.mark.parametrize("path", ["/filters/conv3", "/filters/conv3/1", "/filters/conv1/25",
                                  "/filters/conv1/-1", "/filters/conv1/one",
                                  "/filters/conv2/weights", "/filters/logits/10"])
def test_unknown_layer_or_index_is_404_problem(api, path):
    reply = api.get(path)
    assert reply.status == 404 and reply.mimetype == "application/problem+json"
    assert reply.json()["status"] == 404 and reply.json()["detail"]
