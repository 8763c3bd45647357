"""POST /explain and POST /feature-maps, on both clients, checked against the bundle's graphs run
directly with onnxruntime (the methods themselves are checked against torch in
tests/lens/test_attribution.py)."""
from __future__ import annotations

import base64
import io

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from tests.service import imagefiles
from tests.service.conftest import LIMITS
from tests.service.reference import MODEL_DIR

METHODS = ["saliency", "smoothgrad", "integrated_gradients", "gradcam"]
TOLERANCE = 1e-5


def _png(text: str) -> Image.Image:
    data = base64.b64decode(text)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(data))


@pytest.fixture(scope="module")
def gradient(reference):
    """d logit_t / d image from gradient.onnx, fed by hand from the manifest."""
    session = ort.InferenceSession(str(MODEL_DIR / "gradient.onnx"),
                                   providers=["CPUExecutionProvider"])

    def run(image: np.ndarray, target: int) -> np.ndarray:
        feeds = {"image": image.reshape(1, 1, 28, 28).astype(np.float32)}
        channels = {layer["name"]: layer["channels"] for layer in reference.manifest["layers"]}
        for name in reference.manifest["graphs"]["gradient"]["inputs"][1:]:
            kind, _, target_name = name.partition(".")
            count = channels[target_name.removesuffix(".pre")]
            feeds[name] = np.zeros((1, count) if kind == "weights" else 1, np.float32)
        feeds["weights.logits"][0, target] = 1
        return session.run(["grad.image"], feeds)[0][0, 0]

    return run


@pytest.fixture(scope="module")
def digit(digits):
    pixels, _ = digits
    return pixels[14], imagefiles.mnist_png(pixels[14])     # a 7


@pytest.mark.parametrize("method", METHODS)
def test_every_method_answers_pngs_of_the_input_size_for_the_predicted_class(api, digit,
                                                                             reference, method):
    pixels, png = digit
    probabilities = reference.run(pixels[None] / 255)["probabilities"][0]
    reply = api.post(f"/explain?method={method}&preprocess=none", png, "image/png")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["method"] == method and body["model"] == {"name": "mnist-cnn", "version": "1"}
    assert body["target"]["index"] == int(probabilities.argmax())
    assert body["target"]["probability"] == pytest.approx(probabilities.max(), abs=TOLERANCE)
    assert [p["index"] for p in body["prediction"]] == list(np.argsort(-probabilities)[:3])
    for name, mode in (("heatmap", "RGB"), ("overlay", "RGB"), ("input", "L")):
        picture = _png(body[name])
        assert picture.size == (28, 28) and picture.mode == mode, name
    seen = np.asarray(_png(body["input"]), np.float32)
    assert np.array_equal(seen, pixels.reshape(28, 28).astype(np.float32))
    assert "values" not in body


def test_the_default_method_is_gradcam_and_png_is_the_overlay(api, digit):
    _, png = digit
    body = api.post("/explain?preprocess=none", png, "image/png").json()
    assert body["method"] == "gradcam"
    reply = api.post("/explain?preprocess=none", png, "image/png",
                     headers={"Accept": "image/png"})
    assert reply.status == 200 and reply.mimetype == "image/png"
    assert reply.body == base64.b64decode(body["overlay"])


def test_raw_saliency_is_the_gradient_of_the_target_logit(api, digit, gradient):
    pixels, png = digit
    for target in (7, 3):
        reply = api.post(f"/explain?method=saliency&target={target}&raw=true&preprocess=none",
                         png, "image/png")
        body = reply.json()
        assert body["target"]["index"] == target and body["target"]["label"] == str(target)
        expected = np.abs(gradient(pixels / 255, target))
        values = np.array(body["values"])
        assert values.shape == (28, 28)
        assert np.allclose(values, expected, atol=TOLERANCE * expected.max())
        # the heatmap is brightest where the map is largest
        heat = np.asarray(_png(body["heatmap"]), np.float32).sum(axis=2)
        assert heat.flat[values.argmax()] == heat.max()


@pytest.mark.parametrize("baseline", ["black", "blur"])
def test_raw_integrated_gradients_are_complete(api, digit, reference, baseline):
    """The attributions add up to logit(x) - logit(baseline) as model.onnx measures them; the
    black baseline's logit is measured directly (within 1 % of the gap at 128 steps; measured
    0.02 %, see tests/lens/test_attribution.py)."""
    pixels, png = digit
    reply = api.post(f"/explain?method=integrated_gradients&steps=128&raw=true&preprocess=none"
                     f"&baseline={baseline}", png, "image/png")
    values = np.array(reply.json()["values"])
    assert values.shape == (28, 28)
    target = reply.json()["target"]["index"]
    logit = reference.run(pixels[None] / 255)["logits"][0, target]
    if baseline == "black":
        gap = logit - reference.run(np.zeros((1, 28, 28)))["logits"][0, target]
        assert abs(values.sum() - gap) <= 0.01 * abs(gap)
    assert values[pixels.reshape(28, 28) == 0].any() == (baseline == "blur")   # black: x - x' = 0


def test_smoothgrad_is_deterministic_per_seed(api, digit):
    _, png = digit
    def values(query):
        return np.array(api.post(f"/explain?method=smoothgrad&raw=true&samples=8&{query}", png,
                                 "image/png").json()["values"])
    assert np.array_equal(values("seed=1"), values("seed=1"))
    assert not np.array_equal(values("seed=1"), values("seed=2"))
    assert not np.array_equal(values("seed=1&noise=0.5"), values("seed=1&noise=0.1"))


