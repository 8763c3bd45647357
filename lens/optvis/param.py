"""Image parameterisations: what gradient ascent actually optimises.

The render loop keeps a parameter array `p` and sees the image `param.image(p)` (float NCHW); it
maps the gradient it gets on the image back to the parameter with `param.backward(p, grad)`, the
vector-Jacobian product, and keeps the image valid with `param.clip(p)` after every step. Both
parameterisations here are linear, so `image` is a linear map A, `backward` is its transpose Aᵀ
and `from_image` its pseudo-inverse.

- `pixels`: the parameter is the image (gradient ascent as it always was).
- `fourier`: Lucid's 1/f-scaled Fourier parameterisation (lucid/optvis/param/spatial.py,
  `fft_image`). A gradient step on p is a step on the image filtered by the squared 1/f scale, so
  ascent builds coarse structure before the high-frequency patterns it otherwise adds first.

The valid range [0, 1] is kept by projection (`clip`), not by Lucid's sigmoid: MNIST's background
is exactly 0 and its strokes exactly 1, values a sigmoid only reaches at infinite parameters, so a
digit or photo could not be a starting image, and pixels near black or white would see a vanishing
gradient through the sigmoid. Projection keeps the maps linear and any [0, 1] image reachable.
"""
from __future__ import annotations

import numpy as np


class Parameterisation:
    """The maps between a parameter and the (height, width) images it stands for, for any number
    of images and channels."""

    def __init__(self, height: int, width: int):
        self.size = (height, width)

    def image(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, p: np.ndarray, grad_image: np.ndarray) -> np.ndarray:
        """d objective / d p from d objective / d image(p). `p` is where the Jacobian is taken:
        unused by these linear maps, but part of the contract of a vector-Jacobian product."""
        raise NotImplementedError

    def from_image(self, images: np.ndarray) -> np.ndarray:
        """The parameter whose image is `images` (Deep Dream's photo, the next octave's start)."""
        raise NotImplementedError

    def clip(self, p: np.ndarray) -> np.ndarray:
        """The parameter whose image is image(p) clipped to [0, 1]."""
        return self.from_image(np.clip(self.image(p), 0, 1))

    def noise(self, rng: np.random.Generator, count: int, channels: int, *,
              mean: float, sd: float) -> np.ndarray:
        """A starting parameter for activation maximisation: a flat image of `mean` plus white
        noise of `sd` on the parameter, which is the parameterisation's own noise (1/f noise for
        `fourier`); clipped to a valid image."""
        flat = self.from_image(np.full((count, channels, *self.size), mean, np.float32))
        return self.clip(flat + sd * rng.standard_normal(flat.shape, dtype=np.float32))


class Pixels(Parameterisation):
    def image(self, p):
        return p

    def backward(self, p, grad_image):
        return grad_image

    def from_image(self, images):
        return np.array(images, dtype=np.result_type(images, np.float32))

    def clip(self, p):
        return np.clip(p, 0, 1)


class Fourier(Parameterisation):
    """p has shape (N, C, H, W // 2 + 1, 2): the real and imaginary parts of each image's half
    spectrum in numpy's rfft2 layout, divided by the per-frequency `scale`."""

    def __init__(self, height: int, width: int, decay_power: float = 1.0):
        super().__init__(height, width)
        freqs = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
        # The floor on the frequency keeps the DC term finite and as large as the lowest frequency.
        scale = 1 / np.maximum(freqs, 1 / max(height, width)) ** decay_power
        # irfft2 treats every bin of the half spectrum whose mirror image is implicit (all columns
        # but the first and, for even widths, the Nyquist one) as two bins of the full spectrum,
        # so a gradient on the image reaches those bins twice.
        self.multiplicity = np.full(freqs.shape[1], 2.0)
        self.multiplicity[0] = 1
        if width % 2 == 0:
            self.multiplicity[-1] = 1
        # With the orthonormal FFT, bin k of a unit-variance p adds (multiplicity_k scale_k)² to
        # the image's total variance; dividing by the root of the mean over pixels makes white
        # noise of standard deviation s on p give an image of standard deviation s whatever the
        # size and decay, as in `pixels`, so start noise and step sizes mean the same in both.
        gain = np.sqrt(((self.multiplicity * scale) ** 2).sum() / (height * width))
        self.scale = scale / gain

    def image(self, p):
        spectrum = self.scale * (p[..., 0] + 1j * p[..., 1])
        return np.fft.irfft2(spectrum, s=self.size, norm="ortho").astype(p.dtype, copy=False)

    def backward(self, p, grad_image):
        # The transpose of irfft2 (orthonormal) is rfft2 with the implicit mirror bins folded
        # back: the imaginary parts irfft2 discards (DC, Nyquist) come out as 0 because the
        # spectrum of a real gradient is real there.
        spectrum = np.fft.rfft2(grad_image, norm="ortho") * (self.multiplicity * self.scale)
        return _real_imag(spectrum, grad_image.dtype)

    def from_image(self, images):
        # rfft2's half spectrum is the minimum-norm parameter: where irfft2 only sees the
        # Hermitian part (first and Nyquist columns), rfft2 puts nothing else.
        return _real_imag(np.fft.rfft2(images, norm="ortho") / self.scale,
                          np.result_type(images, np.float32))


def pixels(height: int, width: int) -> Pixels:
    return Pixels(height, width)


def fourier(height: int, width: int, decay_power: float = 1.0) -> Fourier:
    return Fourier(height, width, decay_power)


def _real_imag(spectrum: np.ndarray, dtype) -> np.ndarray:
    return np.stack([spectrum.real, spectrum.imag], axis=-1).astype(dtype, copy=False)
