"""Limits on gradient work: /dream's pixel-steps, /explain's samples and time budget, and the
per-worker bound on concurrent gradient requests (load shedding), on the Flask test client and a
real gunicorn, every reply checked against /openapi.json."""
from __future__ import annotations

import base64
import math
from concurrent.futures import ThreadPoolExecutor, as_completed

import pytest

from service import create_app
from service.settings import Settings, SettingsError
from tests.service import imagefiles
from tests.service.conftest import LIMITS, gunicorn_env, serving
from tests.service.contract import Contract
from tests.service.http import Client, InProcess
from tests.service.reference import MODEL_DIR

JSON = {"Accept": "application/json"}


def _problem(reply, status: int) -> dict:
    assert reply.status == status, reply.body
    assert reply.mimetype == "application/problem+json"
    return reply.json()


def _dream_work(height: int, width: int, steps: int, octaves: int, scale: float = 1.4) -> int:
    """Pixels through gradient.onnx: each octave's image (the side divided by scale^i, rounded)
    for every step, and the full-size image twice (the objective before and after)."""
    per_step = sum(round(height / scale ** i) * round(width / scale ** i) for i in range(octaves))
    return steps * per_step + 2 * height * width


def test_a_dream_over_the_work_limit_is_refused_with_what_would_fit(api):
    """512x512 with 2 octaves: 8 steps fit under the limit, 9 do not."""
    limit = LIMITS["max_dream_work"]
    assert _dream_work(512, 512, 8, 2) <= limit < _dream_work(512, 512, 9, 2)
    path = "/dream?targets=conv2&start=noise&width=512&height=512&octaves=2&steps={}"
    detail = _problem(api.post(path.format(9)), 422)["detail"]
    assert str(_dream_work(512, 512, 9, 2)) in detail and str(limit) in detail
    assert "steps=8 fits" in detail
    # At the limit it is accepted (the time budget cuts it short: the limit is what is tested).
    assert api.post(path.format(8) + "&time_budget=0.1").status == 200


def test_an_uploaded_image_counts_at_its_size(api):
    """A 512x512 photo costs what a 512x512 noise start does (octave_scale=1.0: four full-size
    octaves, which the bounds allow)."""
    photo = imagefiles.encode(imagefiles.photo_like(512, 512), "JPEG")
    limit = LIMITS["max_dream_work"]
    assert _dream_work(512, 512, 3, 4, 1.0) <= limit < _dream_work(512, 512, 4, 4, 1.0)
    detail = _problem(api.post("/dream?targets=conv2&steps=4&octaves=4&octave_scale=1.0", photo,
                               "image/jpeg"), 422)["detail"]
    assert str(_dream_work(512, 512, 4, 4, 1.0)) in detail and "steps=3 fits" in detail


@pytest.mark.parametrize("method, parameter", [("smoothgrad", "samples"),
                                               ("integrated_gradients", "steps")])
def test_explain_samples_up_to_the_limit(api, method, parameter):
    png = imagefiles.encode(imagefiles.drawn_digit(imagefiles.SEVEN))
    most = LIMITS["max_explain_samples"]
    assert api.post(f"/explain?method={method}&{parameter}={most}", png, "image/png").status == 200
    detail = _problem(api.post(f"/explain?method={method}&{parameter}={most + 1}", png,
                               "image/png"), 422)["detail"]
    assert str(most) in detail


def _parameter(document: dict, path: str, name: str) -> dict:
    return next(p for p in document["paths"][path]["post"]["parameters"] if p["name"] == name)


def test_the_document_states_the_limits_and_the_503s(contract):
    document = contract.document
    for name in ("samples", "steps"):
        assert _parameter(document, "/explain", name)["schema"]["maximum"] == \
            LIMITS["max_explain_samples"]
    assert str(LIMITS["max_dream_work"]) in \
        document["paths"]["/dream"]["post"]["responses"]["422"]["description"]
    for path in ("/dream", "/explain"):
        busy = document["paths"][path]["post"]["responses"]["503"]
        assert busy["headers"]["Retry-After"]["required"] is True
        assert "application/problem+json" in busy["content"]


def test_every_time_budget_must_fit_in_gunicorns_timeout():
    with pytest.raises(SettingsError, match="CNNLENS_TIMEOUT.*CNNLENS_EXPLAIN_TIME_BUDGET"):
        Settings.from_env({"CNNLENS_EXPLAIN_TIME_BUDGET": "55"})
    assert Settings.from_env({"CNNLENS_EXPLAIN_TIME_BUDGET": "55", "CNNLENS_TIMEOUT": "65"})


def test_a_request_may_always_hold_one_image_of_the_largest_size():
    with pytest.raises(SettingsError, match="CNNLENS_MAX_REQUEST_PIXELS=1000000 must be at least "
                                            "CNNLENS_MAX_PIXELS=2000000"):
        Settings.from_env({"CNNLENS_MAX_PIXELS": "2000000", "CNNLENS_MAX_REQUEST_PIXELS": "1000000"})
    assert Settings.from_env({"CNNLENS_MAX_PIXELS": "2000000",
                              "CNNLENS_MAX_REQUEST_PIXELS": "2000000"})


