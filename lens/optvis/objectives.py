"""What to maximise. Objectives compose like Lucent's: `channel("conv2", 7) + 0.5 * deepdream("conv1")`.

Every objective here is linear in the weights that gradient.onnx takes (`weights.<target>`, one per
channel, and `energy.<target>`, one per target), so an objective is simply those weights, and adding
or scaling objectives adds or scales weights. See training/onnx_export.py for the formula.

A target is a layer's activation (`conv2`) or, in bundles built since gradient.onnx exposes it, a
conv or dense layer's pre-activation (`conv2.pre`: the input of its ReLU). A ReLU passes no
gradient where its unit is off, so ascent on the activation of a unit that is off everywhere goes
nowhere; its pre-activation always has a gradient (Lucid's answer is to redirect the ReLU's
gradient; a pre-activation objective is the same push, stated as an objective).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


PREACTIVATION = ".pre"


def preactivation(layer: str) -> str:
    """The target name of `layer`'s pre-activation."""
    return layer + PREACTIVATION


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
        """The targets it weighs (layer names, `.pre` for a pre-activation)."""
        return {layer for layer, *_ in self.channels} | {layer for layer, _ in self.energy}

    def through(self, targets: dict[str, int]) -> Objective:
        """The same objective on the pre-activation of every layer that has one in `targets`
        (the logits have none, and are kept)."""
        def pre(layer: str) -> str:
            return preactivation(layer) if preactivation(layer) in targets else layer
        return Objective(tuple((pre(layer), c, w) for layer, c, w in self.channels),
                         tuple((pre(layer), w) for layer, w in self.energy),
                         f"pre-activation of ({self.description})")


def channel(layer: str, index: int) -> Objective:
    """The degree of activation of filter `index` of a conv layer (its mean over the feature map),
    or the activation of a dense unit; `layer` may name a pre-activation (`conv2.pre`)."""
    return Objective(channels=((layer, index, 1.0),), description=f"{layer}[{index}]")


def class_logit(index: int, layer: str = "logits") -> Objective:
    """The score of class `index` before the softmax (maximising the probability instead would
    also push the other classes down, which makes worse pictures)."""
    return Objective(channels=((layer, index, 1.0),), description=f"class {index}")


def deepdream(layer: str) -> Objective:
    """Deep Dream's objective: the mean squared activation of the whole layer, which amplifies
    whatever the layer already sees."""
    return Objective(energy=((layer, 1.0),), description=f"deepdream({layer})")


def targets(layers: list[dict], inputs: list[str]) -> dict[str, int]:
    """The targets a gradient graph with these input names can weigh, with their channels."""
    channels = {layer["name"]: layer["channels"] for layer in layers}
    names = [name.removeprefix("weights.") for name in inputs if name.startswith("weights.")]
    return {name: channels[name.removesuffix(PREACTIVATION)] for name in names}


def feeds(objectives: list[Objective], targets: dict[str, int]) -> dict[str, np.ndarray]:
    """The gradient graph's weight inputs for a batch with one objective per image."""
    n = len(objectives)
    out = {f"weights.{name}": np.zeros((n, count), np.float32) for name, count in targets.items()}
    out |= {f"energy.{name}": np.zeros(n, np.float32) for name in targets}
    for i, objective in enumerate(objectives):
        for name in sorted(objective.layers - targets.keys()):
            raise ObjectiveError(_unknown(name, targets))
        for name, index, weight in objective.channels:
            count = targets[name]
            if not 0 <= index < count:
                raise ObjectiveError(f"layer {name!r} has {count} channels (0..{count - 1}), "
                                     f"not {index}")
            out[f"weights.{name}"][i, index] += weight
        for name, weight in objective.energy:
            out[f"energy.{name}"][i] += weight
    return out


def _unknown(name: str, targets: dict[str, int]) -> str:
    layers = sorted(t for t in targets if not t.endswith(PREACTIVATION))
    pre = sorted(t for t in targets if t.endswith(PREACTIVATION))
    if name.endswith(PREACTIVATION) and name.removesuffix(PREACTIVATION) in targets:
        if not pre:
            return (f"{name!r}: this bundle's gradient.onnx was built before it exposed "
                    "pre-activations; rebuild it with `python -m training export`")
        return f"{name!r}: that layer has no activation function; pre-activations: {pre}"
    return f"unknown layer {name!r}; layers: {layers}"
