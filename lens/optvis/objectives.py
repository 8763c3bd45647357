"""What to maximise. Objectives compose like Lucent's: `channel("conv2", 7) + 0.5 * deepdream("conv1")`.

Every objective here is linear in the weights that gradient.onnx takes (`weights.<layer>`, one per
channel, and `energy.<layer>`, one per layer), so an objective is simply those weights, and adding
or scaling objectives adds or scales weights. See training/onnx_export.py for the formula.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ObjectiveError(ValueError):
    """An objective names a layer or channel the bundle does not have."""


@dataclass(frozen=True)
class Objective:
    channels: tuple[tuple[str, int, float], ...] = ()   # (layer, channel, weight)
    energy: tuple[tuple[str, float], ...] = ()           # (layer, weight)
    description: str = ""

    def __add__(self, other: Objective | int) -> Objective:
        if isinstance(other, int) and other == 0:   # so that sum() works
            return self
        return Objective(self.channels + other.channels, self.energy + other.energy,
                         f"{self.description} + {other.description}")

    __radd__ = __add__

    def __mul__(self, factor: float) -> Objective:
        return Objective(tuple((layer, c, w * factor) for layer, c, w in self.channels),
                         tuple((layer, w * factor) for layer, w in self.energy),
                         f"{factor:g} * ({self.description})")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1

    def __sub__(self, other: Objective) -> Objective:
        return self + -other

    @property
    def layers(self) -> set[str]:
        return {layer for layer, *_ in self.channels} | {layer for layer, _ in self.energy}


def channel(layer: str, index: int) -> Objective:
    """The degree of activation of filter `index` of a conv layer (its mean over the feature map),
    or the activation of a dense unit."""
    return Objective(channels=((layer, index, 1.0),), description=f"{layer}[{index}]")


def class_logit(index: int, layer: str = "logits") -> Objective:
    """The score of class `index` before the softmax (maximising the probability instead would
    also push the other classes down, which makes worse pictures)."""
    return Objective(channels=((layer, index, 1.0),), description=f"class {index}")


def deepdream(layer: str) -> Objective:
    """Deep Dream's objective: the mean squared activation of the whole layer, which amplifies
    whatever the layer already sees."""
    return Objective(energy=((layer, 1.0),), description=f"deepdream({layer})")


def feeds(objectives: list[Objective], layers: list[dict]) -> dict[str, np.ndarray]:
    """The gradient graph's weight inputs for a batch with one objective per image."""
    n = len(objectives)
    by_name = {layer["name"]: layer for layer in layers}
    out = {f"weights.{name}": np.zeros((n, layer["channels"]), np.float32)
           for name, layer in by_name.items()}
    out |= {f"energy.{name}": np.zeros(n, np.float32) for name in by_name}
    for i, objective in enumerate(objectives):
        for name in objective.layers - by_name.keys():
            raise ObjectiveError(f"unknown layer {name!r}; layers: {sorted(by_name)}")
        for name, index, weight in objective.channels:
            count = by_name[name]["channels"]
            if not 0 <= index < count:
                raise ObjectiveError(f"layer {name!r} has {count} channels (0..{count - 1}), "
                                     f"not {index}")
            out[f"weights.{name}"][i, index] += weight
        for name, weight in objective.energy:
            out[f"energy.{name}"][i] += weight
    return out