@pytest.fixture(scope="module")
def tight():
    """An app with the lowest dream work limit (10000 pixel-steps) and an /explain budget (0.1 s)
    far below its largest request: 4096 Integrated Gradients steps, about 2 s of gradient runs on
    an idle core."""
    app = create_app(Settings(models_dir=MODEL_DIR, **LIMITS | dict(
        max_dream_work=10_000, max_explain_samples=4096, explain_time_budget=0.1)))
    return InProcess(app, Contract(InProcess(app).get("/openapi.json").json()))


def test_the_work_limit_at_its_lowest(tight):
    """28x28: 10 steps fit in 10000 pixel-steps, 11 do not; at 64x64 not even one step does."""
    assert _dream_work(28, 28, 10, 1) <= 10_000 < _dream_work(28, 28, 11, 1)
    assert tight.post("/dream?targets=conv2&steps=10").status == 200
    assert "steps=10 fits" in _problem(tight.post("/dream?targets=conv2&steps=11"), 422)["detail"]
    detail = _problem(tight.post("/dream?targets=conv2&steps=1&width=64&height=64"), 422)["detail"]
    assert "one step at 1 octave(s) does not fit" in detail


def test_explain_over_its_time_budget_is_a_503_not_a_partial_map(tight):
    png = imagefiles.encode(imagefiles.drawn_digit(imagefiles.SEVEN))
    reply = tight.post("/explain?method=integrated_gradients&steps=4096&raw=true", png,
                         "image/png")
    detail = _problem(reply, 503)["detail"]
    assert "of 4096 gradient samples" in detail
    assert int(reply.headers["retry-after"]) >= 1
    # the same app answers a request within its budget
    assert tight.post("/explain?method=integrated_gradients&steps=8", png,
                        "image/png").status == 200


def test_concurrent_dreams_are_shed_and_predict_is_still_answered(contract, tmp_path):
    """One worker with one gradient slot and six threads: of four long dreams sent at once, the
    one in the slot runs for seconds, the others get a 503 with Retry-After (at most that
    budget) after a short wait instead of queueing; meanwhile /predict and /healthz answer."""
    budget = 4
    env = gunicorn_env(CNNLENS_WORKERS="1", CNNLENS_THREADS="6",
                       CNNLENS_MAX_CONCURRENT_GRADIENT="1")
    dream = (f"/dream?targets=conv2&start=noise&width=512&height=512&steps=12"
             f"&time_budget={budget}")
    digit = imagefiles.encode(imagefiles.drawn_digit(imagefiles.SEVEN))
    with serving(env, tmp_path / "gunicorn.log") as (_, base):
        client = Client(base, contract)
        with ThreadPoolExecutor(4) as pool:
            dreams = [pool.submit(client.post, dream, headers=JSON) for _ in range(4)]
            shed = next((future.result() for future in as_completed(dreams)
                         if future.result().status == 503), None)
            assert shed is not None, [future.result().status for future in dreams]
            # a dream still holds the slot (the shed one waited for it): cheap requests pass
            assert client.post("/predict", digit, "image/png").status == 200
            assert client.get("/healthz").status == 200
            replies = [future.result() for future in dreams]
    assert sorted(reply.status for reply in replies) == [200, 503, 503, 503]
    assert 1 <= int(shed.headers["retry-after"]) <= math.ceil(budget)
    assert _problem(shed, 503)["title"] == "Service Unavailable"


@pytest.mark.parametrize("count, status", [(2, 422), (3, 413)])
def test_the_images_of_one_request_are_counted_together_before_any_is_decoded(api, count, status):
    """PNG headers of 1000x1000 images with no pixel data, each within CNNLENS_MAX_PIXELS: two
    hold the request's limit and go on to be decoded, which fails (422); three are refused from
    their headers (413), so none of them was decoded. /v2 counts them alike, and answers both
    with the protocol's 400."""
    side = 1000
    assert side * side == LIMITS["max_pixels"] and 2 * side * side == LIMITS["max_request_pixels"]
    header = imagefiles.png_header_only(side, side)
    problem = _problem(api.post_files("/predict", [header] * count), status)
    v2 = api.post_json("/v2/models/mnist-cnn/infer", {"inputs": [{
        "name": "image_bytes", "shape": [count], "datatype": "BYTES",
        "data": [base64.b64encode(header).decode()] * count}]})
    assert v2.status == 400, v2.body
    if status == 413:
        words = f"the {count} images hold {count * side * side} pixels in all"
        assert problem["detail"].startswith(words) and v2.json()["error"].startswith(words)


def test_the_document_states_the_bounds_of_targets_dream_uploads_and_v2(contract):
    """Bounds the service enforces that are not a parameter's maximum, written where a client
    reads about the request (the values in force: the test settings')."""
    paths = contract.document["paths"]
    targets = _parameter(contract.document, "/dream", "targets")
    assert "at most 16 terms, weights within ±100" in targets["description"]
    upload = paths["/dream"]["post"]["requestBody"]["description"]
    assert f"sides from 8 to {LIMITS['max_dream_side']} pixels" in upload
    infer = paths["/v2/models/{name}/infer"]["post"]["description"]
    assert (f"a batch (the first dimension) of 1 to {LIMITS['max_batch']}; a body of at most "
            f"{LIMITS['max_request_bytes']} bytes; image_bytes: at most {LIMITS['max_pixels']} "
            f"pixels per image and {LIMITS['max_request_pixels']} in all") in infer
