"""GET /filters...: compared with the bundle's files, with model.onnx's conv1 activations, and
(dataset examples) with model.onnx run on the training digits."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from lens import digit
from service import create_app
from service.settings import Settings
from tests.service.conftest import LIMITS
from tests.service.contract import Contract
from tests.service.http import InProcess
from tests.service.reference import MODEL_DIR
from training.data import Dataset, load_splits, validation_split

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


# Dataset examples (OpenAI Microscope's): checked against model.onnx run on the training digits.

LAYERS = [layer["name"] for layer in MANIFEST["layers"]]
CONV_LAYERS = [layer["name"] for layer in MANIFEST["layers"] if layer["kind"] == "conv"]
OLD_BUNDLE = "built before dataset examples"


@pytest.fixture(scope="module")
def training() -> Dataset:
    """The training split that the manifest's training.data describes (the units' "digit"), as
    the network saw it: each digit through lens.digit, the service's own preprocessing."""
    data, spec = MANIFEST["training"]["data"], MANIFEST["input"]
    train = load_splits(data["source"], holdout=data["holdout"], seed=data["split_seed"]).train
    train, _ = validation_split(train, data.get("validation_count", 0), data["split_seed"])
    seen = [digit.normalise(image[0] / 255, 28, 28, spec["foreground"], spec.get("deskew", False))
            for image in train.images]
    return Dataset(np.rint(np.stack(seen)[:, None] * 255).astype(np.uint8), train.labels,
                   train.classes)


