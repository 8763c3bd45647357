"""POST /predict: compared with model.onnx run directly, on real MNIST digits and drawings."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.service import imagefiles

TOLERANCE = 1e-5


def _expected_top(probabilities: np.ndarray, k: int) -> list[int]:
    return list(np.argsort(-probabilities, kind="stable")[:k])


def test_mnist_digits_match_the_model_run_directly(api, digits, reference):
    pixels, labels = digits
    expected = reference.run(pixels / 255)["probabilities"]
    reply = api.post_json("/predict?preprocess=none&top_k=10",
                          {"images": [base64.b64encode(imagefiles.mnist_png(p)).decode()
                                      for p in pixels[:4]]})
    assert reply.status == 200, reply.body
    results = reply.json()["results"]
    assert len(results) == 4
    for result, probabilities in zip(results, expected):
        assert [entry["index"] for entry in result["top_k"]] == _expected_top(probabilities, 10)
        got = {entry["index"]: entry["probability"] for entry in result["top_k"]}
        assert np.allclose([got[i] for i in range(10)], probabilities, atol=TOLERANCE)


def test_every_mnist_digit_one_request_each(api, digits, reference):
    """20 digits as single raw PNGs; the predicted label is the model's own and (for this 99%
    model) the true one for nearly all."""
    pixels, labels = digits
    expected = reference.run(pixels / 255)["probabilities"].argmax(axis=1)
    predicted = []
    for row in pixels:
        reply = api.post("/predict?preprocess=none&top_k=1", imagefiles.mnist_png(row), "image/png")
        predicted.append(reply.json()["results"][0]["top_k"][0]["index"])
    assert predicted == list(expected)
    assert np.mean(np.array(predicted) == labels) >= 0.9


def test_a_batch_keeps_its_order_in_every_format(api, digits, reference):
    pixels, _ = digits
    batch = [imagefiles.mnist_png(p) for p in pixels[[3, 11, 17]]]
    expected = list(reference.run(pixels[[3, 11, 17]] / 255)["probabilities"].argmax(axis=1))
    replies = [api.post_files("/predict?preprocess=none", batch),
               api.post_json("/predict?preprocess=none",
                             {"images": [base64.b64encode(b).decode() for b in batch]})]
    for reply in replies:
        assert reply.status == 200, reply.body
        assert [r["top_k"][0]["index"] for r in reply.json()["results"]] == expected


@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                       ("WEBP", "image/webp"), ("BMP", "image/bmp"),
                                       ("GIF", "image/gif")])
@pytest.mark.parametrize("digit, strokes", [(7, imagefiles.SEVEN), (1, imagefiles.ONE)])
def test_dark_digit_drawn_on_a_large_white_canvas_is_recognised(api, fmt, mime, digit, strokes):
    data = imagefiles.encode(imagefiles.drawn_digit(strokes), fmt)
    reply = api.post("/predict", data, mime)
    assert reply.status == 200, reply.body
    assert reply.json()["preprocess"] == "digit"
    assert reply.json()["results"][0]["top_k"][0]["label"] == str(digit)


def test_data_url_and_single_image_json(api):
    png = imagefiles.encode(imagefiles.drawn_digit(imagefiles.SEVEN))
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    reply = api.post_json("/predict", {"image": url})
    assert reply.status == 200, reply.body
    assert reply.json()["results"][0]["top_k"][0]["label"] == "7"


def test_activations_are_the_mean_and_max_of_every_channel(api, digits, reference):
    pixels, _ = digits
    outputs = reference.run(pixels[:1] / 255)
    reply = api.post("/predict?preprocess=none&activations=true",
                     imagefiles.mnist_png(pixels[0]), "image/png")
    activations = reply.json()["results"][0]["activations"]
    assert set(activations) == {"conv1", "conv2", "dense1", "logits"}
    for layer, values in activations.items():
        flat = outputs[layer][0].reshape(outputs[layer].shape[1], -1)
        assert np.allclose(values["mean"], flat.mean(axis=1), atol=TOLERANCE)
        assert np.allclose(values["max"], flat.max(axis=1), atol=TOLERANCE)


def test_no_activations_unless_asked(api, digits):
    reply = api.post("/predict", imagefiles.mnist_png(digits[0][0]), "image/png")
    result = reply.json()["results"][0]
    assert "activations" not in result and "feature_maps" not in result
    assert len(result["top_k"]) == 3


def test_feature_maps_show_each_channel_on_one_scale(api, digits, reference):
    pixels, _ = digits
    conv1 = reference.run(pixels[:1] / 255)["conv1"][0]          # 25 x 26 x 26
    reply = api.post("/predict?preprocess=none&feature_maps=conv1,conv2",
                     imagefiles.mnist_png(pixels[0]), "image/png")
    maps = reply.json()["results"][0]["feature_maps"]
    assert set(maps) == {"conv1", "conv2"}
    grid = np.asarray(Image.open(io.BytesIO(base64.b64decode(maps["conv1"]))), np.float32) / 255
    assert grid.shape == (5 * 27 - 1, 5 * 27 - 1)
    for k in (0, 7, 24):
        row, col = divmod(k, 5)
        cell = grid[row * 27:row * 27 + 26, col * 27:col * 27 + 26]
        assert np.allclose(cell, conv1[k] / conv1.max(), atol=1 / 255 + 1e-6)


def test_top_k_is_sorted_and_names_the_model(api, digits):
    reply = api.post("/predict?top_k=2", imagefiles.mnist_png(digits[0][0]), "image/png")
    body = reply.json()
    assert reply.mimetype == "application/json"
    assert body["model"] == {"name": "mnist-cnn", "version": "1"}
    probabilities = [entry["probability"] for entry in body["results"][0]["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) == 2


def _digit_like(api, png: bytes) -> dict:
    reply = api.post("/predict?top_k=1", png, "image/png")
    assert reply.status == 200, reply.body
    return reply.json()["results"][0]


def test_every_result_says_whether_it_looks_like_a_digit(api, reference):
    """digit_score is model.onnx's output for the preprocessed upload, digit_like compares it with
    the manifest's threshold: a drawn seven passes, a blank canvas, noise and a photo do not."""
    threshold = reference.manifest["digit_like"]["threshold"]
    seven = imagefiles.encode(imagefiles.drawn_digit(imagefiles.SEVEN), "PNG")
    result = _digit_like(api, seven)
    assert result["digit_like"] is True and result["top_k"][0]["label"] == "7"
    assert result["digit_score"] >= threshold
    blank = imagefiles.encode(Image.new("L", (280, 280), 255), "PNG")
    noise = imagefiles.encode(Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)), "PNG")
    photo = imagefiles.encode(imagefiles.photo_like(), "PNG")
    for png in (blank, noise, photo):
        result = _digit_like(api, png)
        assert result["digit_like"] is False
        assert result["digit_score"] < threshold


def test_digit_score_is_the_models_own(api, digits, reference):
    pixels, _ = digits
    expected = reference.run(pixels[:5] / 255)["digit_score"]
    for row, score in zip(pixels[:5], expected):
        reply = api.post("/predict?preprocess=none", imagefiles.mnist_png(row), "image/png")
        result = reply.json()["results"][0]
        assert result["digit_score"] == pytest.approx(float(score), abs=1e-4)
        assert result["digit_like"] == (score >= reference.manifest["digit_like"]["threshold"])
