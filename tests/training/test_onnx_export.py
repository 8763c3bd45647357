"""The exported graphs against independent references: torch eager for model.onnx, torch
autograd and central finite differences of forward passes (model.onnx at the training size,
torch in float64 at others) for gradient.onnx."""
import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch

from training import architectures
from training.layers import capture, find_layers, state_of
from lens.optvis.objectives import PREACTIVATION
from training.onnx_export import (depth_order, export_gradient, export_model, gradient_function,
                                  io_names, objective_targets)

NETS = {
    "lecture": (lambda: architectures.lecture(), (1, 28, 28)),
    "small-vgg": (lambda: architectures.small_vgg(), (3, 32, 32)),
    "custom": (lambda: architectures.build("tests.training.custom_net:TinyNet", 1, 10), (1, 28, 28)),
}


def _randomise_batchnorm(model):
    """Fresh BatchNorm layers are the identity; give them statistics so the test means something."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


@pytest.fixture(scope="module", params=sorted(NETS))
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    build, shape = NETS[request.param]
    model = architectures.Normalized(build(), [0.2] * shape[0], [0.3] * shape[0])
    _randomise_batchnorm(model)
    model.eval()
    layers = find_layers(model, shape)
    folder = tmp_path_factory.mktemp(request.param)
    export_model(model, layers, shape, folder / "model.onnx")
    export_gradient(model, layers, shape, folder / "gradient.onnx")
    sessions = {name: ort.InferenceSession(str(folder / f"{name}.onnx")) for name in ("model", "gradient")}
    return request.param, model, layers, shape, sessions


@pytest.mark.parametrize("batch", [1, 5])
def test_model_onnx_matches_torch(exported, batch):
    _, model, layers, shape, sessions = exported
    images = torch.rand(batch, *shape)
    got = dict(zip(io_names(layers)["model"]["outputs"], sessions["model"].run(None, {"image": images.numpy()})))
    with torch.no_grad():
        logits = model(images)
        acts = capture(model, layers, state_of(model), images)
    assert np.abs(got["logits"] - logits.numpy()).max() <= 1e-5
    assert np.abs(got["probabilities"] - torch.softmax(logits, 1).numpy()).max() <= 1e-5
    for layer in layers[:-1]:
        assert got[layer.name].shape == (batch, *layer.shape)
        assert np.abs(got[layer.name] - acts[layer.name].numpy()).max() <= 1e-5, layer.name


def _feed(layers, batch, rng, only_conv=False, weighed=None,
          energy_only=False) -> dict[str, np.ndarray]:
    """Random weights and energies for every target of gradient.onnx, by input name (zero on the
    dense targets with `only_conv`, zero on all but `weighed` if given, no weights with
    `energy_only`: Deep Dream's objective)."""
    by_name = {layer.name: layer for layer in layers}
    feed = {}
    for target in objective_targets(layers):
        layer = by_name[target.removesuffix(PREACTIVATION)]
        on = (layer.kind == "conv" or not only_conv) and (weighed is None or target in weighed)
        feed[f"weights.{target}"] = (rng.standard_normal((batch, layer.channels)).astype(np.float32)
                                     * (on and not energy_only))
        feed[f"energy.{target}"] = rng.standard_normal(batch).astype(np.float32) * on
    return feed


def _torch_gradient(model, layers, images, feed):
    """gradient_function on the `layers` it is given, fed from the weights of those layers' targets."""
    targets = objective_targets(layers)
    args = [feed[f"weights.{t}"] for t in targets] + [feed[f"energy.{t}"] for t in targets]
    return gradient_function(model, layers)(list(state_of(model).values()),
                                            *[torch.from_numpy(a) for a in (images, *args)])


def _assert_close(got, want, what):
    scale = np.abs(want).max() + 1e-12
    assert np.abs(got - want).max() / scale <= 1e-4, what


def _assert_any_size_outputs(layers, got, want, what):
    """Off the training size gradient.onnx gives the objective and grad.image, and each
    grad.<conv layer> empty (Grad-CAM, which reads them, runs at the training size)."""
    channels = {f"grad.{layer.name}": layer.channels for layer in layers if layer.kind == "conv"}
    for output, g, w in zip(io_names(layers)["gradient"]["outputs"], got, want):
        if output in channels:
            assert g.shape == (len(got[0]), channels[output], 0, 0), output
        else:
            _assert_close(g, w.numpy(), f"{output} {what}")


def test_gradient_onnx_matches_autograd_at_training_size(exported):
    _, model, layers, shape, sessions = exported
    rng = np.random.default_rng(0)
    for batch in (1, 4):
        images = rng.random((batch, *shape), dtype=np.float32)
        feed = _feed(layers, batch, rng)
        names = io_names(layers)["gradient"]
        got = sessions["gradient"].run(None, {"image": images, **feed})
        want = _torch_gradient(model, layers, images, feed)
        for name, g, w in zip(names["outputs"], got, want):
            assert g.shape == tuple(w.shape), name
            _assert_close(g, w.numpy(), f"{name} batch {batch}")


@pytest.mark.parametrize("size", [(57, 81), (300, 211)])
def test_gradient_onnx_takes_any_size_for_conv_objectives(exported, size):
    name, model, layers, shape, sessions = exported
    if name == "small-vgg" and size == (300, 211):
        # Random BatchNorm nets have near-ties in max pooling on large images, where float32
        # rounding (torch's as much as onnxruntime's) picks a different maximum: not comparable.
        size = (120, 90)
    rng = np.random.default_rng(1)
    images = rng.random((2, shape[0], *size), dtype=np.float32)
    feed = _feed(layers, 2, rng, only_conv=True)
    got = sessions["gradient"].run(None, {"image": images, **feed})
    want = _torch_gradient(model, [l for l in layers if l.kind == "conv"], images, feed)
    assert got[1].shape == images.shape
    _assert_any_size_outputs(layers, got, want, f"at {size}")


def test_any_size_graph_matches_autograd_whichever_target_comes_first(exported):
    """gradient.onnx specialises its any-size graph for the first target with a weight or energy
    (in depth order), and for energies alone: each specialisation against autograd of the whole
    objective, at sizes whose conv outputs pool evenly and not."""
    _, model, layers, shape, sessions = exported
    conv = [layer for layer in layers if layer.kind == "conv"]
    order = depth_order(conv)
    rng = np.random.default_rng(4)
    for size in ((40, 36), (43, 37)):
        images = rng.random((2, shape[0], *size), dtype=np.float32)
        images[0, :, :12, :16] = 0.5   # a flat patch: ties in every pooling window over it
        for first in range(len(order)):
            for energy_only in (False, True):
                feed = _feed(layers, 2, rng, weighed=set(order[first:]), energy_only=energy_only)
                got = sessions["gradient"].run(None, {"image": images, **feed})
                want = _torch_gradient(model, conv, images, feed)
                _assert_any_size_outputs(layers, got, want, f"from {order[first]} at {size}"
                                         + (", energies only" if energy_only else ""))


def test_any_size_graph_matches_finite_differences(exported):
    """The any-size graph's image gradient, each specialisation, against central differences
    of the documented objective computed in float64 by torch (model.onnx takes only the training
    size)."""
    _, model, layers, shape, sessions = exported
    conv = [layer for layer in layers if layer.kind == "conv"]
    model64 = copy.deepcopy(model).double()
    order = depth_order(conv)
    rng = np.random.default_rng(5)
    images = rng.random((2, shape[0], 40, 36), dtype=np.float32)
    eps, compared = 1e-4, 0
    for first, energy_only in [(f, e) for f in range(len(order)) for e in (False, True)]:
        feed = _feed(layers, 2, rng, weighed=set(order[first:]), energy_only=energy_only)
        grad = sessions["gradient"].run(["grad.image"], {"image": images, **feed})[0]
        f = lambda moved: _objective_in_float64(model64, conv, moved, feed)
        central = lambda d, h: (f(images + h * d) - f(images - h * d)) / (2 * h)
        for _ in range(4):
            direction = np.zeros(images.shape)
            for n in range(len(images)):
                direction[n].flat[rng.integers(direction[n].size)] = 1
            # With ReLU the objective is piecewise quadratic in the image (ReLU and max pooling
            # switch the pieces), and a central difference within one piece is exact (with GELU
            # it is within h^2): where halving the step changes it, a kink is near, and the
            # pixel is skipped.
            wide, narrow = central(direction, eps), central(direction, eps / 2)
            smooth = np.abs(wide - narrow) <= 1e-6 * (1 + np.abs(wide))
            analytic = (grad.astype(np.float64) * direction).reshape(len(images), -1).sum(1)
            np.testing.assert_allclose(analytic[smooth], wide[smooth], rtol=1e-4,
                                       atol=1e-5 * np.abs(grad).max())
            compared += int(smooth.sum())
    assert compared >= 8 * len(order), f"only {compared} partial derivatives were away from kinks"


def _objective_in_float64(model64, conv, images, feed):
    """The documented objective of the conv targets, from a float64 forward pass in torch."""
    with torch.no_grad():
        acts = capture(model64, conv, state_of(model64), torch.from_numpy(images),
                       preactivations=True)
    total = np.zeros(len(images))
    for target, act in acts.items():
        act = act.numpy()
        total += ((act.mean((2, 3)) * feed[f"weights.{target}"]).sum(1)
                  + feed[f"energy.{target}"] * (act ** 2).reshape(len(act), -1).mean(1))
    return total


def test_a_nan_weight_counts_as_weighed(exported):
    """Specialisations skip targets whose weights are all zero; NaN is not zero."""
    _, _, layers, shape, sessions = exported
    conv = [layer for layer in layers if layer.kind == "conv"]
    rng = np.random.default_rng(6)
    feed = _feed(layers, 1, rng, weighed={depth_order(conv)[-1]})
    feed[f"energy.{depth_order(conv)[0]}"][:] = np.nan
    objective = sessions["gradient"].run(["objective"], {
        "image": rng.random((1, shape[0], 40, 36), dtype=np.float32), **feed})[0]
    assert np.isnan(objective).all()


def _objective_from_forward_passes(model, session, layers, images, feed):
    """The documented objective, computed in numpy from forward passes alone: the activations
    from model.onnx, the pre-activations (which model.onnx does not output) from torch."""
    acts = dict(zip(io_names(layers)["model"]["outputs"], session.run(None, {"image": images})))
    with torch.no_grad():
        acts |= {name: act.numpy() for name, act in capture(
            model, layers, state_of(model), torch.from_numpy(images), preactivations=True).items()
            if name.endswith(PREACTIVATION)}
    total = np.zeros(len(images), np.float64)
    for target in objective_targets(layers):
        act = acts[target].astype(np.float64)
        degree = act.reshape(*act.shape[:2], -1).mean(2) if act.ndim == 4 else act
        total += ((degree * feed[f"weights.{target}"]).sum(1)
                  + feed[f"energy.{target}"] * (act ** 2).reshape(len(act), -1).mean(1))
    return total


def test_gradient_onnx_matches_finite_differences_of_forward_passes(exported):
    _, model, layers, shape, sessions = exported
    rng = np.random.default_rng(2)
    images = rng.random((3, *shape), dtype=np.float32)
    feed = _feed(layers, 3, rng)
    objective, grad = sessions["gradient"].run(["objective", "grad.image"], {"image": images, **feed})
    reference = _objective_from_forward_passes(model, sessions["model"], layers, images, feed)
    np.testing.assert_allclose(objective, reference, rtol=1e-4, atol=1e-5)

    # Partial derivatives at random pixels. The objective is piecewise smooth
    # (ReLU, max pooling), so a difference quotient is only exact where the step crosses no kink;
    # where the forward and backward quotients disagree a kink is near, and the pair is skipped.
    f = lambda moved: _objective_from_forward_passes(model, sessions["model"], layers, moved, feed)
    eps, compared = 1e-3, 0
    # float32 activations carry ~1e-7 relative rounding, which the quotient divides by eps
    noise = 5e-7 * max(1.0, float(np.abs(reference).max())) / eps
    for _ in range(16):
        direction = np.zeros(images.shape, np.float32)
        for n in range(len(images)):
            direction[n].flat[rng.integers(direction[n].size)] = 1
        plus, minus = f(images + eps * direction), f(images - eps * direction)
        forward, backward, central = (plus - reference) / eps, (reference - minus) / eps, (plus - minus) / (2 * eps)
        analytic = (grad.astype(np.float64) * direction).reshape(len(images), -1).sum(1)
        smooth = np.abs(forward - backward) <= 2e-2 * np.abs(central) + 2 * noise
        np.testing.assert_allclose(analytic[smooth], central[smooth], rtol=1e-2, atol=noise)
        compared += int(smooth.sum())
    assert compared >= 24, f"only {compared} of 48 partial derivatives were away from kinks"


def test_dense_weights_are_ignored_off_the_training_size(exported):
    """The conv-only branch serves other sizes: dense weights there must not change anything."""
    _, _, layers, shape, sessions = exported
    rng = np.random.default_rng(3)
    images = rng.random((1, shape[0], shape[1] + 8, shape[2] + 4), dtype=np.float32)
    conv_only = _feed(layers, 1, rng, only_conv=True)
    with_dense = {name: array if array.any() or name.startswith("energy.") else np.ones_like(array)
                  for name, array in conv_only.items()}
    run = lambda feed: sessions["gradient"].run(None, {"image": images, **feed})
    for a, b in zip(run(conv_only), run(with_dense)):
        np.testing.assert_array_equal(a, b)
