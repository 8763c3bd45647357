"""The feature-visualisation engine on the committed bundle, checked with model.onnx alone."""
from pathlib import Path

import numpy as np
import pytest

from lens.bundle import load
from lens.optvis import transforms
from lens.optvis.objectives import ObjectiveError, channel, class_logit, deepdream, feeds
from lens.optvis.render import GradientGraph, Settings, render, work

BUNDLE = load(Path(__file__).resolve().parents[2] / "models" / "mnist-cnn")
GRAPH = GradientGraph.of(BUNDLE)


def _activations(images):
    return dict(zip(BUNDLE.manifest["graphs"]["model"]["outputs"], BUNDLE.model.run(None, {"image": images})))


def test_objectives_compose_into_gradient_graph_weights():
    objective = 2 * channel("conv2", 7) + deepdream("conv1") - 0.5 * class_logit(3)
    fed = feeds([objective, sum([channel("dense1", 1), channel("dense1", 1)])], BUNDLE.layers)
    assert fed["weights.conv2"][0, 7] == 2 and fed["weights.conv2"].sum() == 2
    assert fed["energy.conv1"].tolist() == [1, 0]
    assert fed["weights.logits"][0, 3] == -0.5
    assert fed["weights.dense1"][1, 1] == 2
    assert fed["weights.conv1"].shape == (2, 25)


def test_unknown_layers_and_channels_are_refused():
    with pytest.raises(ObjectiveError, match="unknown layer 'conv9'"):
        feeds([channel("conv9", 0)], BUNDLE.layers)
    with pytest.raises(ObjectiveError, match="has 25 channels"):
        feeds([channel("conv1", 25)], BUNDLE.layers)


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


@pytest.mark.parametrize("size, settings", [((28, 28), Settings(steps=5)),
                                            ((61, 47), Settings(steps=3, octaves=3)),
                                            ((40, 90), Settings(steps=2, octaves=4,
                                                                octave_scale=2.0))])
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
