"""What the network's outputs say, for every endpoint that shows them: the most probable labels,
each channel's degree of activation, and which layers have feature maps."""
from __future__ import annotations

import numpy as np

from service.runtime.served import Served


def spatial_layers(served: Served) -> list[str]:
    return [layer["name"] for layer in served.bundle.layers if len(layer["shape"]) == 3]


def top_k_labels(probabilities: np.ndarray, labels: list[str], k: int) -> list[dict]:
    order = np.argsort(-probabilities, kind="stable")[:k].tolist()
    values = probabilities.tolist()   # Python ints and floats, not a numpy scalar each
    return [{"index": i, "label": labels[i], "probability": values[i]} for i in order]


def degrees(activation: np.ndarray) -> dict:
    """The lecture's degree of activation of each channel: its mean over the feature map (for a
    dense unit, its value), and the strongest single response (the max) beside it."""
    flat = activation.reshape(activation.shape[0], -1)
    return {"mean": flat.mean(axis=1).tolist(), "max": flat.max(axis=1).tolist()}
