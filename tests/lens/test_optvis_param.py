"""Image parameterisations (lens/optvis/param.py) and the random transforms with adjoints
(lens/optvis/transforms.py): every backward and adjoint is checked as a transpose by the adjoint
identity <A x, g> == <x, Aᵀ g>, the Fourier one also by finite differences, and scale/rotation
against torch's affine_grid + grid_sample as an independent reference."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lens.optvis import transforms
from lens.optvis.param import fourier, pixels

SIZES = [(4, 4), (5, 4), (4, 5), (7, 7), (6, 9), (28, 28)]   # odd and even, for the Nyquist bins
TRANSFORMS = {
    "jitter": transforms.jitter(2),
    "scale": transforms.random_scale(transforms.SCALES),
    "rotate": transforms.random_rotate(transforms.DEGREES),
    "standard": transforms.STANDARD,
    "wild": transforms.compose(transforms.random_scale([0.5, 1.7]),
                               transforms.random_rotate([-40, 33])),
}


def _dot(a, b):
    return float(np.vdot(np.asarray(a, np.float64), np.asarray(b, np.float64)))


def _assert_adjoint(forward, adjoint, x, g):
    """<forward(x), g> == <x, adjoint(g)>, with a tolerance relative to the terms' magnitude."""
    lhs, rhs = _dot(forward(x), g), _dot(x, adjoint(g))
    scale = np.sqrt(_dot(x, x) * _dot(g, g))
    assert abs(lhs - rhs) <= 1e-12 * scale, (lhs, rhs)


# Parameterisations

@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("make", [pixels, fourier, lambda h, w: fourier(h, w, decay_power=1.7)])
def test_backward_is_the_transpose_of_image(make, size):
    rng = np.random.default_rng(sum(size))
    param = make(*size)
    p = param.from_image(rng.standard_normal((3, 2, *size)))
    p = rng.standard_normal(p.shape)                 # all of parameter space, redundant bins too
    g = rng.standard_normal((3, 2, *size))
    _assert_adjoint(param.image, lambda grad: param.backward(p, grad), p, g)


