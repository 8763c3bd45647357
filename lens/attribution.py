"""Attribution: which pixels of one input made the network give a class its score.

Every method here runs on a bundle's gradient.onnx with a one-hot weight on the output layer
(`weights.logits`), so that its `objective` is the logit y_t of the target class t and `grad.image`
is dy_t/dx (training/onnx_export.py). The target is a logit, not a probability: the softmax would
mix in every other class. numpy only; no torch.

**Gradient saliency** (Simonyan, Vedaldi and Zisserman 2014, "Deep Inside Convolutional Networks:
Visualising Image Classification Models and Saliency Maps", ICLR workshop). The map is the size of
the gradient of the class score with respect to each pixel, |dy_t/dx|, and for an image with
several channels its largest value over the channels: how much a small change of that pixel would
change the score. One gradient run; the maps are faithful to the model locally but noisy.

**SmoothGrad** (Smilkov, Thorat, Kim, Viégas and Wattenberg 2017, "SmoothGrad: removing noise by
adding noise", arXiv:1706.03825). The gradient is averaged over `samples` copies of the input with
Gaussian noise added, x + N(0, sigma^2), which averages away the gradient's sharp local
fluctuations; the map is the absolute value of that mean (largest over channels), as in the
paper's reference code. `sigma` is `noise` times the width of the model's input range (the
manifest's `value_range`, [0, 1]; the paper's sigma / (x_max - x_min)); the noisy copies are not
clipped. The noise is drawn by `smoothgrad_noise` from numpy's PCG64 generator seeded with `seed`,
so a seed gives the same map; the copies go through gradient.onnx in batches (MAX_RUN_VALUES).

**Integrated Gradients** (Sundararajan, Taly and Yan 2017, "Axiomatic Attribution for Deep
Networks", ICML). The attribution of pixel i is (x_i - x'_i) times the mean of dy_t/dx_i along the
straight path from a baseline x' to x: a Riemann sum with `steps` points at the midpoints
alpha = (k + 1/2) / steps, k = 0..steps-1, in batches as for SmoothGrad. It is *complete*: the
attributions sum to y_t(x) - y_t(x') (exactly in the limit; the midpoint rule's error falls as
1/steps^2 on smooth stretches of the path, and this ReLU net is piecewise linear). The baseline is
black (all zeros, "no ink" for MNIST) or the input blurred by a Gaussian of sigma = 1/7 of its
larger side (4 pixels at 28x28), which keeps where the mass is but removes the strokes (Sturmfels,
Lundberg and Lee 2020, "Visualizing the Impact of Feature Attribution Baselines", Distill). The map
is the per-pixel sum over channels, signed: negative pixels speak against the class.

**Grad-CAM** (Selvaraju, Cogswell, Das, Vedantam, Parikh and Batra 2017, "Grad-CAM: Visual
Explanations from Deep Networks via Gradient-based Localization", ICCV). For a conv layer with
feature maps A_c (from model.onnx) the weight of channel c is the mean over the map of dy_t/dA_c
(gradient.onnx's `grad.<layer>`), and the map is ReLU(sum_c w_c A_c): where the layer saw what
raises the class. It has the layer's resolution (11x11 for conv2 of the lecture net), and each
cell is placed at the centre of its receptive field, bilinear between centres and constant beyond
the outermost ones: valid convolutions and pooling trim the borders, so conv2's cell j sees pixels
2j..2j+7 (centre 2j+3.5), where stretching the map over the image, as most implementations do,
would put it at 2.55j+0.77, up to 2.7 pixels off. `cell_centres` takes the centres from the
manifest's `stride` and the map's and the image's sizes, assuming the map sits symmetrically on
the input: true of valid and of 'same'-padded nets, not of one whose strides drop a last row or
column (a stride-2 3x3 conv on a 14x14 map shifts its cells by a pixel). /explain always passes
images of the training size.
The last conv layer is the usual choice: its channels are the most class-specific and it still
has a spatial map.

SmoothGrad and Integrated Gradients take an optional `deadline` (time.monotonic() seconds),
checked before each batch: past it they raise `BudgetExhausted` rather than return a map made from
part of their samples, which would look complete but is not the map asked for (a part of an
Integrated Gradients path does not even add up to the logit gap).
"""
from __future__ import annotations

import time

import numpy as np

from lens.optvis import transforms
from lens.optvis.objectives import class_logit, feeds
from lens.optvis.render import GradientGraph

