"""The feature-visualisation engine on the committed bundle, checked with model.onnx alone."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lens.bundle import load
from lens.optvis import transforms
from lens.optvis.objectives import ObjectiveError, channel, class_logit, deepdream, feeds
from lens.optvis.render import GradientGraph, Settings, render, work

ROBUST = {"scales": transforms.SCALES, "degrees": transforms.DEGREES}
VARIANTS = {"fourier": {"param": "fourier"}, "transforms": ROBUST,
            "fourier+transforms": {"param": "fourier", **ROBUST}}

BUNDLE = load(Path(__file__).resolve().parents[2] / "models" / "mnist-cnn")
GRAPH = GradientGraph.of(BUNDLE)


def _activations(images):
    return dict(zip(BUNDLE.manifest["graphs"]["model"]["outputs"], BUNDLE.model.run(None, {"image": images})))


def test_objectives_compose_into_gradient_graph_weights():
    objective = 2 * channel("conv2", 7) + deepdream("conv1") - 0.5 * class_logit(3)
    fed = feeds([objective, sum([channel("dense1", 1), channel("dense1", 1)])], GRAPH.targets)
    assert fed["weights.conv2"][0, 7] == 2 and fed["weights.conv2"].sum() == 2
    assert fed["energy.conv1"].tolist() == [1, 0]
    assert fed["weights.logits"][0, 3] == -0.5
    assert fed["weights.dense1"][1, 1] == 2
    assert fed["weights.conv1"].shape == (2, 25)


def test_unknown_layers_and_channels_are_refused():
    with pytest.raises(ObjectiveError, match="unknown layer 'conv9'"):
        feeds([channel("conv9", 0)], GRAPH.targets)
    with pytest.raises(ObjectiveError, match="has 25 channels"):
        feeds([channel("conv1", 25)], GRAPH.targets)


def test_class_visualisation_raises_the_class_score_measured_by_model_onnx():
    start = np.full((10, 1, 28, 28), 0.02, np.float32)
    result = render(GRAPH, [class_logit(k) for k in range(10)], start, Settings(steps=40, blur_sigma=0.8))
    before, after = _activations(start)["logits"], _activations(result.images)["logits"]
    gained = np.diag(after) - np.diag(before)
    assert (gained > 1.0).all()
    assert (after.argmax(1) == np.arange(10)).all()   # each picture is its own class's best
    np.testing.assert_allclose(result.objective_after, np.diag(after), rtol=1e-4, atol=1e-4)


def test_deep_dream_on_a_large_image_raises_the_layer_energy_and_keeps_its_size():
    rng = np.random.default_rng(0)
    start = transforms.gaussian_blur(rng.random((1, 1, 120, 90), dtype=np.float32), 2)
    settings = Settings(steps=10, octaves=3, step_size=0.02, seed=3)
    result = render(GRAPH, [deepdream("conv2")], start, settings)
    assert result.images.shape == start.shape and result.steps_done == 30
    assert result.objective_after[0] > 1.5 * result.objective_before[0]
    again = render(GRAPH, [deepdream("conv2")], start, settings)
    np.testing.assert_array_equal(result.images, again.images)   # same seed, same picture


def test_dense_objectives_need_the_training_size():
    with pytest.raises(ObjectiveError, match="take only 28x28 images"):
        render(GRAPH, [class_logit(1)], np.zeros((1, 1, 40, 40), np.float32))


def test_time_budget_stops_early_with_what_there_is():
    start = np.full((1, 1, 28, 28), 0.1, np.float32)
    result = render(GRAPH, [channel("conv1", 0)], start, Settings(steps=10_000, time_budget=0.2))
    assert result.budget_exhausted and 0 < result.steps_done < 10_000
    assert result.objective_after[0] > result.objective_before[0]


def test_blur_keeps_the_mean_and_resize_keeps_a_constant():
    image = np.random.default_rng(1).random((2, 3, 20, 30), dtype=np.float32)
    blurred = transforms.gaussian_blur(image, 1.5)
    assert blurred.std() < image.std()
    np.testing.assert_allclose(blurred.mean(axis=(2, 3)), image.mean(axis=(2, 3)), atol=0.02)
    np.testing.assert_allclose(transforms.resize(np.full((1, 1, 10, 10), 0.3, np.float32), 25, 7), 0.3, atol=1e-6)


def _todays_loop(objectives, start, settings):
    """render's loop before parameterisations and transforms, written out for one octave: one
    jitter draw per step, undone on the gradient; a step of step_size / mean |grad|; decay;
    blur every blur_every steps; clip."""
    weights, image = feeds(objectives, GRAPH.targets), start
    rng = np.random.default_rng(settings.seed)
    for step in range(settings.steps):
        dy, dx = rng.integers(-settings.jitter, settings.jitter + 1, size=2)
        grad = GRAPH(np.roll(image, (dy, dx), axis=(2, 3)), weights)[1]
        grad = np.roll(grad, (-dy, -dx), axis=(2, 3))
        scale = np.abs(grad).mean(axis=(1, 2, 3), keepdims=True) + 1e-8
        image = image + settings.step_size * grad / scale
        image = image - settings.decay * (image - settings.background)
        if (step + 1) % settings.blur_every == 0:
            image = transforms.gaussian_blur(image, settings.blur_sigma)
        image = np.clip(image, 0, 1).astype(np.float32)
    return image


@pytest.mark.parametrize("objectives, settings", [
    ([deepdream("conv2"), deepdream("conv1")], Settings(steps=12)),
    ([class_logit(3), class_logit(7)],
     Settings(steps=12, blur_sigma=0.8, decay=0.01, jitter=2, seed=5)),
])
def test_default_parameterisation_and_transforms_keep_todays_pictures(objectives, settings):
    """The service's default dreams and the bundle's pictures stay what they were: the same rng
    draws in the same order, the same steps (up to rounding in start + (image - start)). The
    objectives always have a gradient, so no step is redirected to a pre-activation."""
    start = np.random.default_rng(2).random((2, 1, 28, 28), dtype=np.float32)
    result = render(GRAPH, objectives, start, settings)
    assert not result.redirected.any()
    np.testing.assert_allclose(result.images, _todays_loop(objectives, start, settings),
                               atol=1e-6, rtol=0)


UNITS = json.loads((BUNDLE.path / "units.json").read_text())["layers"]


def _unit(layer: str, k: int) -> dict:
    return UNITS[layer][k]


def _strongest(layer: str) -> int:
    return max(UNITS[layer], key=lambda unit: unit["best_degree"])["index"]


def _degrees(images, units):
    """The degree of activation of units[i] on images[i] by model.onnx (a conv filter's mean
    over its map)."""
    found = _activations(images)
    return np.array([found[layer][i, k].mean() for i, (layer, k) in enumerate(units)])


@pytest.mark.parametrize("variant", VARIANTS)
def test_fourier_and_transforms_raise_what_model_onnx_measures(variant):
    """Conv filters from a low-contrast grey; a dense unit and classes from near black, with the
    blur and decay of the bundle's pictures. The conv1 filter is the one the training digits
    drive hardest (units.json): a filter that barely responds to anything cannot rise by 0.2."""
    filters = [("conv1", _strongest("conv1")), ("conv2", 21)]
    grey = 0.45 + 0.1 * np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    result = render(GRAPH, [channel(*unit) for unit in filters], grey,
                    Settings(steps=48, **VARIANTS[variant]))
    assert (_degrees(result.images, filters) > _degrees(grey, filters) + 0.2).all()
    np.testing.assert_allclose(result.objective_after, _degrees(result.images, filters),
                               rtol=1e-4, atol=1e-4)

    units = [("logits", 3), ("logits", 7), ("dense1", _strongest("dense1"))]
    dark = np.full((3, 1, 28, 28), 0.02, np.float32)
    result = render(GRAPH, [channel(*unit) for unit in units], dark,
                    Settings(steps=48, blur_sigma=0.8, decay=0.002, **VARIANTS[variant]))
    # each rises by a fifth of what the best training digit reaches (units.json), at least: the
    # default model's best digits are far beyond its typical ones (class 3: logit 25)
    best = np.array([_unit(*unit)["best_degree"] for unit in units])
    assert (_degrees(result.images, units) > _degrees(dark, units) + best / 5).all()
    assert _activations(result.images)["logits"][:2].argmax(1).tolist() == [3, 7]


def test_fourier_with_transforms_dreams_over_octaves_the_same_per_seed():
    """Deep Dream on a large image: each octave re-parameterised from its start, the detail
    carried in pixels; same seed, same picture; another seed, another."""
    noise = np.random.default_rng(0).random((1, 1, 120, 90), dtype=np.float32)
    start = transforms.gaussian_blur(noise, 2)
    settings = Settings(steps=10, octaves=3, seed=3, **VARIANTS["fourier+transforms"])
    result = render(GRAPH, [deepdream("conv2")], start, settings)
    assert result.images.shape == start.shape and result.steps_done == 30
    assert result.objective_after[0] > 1.5 * result.objective_before[0]
    again = render(GRAPH, [deepdream("conv2")], start, settings)
    np.testing.assert_array_equal(result.images, again.images)
    other = render(GRAPH, [deepdream("conv2")], start, replace(settings, seed=4))
    assert not np.array_equal(other.images, result.images)


def test_settings_survive_the_manifest_and_refuse_an_unknown_parameterisation():
    settings = Settings(param="fourier", **ROBUST)
    assert Settings(**json.loads(json.dumps(vars(settings)))) == settings
    with pytest.raises(ValueError, match="'wavelet' is not one of pixels, fourier"):
        Settings(param="wavelet")


@pytest.mark.parametrize("size, settings", [((28, 28), Settings(steps=5)),
                                            ((61, 47), Settings(steps=3, octaves=3)),
                                            ((40, 90), Settings(steps=2, octaves=4,
                                                                octave_scale=2.0)),
                                            ((61, 47), Settings(steps=3, octaves=3,
                                                                **VARIANTS["fourier+transforms"]))])
def test_work_is_the_pixels_of_every_gradient_run_render_makes(size, settings):
    """work() against the pixels render actually sends through gradient.onnx, counted."""
    pixels = []

    class Counting(GradientGraph):
        def __call__(self, images, weights):
            pixels.append(images.shape[0] * images.shape[2] * images.shape[3])
            return super().__call__(images, weights)

    graph = Counting(GRAPH.session, GRAPH.layers, GRAPH.size)
    start = np.full((1, 1, *size), 0.3, np.float32)
    render(graph, [deepdream("conv1")], start, settings)
    assert work(size, settings) == sum(pixels)