def test_gradcam_takes_any_conv_layer_and_its_map_is_not_negative(api, digit):
    """Grad-CAM keeps only evidence for the class (a ReLU over the weighted maps): at conv2 some
    of the seven is; at conv1, whose filters are edges shared by every class, the weighted sum
    may be negative everywhere (it is for the default bundle), and then the map is all zero."""
    _, png = digit
    maps = {}
    for layer in ("conv1", "conv2"):
        reply = api.post(f"/explain?method=gradcam&layer={layer}&raw=true", png, "image/png")
        assert reply.status == 200, reply.body
        maps[layer] = np.array(reply.json()["values"])
        assert maps[layer].shape == (28, 28) and maps[layer].min() >= 0
    assert maps["conv2"].max() > 0
    assert not np.allclose(maps["conv1"], maps["conv2"])


def test_a_drawing_is_preprocessed_as_for_predict(api):
    png = imagefiles.encode(imagefiles.drawn_digit(imagefiles.SEVEN))
    explained = api.post("/explain?method=saliency", png, "image/png").json()
    predicted = api.post("/predict", png, "image/png").json()
    assert explained["prediction"] == predicted["results"][0]["top_k"]
    assert explained["target"]["label"] == "7"


@pytest.mark.parametrize("query, status", [
    ("method=lime", 422), ("target=10", 422), ("target=-1", 422), ("target=seven", 400),
    ("method=gradcam&layer=dense1", 422), ("layer=conv9", 422), ("samples=0", 422),
    (f"samples={LIMITS['max_explain_samples'] + 1}", 422), ("noise=1.5", 422), ("noise=-0.1", 422), ("noise=nan", 400),
    ("steps=0", 422), (f"steps={LIMITS['max_explain_samples'] + 1}", 422), ("baseline=white", 422), ("seed=-1", 422),
    ("raw=maybe", 400), ("preprocess=sharpen", 422), ("model=nope", 404)])
def test_bad_parameters(api, digit, query, status):
    reply = api.post(f"/explain?{query}", digit[1], "image/png")
    assert reply.status == status, reply.body
    assert reply.mimetype == "application/problem+json"


def test_one_image_only_and_an_image_is_needed(api, digit):
    assert api.post_files("/explain", [digit[1], digit[1]]).status == 413
    assert api.post("/explain").status == 400
    assert api.post("/explain", b"not an image", "image/png").status == 422


# --- /feature-maps -------------------------------------------------------------------------------

def _tiles(grid: np.ndarray, shape) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Cut the grid into (label strips, maps), the layout worked out from the grid's size: tiles
    in rows of ceil(sqrt(C)) with 1-pixel gaps, each map upscaled by an integer factor under a
    label strip."""
    count, height, width = shape
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    factor, rest = divmod((grid.shape[1] + 1) // cols - 1, width)
    assert rest == 0 and (grid.shape[1] + 1) % cols == 0
    tile_h = (grid.shape[0] + 1) // rows - 1
    strip = tile_h - height * factor
    assert strip > 0
    strips, maps = [], []
    for k in range(count):
        top, left = (k // cols) * (tile_h + 1), (k % cols) * (width * factor + 1)
        strips.append(grid[top:top + strip, left:left + width * factor])
        maps.append(grid[top + strip:top + tile_h:factor, left:left + width * factor:factor])
    return strips, maps


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_feature_maps_grid_and_ranking(api, digit, reference, layer):
    pixels, png = digit
    outputs = reference.run(pixels[None] / 255)
    activation = outputs[layer][0]
    reply = api.post(f"/feature-maps?layer={layer}&preprocess=none", png, "image/png")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["layer"] == layer and body["model"]["name"] == "mnist-cnn"
    probabilities = outputs["probabilities"][0]
    assert [p["index"] for p in body["prediction"]] == list(np.argsort(-probabilities)[:3])
    means = activation.reshape(len(activation), -1).mean(axis=1)
    maxima = activation.reshape(len(activation), -1).max(axis=1)
    ranking = body["ranking"]
    assert sorted(entry["index"] for entry in ranking) == list(range(len(activation)))
    assert np.allclose([entry["mean"] for entry in ranking], np.sort(means)[::-1], atol=TOLERANCE)
    for entry in ranking:
        assert entry["mean"] == pytest.approx(means[entry["index"]], abs=TOLERANCE)
        assert entry["max"] == pytest.approx(maxima[entry["index"]], abs=TOLERANCE)
    grid = np.asarray(_png(body["grid"]).convert("L"), np.float32) / 255
    strips, maps = _tiles(grid, activation.shape)
    for k, plane in enumerate(maps):      # one scale: the layer's largest activation is white
        assert np.allclose(plane, activation[k] / activation.max(), atol=1 / 255 + 1e-6), k
    # every tile is labelled, and differently (its index)
    assert all(strip.max() > 0.5 for strip in strips)
    assert len({strip.tobytes() for strip in strips}) == len(strips)


def test_feature_maps_png_is_the_grid(api, digit):
    body = api.post("/feature-maps?layer=conv1", digit[1], "image/png").json()
    reply = api.post("/feature-maps?layer=conv1", digit[1], "image/png",
                     headers={"Accept": "image/png"})
    assert reply.status == 200 and reply.mimetype == "image/png"
    assert reply.body == base64.b64decode(body["grid"])


@pytest.mark.parametrize("query, status", [("", 400), ("layer=dense1", 422), ("layer=conv9", 422),
                                           ("layer=conv1&model=nope", 404)])
def test_feature_maps_bad_layer(api, digit, query, status):
    reply = api.post(f"/feature-maps?{query}", digit[1], "image/png")
    assert reply.status == status, reply.body
    assert reply.mimetype == "application/problem+json"