METHODS = ("saliency", "smoothgrad", "integrated_gradients", "gradcam")
BASELINES = ("black", "blur")
BLUR_SIGMA_FRACTION = 1 / 7     # blurred baseline: sigma as a fraction of the larger image side
# Input floats per gradient.onnx run (256 KB; 83 images at 28x28); larger batches are split. The
# time per image is flat up to about 64 images at 28x28 and grows beyond (0.45 ms at 1 to 32,
# 0.9 ms at 1024, measured), so small runs cost nothing and keep a deadline checked often.
MAX_RUN_VALUES = 1 << 16


class AttributionError(ValueError):
    """A target, layer or setting the bundle cannot explain."""


class BudgetExhausted(RuntimeError):
    """The deadline passed before every gradient run was done."""


def output_layer(layers: list[dict]) -> str:
    return next(layer["name"] for layer in layers if layer["kind"] == "output")


def conv_layers(layers: list[dict]) -> list[str]:
    return [layer["name"] for layer in layers if layer["kind"] == "conv"]


def _class_feeds(graph: GradientGraph, target: int, count: int) -> dict[str, np.ndarray]:
    layer = output_layer(graph.layers)
    classes = next(entry["channels"] for entry in graph.layers if entry["name"] == layer)
    if not 0 <= target < classes:
        raise AttributionError(f"target {target} is not a class (0..{classes - 1})")
    return feeds([class_logit(target, layer)] * count, graph.targets)


