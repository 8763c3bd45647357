"""The networks cnn-lens knows by name, and loading a user's own by import path."""
from __future__ import annotations

import importlib

import torch
from torch import nn


def lecture(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """The lecture's Keras example: Conv 25@3x3, MaxPool 2, Conv 50@3x3, MaxPool 2, Flatten,
    Dense 100, Dense 10 (for a 1x28x28 input)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 25, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(25, 50, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(50 * 5 * 5, 100), nn.ReLU(),
        nn.Linear(100, num_classes),
    )


def small_vgg(in_channels: int = 3, num_classes: int = 10) -> nn.Sequential:
    """A VGG-style net for 32x32 colour images: padded 3x3 convs with BatchNorm, three stages."""
    def stage(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.MaxPool2d(2)]
    return nn.Sequential(
        *stage(in_channels, 32), *stage(32, 64), *stage(64, 128),
        nn.Flatten(),
        nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(256, num_classes),
    )


BUILT_IN = {"lecture": lecture, "small-vgg": small_vgg}


def build(name: str, in_channels: int, num_classes: int) -> nn.Module:
    """A built-in by name, or `package.module:Factory` for a user's own nn.Module class or factory,
    called as Factory(in_channels=..., num_classes=...)."""
    if name in BUILT_IN:
        return BUILT_IN[name](in_channels=in_channels, num_classes=num_classes)
    if ":" not in name:
        raise ValueError(f"unknown architecture {name!r}: use one of {sorted(BUILT_IN)} "
                         "or an import path 'package.module:Class'")
    module_name, _, attr = name.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    model = factory(in_channels=in_channels, num_classes=num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")
    return model


class Normalized(nn.Module):
    """`net` behind a fixed per-channel normalisation, so that every graph we export takes images
    in [0, 1] and the input gradient is with respect to the pixels a user sees."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net((image - self.mean) / self.std)
