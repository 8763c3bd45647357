"""Full-range YCbCr (ITU-R BT.601, as in JPEG), so a greyscale net can dream on a colour photo's
luminance and the photo gets its own colours back."""
from __future__ import annotations

import numpy as np

_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                      [-0.168736, -0.331264, 0.5],
                      [0.5, -0.418688, -0.081312]], np.float32)


def to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB in [0, 1] -> H x W x 3 (Y, Cb, Cr), chroma centred on 0.5."""
    return rgb @ _TO_YCBCR.T + np.array([0, 0.5, 0.5], np.float32)


def to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    centred = ycbcr - np.array([0, 0.5, 0.5], np.float32)
    return np.clip(centred @ np.linalg.inv(_TO_YCBCR).T, 0, 1).astype(np.float32)


def with_luminance(rgb: np.ndarray, luminance: np.ndarray) -> np.ndarray:
    """The photo's chroma under a new luminance."""
    ycbcr = to_ycbcr(rgb)
    ycbcr[..., 0] = luminance
    return to_rgb(ycbcr)