def input_gradients(graph: GradientGraph, images: np.ndarray, target: int,
                    deadline: float | None = None):
    """The target logit y_t and dy_t/dx for every image of an N x C x H x W batch, in runs of at
    most MAX_RUN_VALUES input floats, each started only before `deadline` (else BudgetExhausted).
    Returns (logits N, gradients N x C x H x W)."""
    images = np.ascontiguousarray(images, np.float32)
    chunk = max(1, MAX_RUN_VALUES // images[0].size)
    logits, grads = [], []
    for start in range(0, len(images), chunk):
        if deadline is not None and time.monotonic() > deadline:
            raise BudgetExhausted(f"the time budget ran out after {start} of {len(images)} "
                                  "gradient samples")
        part = images[start:start + chunk]
        value, grad = graph(part, _class_feeds(graph, target, len(part)))
        logits.append(value)
        grads.append(grad)
    return np.concatenate(logits), np.concatenate(grads)


def saliency(graph: GradientGraph, image: np.ndarray, target: int) -> np.ndarray:
    """C x H x W image -> H x W map: max over channels of |dy_t/dx|."""
    _, grad = input_gradients(graph, image[None], target)
    return np.abs(grad[0]).max(axis=0)


def smoothgrad_noise(shape: tuple[int, ...], samples: int, sigma: float, seed: int) -> np.ndarray:
    """The noise SmoothGrad adds: samples x shape, N(0, sigma^2), float32, from
    numpy.random.default_rng(seed)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((samples, *shape)) * sigma).astype(np.float32)


def smoothgrad(graph: GradientGraph, image: np.ndarray, target: int, samples: int, sigma: float,
               seed: int, deadline: float | None = None) -> np.ndarray:
    """C x H x W image -> H x W map: max over channels of |mean of dy_t/dx over noisy copies|."""
    noisy = image[None] + smoothgrad_noise(image.shape, samples, sigma, seed)
    _, grads = input_gradients(graph, noisy, target, deadline)
    return np.abs(grads.mean(axis=0)).max(axis=0)


def baseline(image: np.ndarray, kind: str) -> np.ndarray:
    """The Integrated Gradients baseline for a C x H x W image: black or blurred."""
    if kind == "black":
        return np.zeros_like(image, np.float32)
    if kind == "blur":
        sigma = BLUR_SIGMA_FRACTION * max(image.shape[1:])
        return transforms.gaussian_blur(image[None].astype(np.float32), sigma)[0]
    raise AttributionError(f"baseline {kind!r} is not one of {', '.join(BASELINES)}")


def path_alphas(steps: int) -> np.ndarray:
    """The Riemann midpoints of [0, 1]: (k + 1/2) / steps."""
    return ((np.arange(steps) + 0.5) / steps).astype(np.float32)


def integrated_gradients(graph: GradientGraph, image: np.ndarray, target: int,
                         start: np.ndarray, steps: int, deadline: float | None = None) -> np.ndarray:
    """C x H x W attributions (x - x') * mean of dy_t/dx along the path from `start` (x') to x."""
    alphas = path_alphas(steps)[:, None, None, None]
    path = start[None] + alphas * (image - start)[None]
    _, grads = input_gradients(graph, path, target, deadline)
    return ((image - start) * grads.mean(axis=0)).astype(np.float32)


def layer_gradient(graph: GradientGraph, image: np.ndarray, target: int, layer: str) -> np.ndarray:
    """dy_t/dA for conv layer `layer`'s activation A, for one C x H x W image."""
    if layer not in conv_layers(graph.layers):
        raise AttributionError(f"{layer!r} is not a conv layer; conv layers: "
                               f"{', '.join(conv_layers(graph.layers))}")
    weights = _class_feeds(graph, target, 1)
    (grad,) = graph.session.run([f"grad.{layer}"],
                                {"image": np.ascontiguousarray(image[None], np.float32), **weights})
    return grad[0]


def gradcam(graph: GradientGraph, image: np.ndarray, activation: np.ndarray, target: int,
            layer: str) -> np.ndarray:
    """H x W map (the image's size): ReLU(sum_c w_c A_c) with each cell at its receptive field's
    centre (`place_cells`), where A is the layer's C' x h x w `activation` for `image` (from
    model.onnx) and w_c the spatial mean of dy_t/dA_c. Not normalised: its scale is the layer's
    and the class's."""
    weights = layer_gradient(graph, image, target, layer).mean(axis=(1, 2))
    cam = np.maximum(np.tensordot(weights, activation, axes=1), 0)
    stride = next(entry["stride"] for entry in graph.layers if entry["name"] == layer)
    return place_cells(cam, stride, *image.shape[1:])


def cell_centres(size: int, cells: int, stride: int) -> np.ndarray:
    """Input pixel index of the receptive-field centre of each of `cells` activations, `stride`
    pixels apart, over `size` input pixels: the row of centres sits in the middle of the input
    (3.5, 5.5, ..., 23.5 for the lecture net's conv2: 28 pixels, 11 cells, stride 2)."""
    return (size - 1 - (cells - 1) * stride) / 2 + stride * np.arange(cells)


def place_cells(plane: np.ndarray, stride: int, height: int, width: int) -> np.ndarray:
    """An h x w map of a conv layer -> height x width: each cell at its receptive-field centre,
    bilinear between centres, constant beyond the outermost ones."""
    rows = _interpolation_matrix(cell_centres(height, plane.shape[0], stride), height)
    cols = _interpolation_matrix(cell_centres(width, plane.shape[1], stride), width)
    return (rows @ plane.astype(np.float64) @ cols.T).astype(np.float32)


def _interpolation_matrix(centres: np.ndarray, size: int) -> np.ndarray:
    """size x len(centres): row p holds the weights of pixel p's linear interpolation between the
    centres around it (np.interp of each cell's indicator, which clamps at the ends)."""
    pixels = np.arange(size)
    return np.stack([np.interp(pixels, centres, one) for one in np.eye(len(centres))], axis=1)


def attribute(graph: GradientGraph, method: str, image: np.ndarray, target: int, *,
              activations: dict[str, np.ndarray] | None = None, layer: str | None = None,
              samples: int = 25, sigma: float = 0.15, seed: int = 0, steps: int = 32,
              baseline_kind: str = "black", deadline: float | None = None) -> np.ndarray:
    """One method by name -> its H x W map (signed for integrated_gradients: the per-pixel sum
    over channels; >= 0 for the others). `activations`: model.onnx's outputs for the image (each
    without the batch axis), needed by gradcam. `deadline` bounds smoothgrad and
    integrated_gradients (the others are one gradient run)."""
    if method == "saliency":
        return saliency(graph, image, target)
    if method == "smoothgrad":
        return smoothgrad(graph, image, target, samples, sigma, seed, deadline)
    if method == "integrated_gradients":
        return integrated_gradients(graph, image, target, baseline(image, baseline_kind),
                                    steps, deadline).sum(axis=0)
    if method == "gradcam":
        if layer is None or activations is None or layer not in activations:
            raise AttributionError("gradcam needs a conv layer and its activation")
        return gradcam(graph, image, activations[layer], target, layer)
    raise AttributionError(f"method {method!r} is not one of {', '.join(METHODS)}")