@pytest.fixture(scope="module")
def measured(reference, training) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer, model.onnx on every training digit: each unit's degree of activation (the mean
    of its feature map; a dense unit's or logit's value) and its peak (the max over the map)."""
    parts = {name: [] for name in LAYERS}
    for start in range(0, len(training.labels), 500):
        outputs = reference.run(training.images[start:start + 500] / 255)
        for name in LAYERS:
            flat = outputs[name].reshape(*outputs[name].shape[:2], -1)
            parts[name].append((flat.mean(2), flat.max(2)))
    return {name: tuple(np.concatenate(column) for column in zip(*parts[name])) for name in LAYERS}


def _examples(api, layer: str, k: int) -> dict:
    reply = api.get(f"/filters/{layer}/{k}/examples")
    assert reply.status == 200 and reply.mimetype == "application/json", reply.body
    return reply.json()


def _feeds_the_output(layer: str) -> bool:
    position = LAYERS.index(layer)
    return (MANIFEST["layers"][position]["kind"] == "dense" and position + 1 < len(LAYERS)
            and MANIFEST["layers"][position + 1]["kind"] == "output")


@pytest.mark.parametrize("layer", LAYERS)
def test_the_listing_says_what_each_unit_does_on_the_digits(api, layer):
    visual = MANIFEST["visualizations"]["layers"][layer]
    for k, entry in enumerate(api.get(f"/filters/{layer}").json()["filters"]):
        assert entry["fidelity"] == visual["fidelity"][k]
        assert entry["dead"] == visual["dead"].get(str(k))
        assert entry["examples"] == f"/filters/{layer}/{k}/examples"
        assert entry["fire_rate"] == _examples(api, layer, k)["fire_rate"]


@pytest.mark.parametrize("layer", LAYERS)
def test_examples_are_the_training_digits_that_excite_the_unit_most(api, layer, measured, training):
    degree, peak = measured[layer]
    for k in range(degree.shape[1]):
        unit = _examples(api, layer, k)
        assert (unit["layer"], unit["index"]) == (layer, k)
        assert unit["digits"]["count"] == len(training.labels)
        digits = [example["digit"] for example in unit["examples"]]
        assert len(digits) == MANIFEST["units"]["per_unit"] == len(set(digits))
        served = [example["degree"] for example in unit["examples"]]
        # units.json rounds degrees to 5 decimals: half of that is the error a tiny degree can have
        assert np.allclose(served, degree[digits, k], rtol=1e-4, atol=5e-6)
        # The best, in order: the same degrees as the largest of all (ties may swap digits).
        best = np.sort(degree[:, k])[::-1][:len(digits)]
        assert np.allclose(served, best, rtol=1e-4, atol=5e-6)
        assert unit["best_degree"] == served[0]
        assert [e["label"] for e in unit["examples"]] == \
            [training.classes[training.labels[d]] for d in digits]
        fired = degree.argmax(axis=1) == k if layer == "logits" else peak[:, k] > 0
        if unit["fire_rate"] is not None or layer != "logits":
            assert unit["fire_rate"] == pytest.approx(fired.mean(), abs=0.5 / len(fired))
        assert ("pushes" in unit) == _feeds_the_output(layer)
        assert all(("box" in e) == (layer in CONV_LAYERS) for e in unit["examples"])


def _field(layer: dict, row: int, col: int) -> list[int]:
    """The receptive field of a map cell of a net without padding (the lecture's): cell (i, j)
    sees the receptive_field-sized square whose corner is stride * (i, j)."""
    (height, width), stride = layer["receptive_field"], layer["stride"]
    return [stride * row, stride * col, min(stride * row + height, 28), min(stride * col + width, 28)]


@pytest.mark.parametrize("layer", CONV_LAYERS)
def test_each_box_is_the_receptive_field_where_the_unit_fires_most(api, reference, layer, training):
    declared = next(entry for entry in MANIFEST["layers"] if entry["name"] == layer)
    for k in range(declared["channels"]):
        unit = _examples(api, layer, k)
        if unit["best_degree"] <= 0:
            continue                 # no digit makes it fire: no place where it fires most
        digits = [example["digit"] for example in unit["examples"]]
        maps = reference.run(training.images[digits] / 255)[layer][:, k]
        for example, plane in zip(unit["examples"], maps):
            strongest = np.argwhere(plane == plane.max())
            assert example["box"] in [_field(declared, *cell) for cell in strongest], (k, example)


@pytest.mark.parametrize("layer", CONV_LAYERS)
def test_a_box_holds_every_pixel_that_moves_the_cell(api, reference, layer, training):
    """The receptive field measured instead of computed: flip each pixel of a unit's best digit in
    turn; every pixel that changes the unit's strongest cell lies in the box, and the box is as
    large as the manifest's receptive field."""
    declared = next(entry for entry in MANIFEST["layers"] if entry["name"] == layer)
    checked = 0
    for k in range(0, declared["channels"], 6):
        example = _examples(api, layer, k)["examples"][0]
        image = training.images[example["digit"], 0] / 255
        flipped = np.repeat(image[None], image.size, axis=0)
        flipped.reshape(image.size, -1)[np.arange(image.size), np.arange(image.size)] = 1 - image.ravel()
        maps = reference.run(np.concatenate([image[None], flipped]))[layer][:, k]
        if maps[0].max() <= 0 or (maps[0] == maps[0].max()).sum() > 1:
            continue                 # dead, or no single strongest cell to measure
        row, col = np.unravel_index(maps[0].argmax(), maps[0].shape)
        moved = np.abs(maps[1:, row, col] - maps[0, row, col]) > 1e-6 * maps[0, row, col]
        rows, cols = np.divmod(np.flatnonzero(moved), image.shape[1])
        top, left, bottom, right = example["box"]
        assert moved.any()
        assert top <= rows.min() and rows.max() < bottom and left <= cols.min() and cols.max() < right
        assert [bottom - top, right - left] == declared["receptive_field"]
        checked += 1
    assert checked >= 3


def test_a_dense_units_pushes_are_its_largest_weights_into_the_logits(api):
    tensors = [numpy_helper.to_array(t) for t in onnx.load(str(MODEL_DIR / "model.onnx")).graph.initializer]
    classes, units = len(MANIFEST["labels"]), MANIFEST["layers"][LAYERS.index("dense1")]["channels"]
    outgoing = next(t for t in tensors if t.shape == (classes, units))
    for k in range(units):
        pushes = _examples(api, "dense1", k)["pushes"]
        order = np.argsort(outgoing[:, k], kind="stable")
        for served, chosen in ((pushes["up"], order[::-1][:3]), (pushes["down"], order[:3])):
            assert [p["class"] for p in served] == [MANIFEST["labels"][c] for c in chosen]
            assert np.allclose([p["weight"] for p in served], outgoing[chosen, k], rtol=0, atol=1e-4)


@pytest.mark.parametrize("layer", LAYERS)
def test_fidelity_and_dead_units_as_measured_on_the_pictures(api, reference, measured, layer):
    """fidelity: the unit's degree on its own picture over its best digit's; dead: neither a
    training digit nor its picture makes it fire anywhere."""
    degree, peak = measured[layer]
    listing = api.get(f"/filters/{layer}").json()["filters"]
    pictures = np.stack([np.asarray(Image.open(MODEL_DIR / f"filters/{layer}/{k}.png").convert("L"))
                         for k in range(len(listing))]) / 255
    own = reference.run(pictures)[layer]
    own = own.reshape(*own.shape[:2], -1)[np.arange(len(listing)), np.arange(len(listing))]
    for k, entry in enumerate(listing):
        best = degree[:, k].max()
        if best <= 0:
            assert entry["fidelity"] is None
        else:
            assert entry["fidelity"] == pytest.approx(own[k].mean() / best, rel=0.02, abs=1e-3)
        never = layer != "logits" and peak[:, k].max() <= 0 and own[k].max() <= 0
        assert (entry["dead"] is not None) == never, (k, entry)
        if never:
            assert str(len(degree)) in entry["dead"]


def _tiles(pixels: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """The sprite's 3x3 layout, found from its mid-grey separator lines: the scale of each
    28x28 digit, and where the rows and the columns of tiles start."""
    grey = np.all(np.abs(pixels - 128) <= 1, axis=2)

    def runs(separators: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = np.diff(np.concatenate([[0], ~separators, [0]]).astype(int))
        starts, ends = np.flatnonzero(inside == 1), np.flatnonzero(inside == -1)
        return starts, ends - starts

    rows, heights = runs(grey.all(axis=1))
    cols, widths = runs(grey.all(axis=0))
    assert len(rows) == len(cols) == 3 and len({*heights, *widths}) == 1 and heights[0] % 28 == 0
    return heights[0] // 28, rows, cols


@pytest.mark.parametrize("layer", LAYERS)
def test_the_sprite_shows_the_examples_with_each_box_outlined(api, layer, training):
    """The bundle's PNG, as ETag'd as the pictures; each tile is its example's digit, and on conv
    layers the one coloured outline in it is the example's box."""
    channels = MANIFEST["layers"][LAYERS.index(layer)]["channels"]
    unit = next(unit for unit in (_examples(api, layer, k) for k in range(channels))
                if unit["best_degree"] > 0)
    k = unit["index"]
    path = MANIFEST["units"]["sprites"].format(layer=layer, index=k)
    reply = api.get(f"/filters/{layer}/{k}/examples", headers={"Accept": "image/png"})
    assert reply.body == (MODEL_DIR / path).read_bytes()
    assert reply.headers["etag"] == f'"{MANIFEST["files"][path]["sha256"]}"'
    assert "Accept" in reply.headers["vary"]
    assert api.get(f"/filters/{layer}/{k}/examples", headers={
        "Accept": "image/png", "If-None-Match": reply.headers["etag"]}).status == 304
    image = _png(reply)
    assert image.mode == "RGB"
    pixels = np.asarray(image).astype(int)
    scale, rows, cols = _tiles(pixels)
    coloured = pixels.max(axis=2) - pixels.min(axis=2) > 60
    for q, example in enumerate(unit["examples"]):
        top, left = rows[q // 3], cols[q % 3]
        tile = np.s_[top:top + 28 * scale, left:left + 28 * scale]
        digit = np.kron(training.images[example["digit"], 0], np.ones((scale, scale), int))
        grey = ~coloured[tile]
        assert np.abs(pixels[tile][..., 0][grey] - digit[grey]).max() <= 1
        if "box" not in example:
            assert not coloured[tile].any()
            continue
        ys, xs = np.nonzero(coloured[tile])
        outline = [ys.min() // scale, xs.min() // scale, ys.max() // scale + 1, xs.max() // scale + 1]
        assert outline == example["box"], q


def test_examples_are_json_by_default_and_png_when_preferred(api):
    assert api.get("/filters/conv2/1/examples").mimetype == "application/json"
    assert api.get("/filters/conv2/1/examples", headers={"Accept": "image/*"}).mimetype == "image/png"
    assert api.get("/filters/conv2/1/examples", headers={
        "Accept": "application/json, image/png;q=0.5"}).mimetype == "application/json"
    assert api.get("/filters/conv2/1/examples", headers={"Accept": "text/html"}).status == 406
    plain = _png(api.get("/filters/conv2/1/examples", headers={"Accept": "image/png"}))
    scaled = _png(api.get("/filters/conv2/1/examples?scale=2", headers={"Accept": "image/png"}))
    assert scaled.size == (plain.width * 2, plain.height * 2)


def test_the_first_conv_layers_examples_carry_its_raw_kernel(api):
    kernels = next(numpy_helper.to_array(t) for t in onnx.load(str(MODEL_DIR / "model.onnx")).graph.initializer
                   if t.dims[1:] == [1, 3, 3])
    for k in (0, len(kernels) - 1):
        unit = _examples(api, "conv1", k)
        assert np.array_equal(np.asarray(unit["weights"], np.float32), kernels[k])
        assert unit["links"] == {"sprite": f"/filters/conv1/{k}/examples",
                                 "picture": f"/filters/conv1/{k}", "weights": "/filters/conv1/weights"}
    assert "weights" not in _examples(api, "conv2", 0)


@pytest.mark.parametrize("path", ["/filters/conv3/1/examples", "/filters/conv1/25/examples",
                                  "/filters/conv1/-1/examples", "/filters/conv1/one/examples",
                                  "/filters/conv1/%C2%B2/examples", "/filters/logits/10/examples"])
def test_unknown_layer_or_unit_examples_are_404_problems(api, path):
    reply = api.get(path)
    assert reply.status == 404 and reply.mimetype == "application/problem+json"
    assert reply.json()["detail"]


@pytest.mark.parametrize("query, status", [("scale=0", 422), ("scale=99", 422), ("scale=two", 400)])
def test_examples_scale_is_bounded_for_json_too(api, query, status):
    assert api.get(f"/filters/conv1/1/examples?{query}").status == status


# Bundles built before dataset examples: still served, and they say what they lack.

def old_bundle(target: Path, name: str) -> Path:
    """The default bundle as it was built before dataset examples: no units, fidelity or dead."""
    shutil.copytree(MODEL_DIR, target, ignore=shutil.ignore_patterns("examples", "units.json"))
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["name"] = name
    manifest.pop("units")
    for layer in manifest["visualizations"]["layers"].values():
        del layer["fidelity"], layer["dead"]
    manifest["files"] = {file: entry for file, entry in manifest["files"].items()
                         if (target / file).is_file()}
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def _app_client(models: Path, **settings) -> InProcess:
    app = create_app(Settings(models_dir=models, **(LIMITS | settings)))
    return InProcess(app, Contract(InProcess(app).get("/openapi.json").json()))


def test_an_older_bundle_is_served_and_says_it_has_no_examples(tmp_path):
    old_bundle(tmp_path / "old", "mnist-old")
    shutil.copytree(MODEL_DIR, tmp_path / "new")
    client = _app_client(tmp_path, default_model="mnist-cnn")
    listing = client.get("/filters/conv2?model=mnist-old").json()
    assert listing["filters"][3] == {"index": 3, "image": "/filters/conv2/3",
                                     "objective": MANIFEST["visualizations"]["layers"]["conv2"]["objective"][3],
                                     "fidelity": None, "dead": None, "fire_rate": None, "examples": None}
    assert "examples" not in listing["links"]
    for accept in ("application/json", "image/png"):
        reply = client.get("/filters/conv2/3/examples?model=mnist-old", headers={"Accept": accept})
        assert reply.status == 404 and OLD_BUNDLE in reply.json()["detail"]
        assert "python -m training export" in reply.json()["detail"]
    assert client.get("/filters/conv2/3?model=mnist-old").status == 200
    assert client.get("/filters/conv2/3/examples").status == 200


def test_hot_reload_to_an_older_bundle_and_back(tmp_path):
    shutil.copytree(MODEL_DIR, tmp_path / "mnist-cnn")
    client = _app_client(tmp_path, admin_token="token")
    auth = {"Authorization": "Bearer token"}
    assert client.get("/filters/dense1/8/examples").status == 200
    shutil.rmtree(tmp_path / "mnist-cnn")
    old_bundle(tmp_path / "mnist-cnn", MANIFEST["name"])
    assert client.post("/admin/reload", headers=auth).json()["loaded"] == [MANIFEST["name"]]
    reply = client.get("/filters/dense1/8/examples")
    assert reply.status == 404 and OLD_BUNDLE in reply.json()["detail"]
    assert client.get("/filters/dense1").json()["filters"][8]["dead"] is None
    shutil.rmtree(tmp_path / "mnist-cnn")
    shutil.copytree(MODEL_DIR, tmp_path / "mnist-cnn")
    assert client.post("/admin/reload", headers=auth).json()["loaded"] == [MANIFEST["name"]]
    assert client.get("/filters/dense1/8/examples").status == 200