@pytest.mark.parametrize("size", [(4, 4), (5, 4), (4, 5), (3, 3)])
def test_fourier_backward_matches_finite_differences(size):
    rng = np.random.default_rng(7)
    param = fourier(*size)
    p = rng.standard_normal((1, 1, size[0], size[1] // 2 + 1, 2))
    g = rng.standard_normal((1, 1, *size))
    objective = lambda q: _dot(param.image(q), g)   # noqa: E731
    eps = 1e-6
    numeric = np.zeros_like(p)
    for index in np.ndindex(p.shape):
        step = np.zeros_like(p)
        step[index] = eps
        numeric[index] = (objective(p + step) - objective(p - step)) / (2 * eps)
    np.testing.assert_allclose(param.backward(p, g), numeric, atol=1e-8)
    # irfft2 discards the imaginary part of the DC bin: its gradient is 0, not merely small.
    assert abs(numeric[0, 0, 0, 0, 1]) < 1e-9


@pytest.mark.parametrize("size", SIZES + [(512, 384)])
def test_fourier_from_image_reproduces_the_image(size):
    images = np.random.default_rng(3).random((2, 3, *size), dtype=np.float32)
    param = fourier(*size)
    p = param.from_image(images)
    assert p.shape == (2, 3, size[0], size[1] // 2 + 1, 2) and p.dtype == np.float32
    np.testing.assert_allclose(param.image(p), images, atol=2e-6)


def test_pixels_is_the_identity_and_clips():
    images = np.random.default_rng(4).normal(0.5, 1, (2, 1, 5, 6)).astype(np.float32)
    param = pixels(5, 6)
    p = param.from_image(images)
    np.testing.assert_array_equal(param.image(p), images)
    np.testing.assert_array_equal(param.backward(p, images), images)
    np.testing.assert_array_equal(param.clip(p), np.clip(images, 0, 1))


def test_fourier_clip_projects_the_image_into_range():
    param = fourier(28, 28)
    p = np.random.default_rng(5).standard_normal((2, 1, 28, 15, 2)).astype(np.float32)
    image = param.image(p)
    assert image.min() < -0.5 and image.max() > 1.5
    np.testing.assert_allclose(param.image(param.clip(p)), np.clip(image, 0, 1), atol=2e-6)


@pytest.mark.parametrize("size", [(6, 6), (5, 8), (28, 28)])
def test_fourier_white_parameter_noise_gives_unit_variance_images(size):
    """The gain normalisation: the Jacobian's squared Frobenius norm per pixel is 1, as for
    pixels."""
    param = fourier(*size)
    shape = (size[0], size[1] // 2 + 1, 2)
    basis = np.eye(math.prod(shape)).reshape(-1, 1, *shape)
    jacobian = param.image(basis).reshape(len(basis), -1)
    assert (jacobian ** 2).sum() / math.prod(size) == pytest.approx(1, abs=1e-12)


def _power_by_frequency(images):
    """Mean spectral power against radial frequency (cycles per pixel), DC left out."""
    h, w = images.shape[-2:]
    power = (np.abs(np.fft.fft2(images)) ** 2).mean(axis=(0, 1))
    freqs = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    return freqs.ravel()[1:], power.ravel()[1:]


def test_fourier_noise_has_a_one_over_f_spectrum_unlike_white_noise():
    rng = np.random.default_rng(6)
    size, count = (64, 64), 200
    param = fourier(*size)
    coloured = param.image(rng.standard_normal((count, 1, 64, 33, 2)))
    white = pixels(*size).image(rng.standard_normal((count, 1, *size)))
    freqs, power = _power_by_frequency(coloured)
    _, white_power = _power_by_frequency(white)
    low, high = freqs < 0.1, freqs > 0.3
    assert power[low].mean() > 30 * power[high].mean()
    assert 0.8 < white_power[low].mean() / white_power[high].mean() < 1.25
    # Amplitude ~ 1/f**decay_power, so power ~ f**-2 (up to the half power of the first column's
    # bins, whose conjugates are the same parameters: they spread the fit, not its slope).
    slope = np.polyfit(np.log(freqs), np.log(power), 1)[0]
    assert slope == pytest.approx(-2, abs=0.05)
    # Same total variance as white noise, so the difference is all in where the power sits.
    assert coloured.var() == pytest.approx(white.var(), rel=0.1)


@pytest.mark.parametrize("make", [pixels, fourier])
def test_noise_starts_are_valid_reproducible_and_around_the_mean(make):
    param = make(28, 28)
    start = param.noise(np.random.default_rng(8), 4, 1, mean=0.5, sd=0.1)
    again = param.noise(np.random.default_rng(8), 4, 1, mean=0.5, sd=0.1)
    np.testing.assert_array_equal(start, again)
    image = param.image(start)
    assert image.shape == (4, 1, 28, 28) and image.min() >= -1e-6 and image.max() <= 1 + 1e-6
    assert image.mean() == pytest.approx(0.5, abs=0.05)
    assert 0.05 < image.std() < 0.15


# Transforms

@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("size", [(28, 28), (13, 20)])
def test_every_transform_sample_has_its_exact_adjoint(name, size):
    rng = np.random.default_rng(10)
    for _ in range(20):
        sample = TRANSFORMS[name](rng, size)
        x, g = rng.standard_normal((2, 3, 2, *size))
        _assert_adjoint(sample.apply, sample.adjoint, x, g)


def test_jitter_adjoint_undoes_the_shift():
    x = np.random.default_rng(11).random((2, 1, 9, 9))
    for seed in range(10):
        sample = transforms.jitter(3)(np.random.default_rng(seed), (9, 9))
        np.testing.assert_array_equal(sample.adjoint(sample.apply(x)), x)


def _torch_affine(images, scale, degrees, grad):
    """The same resampling by torch: theta maps normalised output coordinates (x right, y down,
    align_corners=False, so pixel centres at (2i + 1) / n - 1) to normalised input coordinates."""
    n, c, h, w = images.shape
    angle = math.radians(degrees)
    # Pixel offsets from the centre: input = R(angle) output / scale, with R turning the content
    # counter-clockwise on screen (y down) — pinned independently by the rot90 test below.
    rotation = np.array([[math.cos(angle), -math.sin(angle)],
                         [math.sin(angle), math.cos(angle)]]) / scale
    to_pixels = np.diag([w / 2, h / 2])
    theta = np.linalg.inv(to_pixels) @ rotation @ to_pixels
    theta = torch.tensor(np.hstack([theta, np.zeros((2, 1))]))[None].expand(n, 2, 3)
    x = torch.tensor(images, requires_grad=True)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out.backward(torch.tensor(grad))
    return out.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("size", [(28, 28), (17, 24), (24, 17)])
@pytest.mark.parametrize("scale, degrees", [(1.0, 0.0), (1.1, 0.0), (0.9, 0.0), (1.0, 7.0),
                                            (1.0, -10.0), (0.93, 4.0), (1.6, 33.0), (0.5, -71.0)])
def test_affine_matches_torch_grid_sample_and_its_autograd(size, scale, degrees):
    rng = np.random.default_rng(12)
    images, grad = rng.standard_normal((2, 3, 2, *size))
    sample = transforms.affine(size, scale, degrees)
    expected, expected_adjoint = _torch_affine(images, scale, degrees, grad)
    np.testing.assert_allclose(sample.apply(images), expected, atol=1e-10)
    np.testing.assert_allclose(sample.adjoint(grad), expected_adjoint, atol=1e-10)


def test_rotation_is_counter_clockwise_as_displayed_and_scale_magnifies():
    image = np.random.default_rng(13).random((1, 1, 9, 9))
    np.testing.assert_allclose(transforms.affine((9, 9), degrees=90).apply(image),
                               np.rot90(image, axes=(2, 3)), atol=1e-12)
    dot = np.zeros((1, 1, 9, 9))
    dot[0, 0, 4, 6] = 1                                  # 2 pixels right of the centre
    magnified = transforms.affine((9, 9), scale=2.0).apply(dot)
    assert magnified[0, 0, 4].argmax() == 8 and magnified[0, 0, 4, 8] == 1


def test_transforms_keep_float32_and_shape():
    images = np.random.default_rng(14).random((100, 1, 28, 28), dtype=np.float32)
    sample = transforms.STANDARD(np.random.default_rng(0), (28, 28))
    for out in (sample.apply(images), sample.adjoint(images)):
        assert out.shape == images.shape and out.dtype == np.float32


def test_compose_applies_in_order_and_its_adjoint_in_reverse():
    size = (20, 20)
    parts = [transforms.random_scale([1.3]), transforms.jitter(4), transforms.random_rotate([25])]
    composed = transforms.compose(*parts)(np.random.default_rng(15), size)
    rng = np.random.default_rng(15)                    # the same draws, one part at a time
    samples = [part(rng, size) for part in parts]
    x, g = np.random.default_rng(16).standard_normal((2, 2, 1, *size))
    in_order = samples[2].apply(samples[1].apply(samples[0].apply(x)))
    np.testing.assert_array_equal(composed.apply(x), in_order)
    _assert_adjoint(composed.apply, composed.adjoint, x, g)
    # The parts do not commute, so the identity above would catch adjoints chained forwards.
    forwards = samples[2].adjoint(samples[1].adjoint(samples[0].adjoint(g)))
    assert abs(_dot(composed.apply(x), g) - _dot(x, forwards)) > 1e-3


def test_same_seed_same_sample_and_seeds_differ():
    x = np.random.default_rng(17).random((1, 1, 28, 28))
    outputs = [transforms.STANDARD(np.random.default_rng(seed), (28, 28)).apply(x)
               for seed in (0, 0, 1, 2, 3)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert len({out.tobytes() for out in outputs}) == 4
