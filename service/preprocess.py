"""From a decoded image to what the network takes, the way its training data looked.

`digit` (the default for one-channel bundles) turns a photo or drawing of a digit into an
MNIST-style input, step by step:
  1. greyscale: luminance (ITU-R BT.601) of the alpha-composited RGB;
  2. polarity: the median of the border pixels is the background; if it is lighter than mid-grey
     the digit is dark on light and the image is inverted, so that strokes are light on dark as
     the manifest's input.foreground "light" (and "any") says; for "dark" the result of the
     last step is inverted back;
  3. background removal: the (new) border median becomes 0 and the brightest pixel 1, so paper
     that photographs grey does not turn into a grey MNIST background;
  4. crop to the bounding box of the pixels above 0.2 (faint noise does not widen it);
  5. fit the crop into 20x20 (the box scaled by height/28 for other sizes) keeping its aspect ratio,
     antialiased (Lanczos);
  6. paste it into the 28x28 input so that its centre of mass is at the centre, as MNIST did.
An image with no strokes at all comes out black.

`none` only converts to the manifest's channels and resizes to its input size (bilinear), for
images that are already like the training data (e.g. MNIST digits themselves).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from service import images
from service.images import Decoded

MODES = ("digit", "none")
# Images are scaled down to fit this before preprocessing: ample for finding and cropping a digit
# that ends up 20 pixels tall, and it bounds the memory a large photo costs.
PREPROCESS_SIDE = 512
_STROKE = 0.2           # brightness above which a pixel counts as part of the digit
_BOX_FRACTION = 20 / 28  # MNIST: digits fit a 20x20 box in the 28x28 image


def from_request(request, spec: dict, mode: str, max_images: int, max_pixels: int) -> np.ndarray:
    """The request's images (decoded by service.images), preprocessed: an N x C x H x W batch."""
    decoded = images.from_request(request, max_images, max_pixels, shrink_to=PREPROCESS_SIDE)
    return np.stack([model_input(image, spec, mode) for image in decoded])


def model_input(image: Decoded, spec: dict, mode: str) -> np.ndarray:
    """C x H x W float32 in [0, 1] for a manifest `input` spec."""
    height, width = spec["height"], spec["width"]
    if mode == "digit":
        planes = digit(image.luminance, height, width, spec["foreground"])[None]
    else:
        planes = image.rgb.transpose(2, 0, 1) if spec["channels"] == 3 else image.luminance[None]
        planes = np.stack([resize(plane, height, width) for plane in planes])
    if spec["channels"] == 3 and planes.shape[0] == 1:
        planes = np.repeat(planes, 3, axis=0)
    return planes.astype(np.float32)


def digit(grey: np.ndarray, height: int, width: int, foreground: str) -> np.ndarray:
    grey = np.asarray(grey, np.float32)
    if _median(_border(grey)) > 0.5:                                  # step 2
        grey = 1 - grey
    background = _median(_border(grey))                              # step 3
    peak = float(grey.max())
    if peak - background < 1e-3:
        return np.zeros((height, width), np.float32)
    grey = np.clip((grey - background) / (peak - background), 0, 1)
    rows, cols = np.nonzero(grey > _STROKE)                           # step 4
    if rows.size == 0:
        return np.zeros((height, width), np.float32)
    crop = grey[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    box = max(1, round(min(height, width) * _BOX_FRACTION))           # step 5
    scale = box / max(crop.shape)
    fitted = resize(crop, max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale)),
                    Image.Resampling.LANCZOS)
    out = _paste_centred(np.clip(fitted, 0, 1), height, width)       # step 6
    return 1 - out if foreground == "dark" else out


def resize(plane: np.ndarray, height: int, width: int,
           method: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    if plane.shape == (height, width):
        return plane.astype(np.float32)
    image = Image.fromarray(np.asarray(plane, np.float32), mode="F")
    return np.asarray(image.resize((width, height), method), np.float32)


def _border(grey: np.ndarray) -> np.ndarray:
    width = max(1, min(grey.shape) // 20)
    return np.concatenate([grey[:width].ravel(), grey[-width:].ravel(),
                           grey[:, :width].ravel(), grey[:, -width:].ravel()])


def _median(values: np.ndarray) -> float:
    """np.median's value, without its generic machinery (a tenth of the time on a border)."""
    middle = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, middle)[middle])
    low, high = np.partition(values, [middle - 1, middle])[middle - 1:middle + 1]
    return (float(low) + float(high)) / 2


def _paste_centred(patch: np.ndarray, height: int, width: int) -> np.ndarray:
    total = float(patch.sum())
    if total:
        centre_y = float(patch.sum(axis=1) @ np.arange(patch.shape[0])) / total
        centre_x = float(patch.sum(axis=0) @ np.arange(patch.shape[1])) / total
    else:
        centre_y, centre_x = (patch.shape[0] - 1) / 2, (patch.shape[1] - 1) / 2
    # Top-left corner that puts the centre of mass on the image centre, kept inside the image.
    top = int(np.clip(round((height - 1) / 2 - centre_y), 0, height - patch.shape[0]))
    left = int(np.clip(round((width - 1) / 2 - centre_x), 0, width - patch.shape[1]))
    out = np.zeros((height, width), np.float32)
    out[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
    return out


def default_mode(spec: dict) -> str:
    """Digit preprocessing for greyscale bundles (what MNIST-style nets need for real photos)."""
    return "digit" if spec["channels"] == 1 else "none"
