"""Make a picture of a digit look like the digits the network learned from.

The service runs this on every upload (`preprocess=digit`) and training runs it on every
augmented training digit, so that a bundle sees the same kind of input when it is served as when
it was trained; the manifest's `input.deskew` says whether step 4 runs.

  1. polarity: the median of the border pixels is the background; if it is lighter than mid-grey
     the digit is dark on light and the image is inverted, so that strokes are light on dark as
     the manifest's input.foreground "light" (and "any") says; for "dark" the result of the
     last step is inverted back;
  2. background removal: the (new) border median becomes 0 and the brightest pixel 1, so paper
     that photographs grey does not turn into a grey MNIST background; where the border is
     unevenly lit (a shadow across a photographed note), the background is estimated at every
     pixel instead (a grey opening of a coarse copy: what remains once thin strokes are
     removed) and subtracted;
  3. crop to the bounding box of the pixels above 0.2 (faint noise does not widen it);
  4. (deskew) shear the crop so that its principal axis is upright: writers slant differently,
     and the slant measured by the image moments (Lecun et al.'s deskewing) is undone, then
     crop again;
  5. fit the crop into 20x20 (the box scaled by height/28 for other sizes) keeping its aspect
     ratio, antialiased (Lanczos);
  6. paste it into the output so that its centre of mass is at the centre, as MNIST did.
An image with no strokes at all comes out black.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

STROKE = 0.2             # brightness above which a pixel counts as part of the digit
BOX_FRACTION = 20 / 28   # MNIST: digits fit a 20x20 box in the 28x28 image
MAX_SLANT = 1.0          # |shear| undone at most (45°): a digit leans less; a scribble may not
UNEVEN = 0.1             # spread of the four sides' median brightness that means uneven light
COARSE = 16              # side of the coarse copy the background is estimated on


def normalise(grey: np.ndarray, height: int, width: int, foreground: str = "light",
              deskew: bool = False) -> np.ndarray:
    """An H x W float32 image in [0, 1] from a 2-D greyscale one in [0, 1] (steps above)."""
    grey = np.asarray(grey, np.float32)
    if _median(_border(grey)) > 0.5:                                  # step 1
        grey = 1 - grey
    if _uneven(grey):                                                # step 2
        grey = np.clip(grey - _background(grey), 0, 1)
    background = _median(_border(grey))
    peak = float(grey.max())
    if peak - background < 1e-3:
        return np.zeros((height, width), np.float32)
    grey = np.clip((grey - background) / (peak - background), 0, 1)
    crop = _crop(grey)                                               # step 3
    if crop is None:
        return np.zeros((height, width), np.float32)
    if deskew:                                                       # step 4
        crop = _crop(_unslant(crop)) if crop.shape[0] > 1 else crop
        if crop is None:
            return np.zeros((height, width), np.float32)
    box = max(1, round(min(height, width) * BOX_FRACTION))           # step 5
    scale = box / max(crop.shape)
    fitted = resize(crop, max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale)),
                    Image.Resampling.LANCZOS)
    out = _paste_centred(np.clip(fitted, 0, 1), height, width)       # step 6
    return 1 - out if foreground == "dark" else out


def slant(grey: np.ndarray) -> float:
    """Horizontal shift per row down the image of the strokes' principal axis (mu11 / mu02):
    positive for a digit leaning left (its foot right of its head)."""
    total = float(grey.sum())
    if total <= 0:
        return 0.0
    rows = np.arange(grey.shape[0], dtype=np.float64)
    cols = np.arange(grey.shape[1], dtype=np.float64)
    by_row, by_col = grey.sum(axis=1, dtype=np.float64), grey.sum(axis=0, dtype=np.float64)
    centre_y, centre_x = by_row @ rows / total, by_col @ cols / total
    dy, dx = rows - centre_y, cols - centre_x
    mu02 = by_row @ (dy * dy) / total
    mu11 = dy @ grey.astype(np.float64) @ dx / total
    return float(mu11 / mu02) if mu02 > 1e-9 else 0.0


def resize(plane: np.ndarray, height: int, width: int,
           method: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    if plane.shape == (height, width):
        return plane.astype(np.float32)
    image = Image.fromarray(np.asarray(plane, np.float32), mode="F")
    return np.asarray(image.resize((width, height), method), np.float32)


def _crop(grey: np.ndarray) -> np.ndarray | None:
    rows = np.flatnonzero((grey > STROKE).any(axis=1))
    cols = np.flatnonzero((grey > STROKE).any(axis=0))
    if rows.size == 0:
        return None
    return grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _uneven(grey: np.ndarray) -> bool:
    """Is the paper lit unevenly? Each side's median brightness, so that a stroke running off one
    side (a tightly cropped digit) does not count as a shadow."""
    width = max(1, min(grey.shape) // 20)
    sides = [_median(side.ravel()) for side in (grey[:width], grey[-width:], grey[:, :width],
                                                 grey[:, -width:])]
    return max(sides) - min(sides) > UNEVEN


def _background(grey: np.ndarray) -> np.ndarray:
    """The dark background under light strokes, per pixel: on a copy COARSE pixels long, strokes
    are a pixel or two wide, so a 3x3 minimum removes them and a 3x3 maximum restores the
    background's extent; brought back to full size, smoothly."""
    image = Image.fromarray(grey, mode="F")
    scale = COARSE / max(grey.shape)
    coarse = image.resize((max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
                          Image.Resampling.BOX)
    opened = coarse.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))
    return np.asarray(opened.resize((grey.shape[1], grey.shape[0]), Image.Resampling.BILINEAR),
                      np.float32)


def _unslant(grey: np.ndarray) -> np.ndarray:
    """`grey` sheared row by row about its centre of mass so that its slant becomes 0, on a
    canvas wide enough to keep every stroke."""
    shear = float(np.clip(slant(grey), -MAX_SLANT, MAX_SLANT))
    height, width = grey.shape
    centre_y = float(grey.sum(axis=1) @ np.arange(height)) / float(grey.sum())
    # output x = input x - shear * (y - centre_y) + pad; pad keeps the leftmost row's x >= 0
    pad = max(shear * (0 - centre_y), shear * (height - 1 - centre_y), 0.0)
    out_width = width + int(np.ceil(abs(shear) * (height - 1))) + 1
    image = Image.fromarray(grey, mode="F")
    # PIL's affine maps each output pixel (x, y) to the input pixel it samples
    sheared = image.transform((out_width, height), Image.Transform.AFFINE,
                              (1, shear, -shear * centre_y - pad, 0, 1, 0),
                              resample=Image.Resampling.BILINEAR)
    return np.asarray(sheared, np.float32)


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
