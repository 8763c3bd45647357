"""From a decoded image to what the network takes, the way its training data looked.

`digit` (the default for one-channel bundles) turns a photo or drawing of a digit into an
MNIST-style input: greyscale (ITU-R BT.601 luminance of the alpha-composited RGB), then
lens.digit's normalisation (invert dark on light, remove the background, crop, deskew if the
manifest says so, fit 20x20, centre by mass), which training runs on every training digit of a
bundle whose manifest says `input.preprocess: digit`.

`none` only converts to the manifest's channels and resizes to its input size (bilinear), for
images that are already like the training data (e.g. MNIST digits themselves).
"""
from __future__ import annotations

import numpy as np

from lens import digit
from service.plumbing import images
from service.plumbing.images import Decoded

MODES = ("digit", "none")
# Images are scaled down to fit this before preprocessing: ample for finding and cropping a digit
# that ends up 20 pixels tall, and it bounds the memory a large photo costs.
PREPROCESS_SIDE = 512


def from_request(request, spec: dict, mode: str, max_images: int, max_pixels: int,
                 max_total: int | None = None) -> np.ndarray:
    """The request's images (decoded by service.plumbing.images, which checks the limits),
    preprocessed: an N x C x H x W batch."""
    decoded = images.from_request(request, max_images, max_pixels, max_total,
                                  shrink_to=PREPROCESS_SIDE)
    if len(decoded) == 1:   # most requests: np.stack of one costs 2.4 µs, indexing 0.1
        return model_input(decoded[0], spec, mode)[None]
    return np.stack([model_input(image, spec, mode) for image in decoded])


def model_input(image: Decoded, spec: dict, mode: str) -> np.ndarray:
    """C x H x W float32 in [0, 1] for a manifest `input` spec."""
    height, width = spec["height"], spec["width"]
    if mode == "digit":
        planes = digit.normalise(image.luminance, height, width, spec["foreground"],
                                 deskew=spec.get("deskew", False))[None]
    else:
        planes = image.rgb.transpose(2, 0, 1) if spec["channels"] == 3 else image.luminance[None]
        planes = np.stack([digit.resize(plane, height, width) for plane in planes])
    if spec["channels"] == 3 and planes.shape[0] == 1:
        planes = np.repeat(planes, 3, axis=0)
    return planes.astype(np.float32, copy=False)


def default_mode(spec: dict) -> str:
    """How the bundle's training images were prepared (the manifest says); for bundles that do
    not say, digit preprocessing for greyscale ones (what MNIST-style nets need for photos)."""
    return spec.get("preprocess", "digit" if spec["channels"] == 1 else "none")
