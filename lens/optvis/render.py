"""Gradient ascent on the input image through a bundle's gradient.onnx.

The same loop serves activation maximisation (start from noise or grey: "find the image that
maximises filter k", as in the lecture) and Deep Dream (start from a photo and amplify what a layer
sees there). Regularisers, each a setting: random jitter, a blur of the image every few steps,
L2 decay towards the background, and octaves (optimise coarse-to-fine, carrying the added detail).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnxruntime as ort

from lens.optvis import transforms
from lens.optvis.objectives import Objective, ObjectiveError, feeds


@dataclass(frozen=True)
class Settings:
    steps: int = 64                # gradient steps per octave
    step_size: float = 0.02        # pixel change per step, relative to the normalised gradient
    octaves: int = 1               # >1 only for objectives on layers that take any image size
    octave_scale: float = 1.4      # size ratio between octaves
    jitter: int = 1                # max random shift in pixels per step
    blur_sigma: float = 0.0        # Gaussian blur of the image ...
    blur_every: int = 4            # ... every this many steps
    decay: float = 0.0             # L2 decay of the image towards `background` per step
    background: float = 0.0        # pixel value decay pulls towards (MNIST: 0, black)
    seed: int = 0
    time_budget: float | None = None   # seconds; stop early and return what there is


@dataclass
class Result:
    images: np.ndarray                  # float32 NCHW in [0, 1]
    objective_before: np.ndarray        # per image, on the starting image
    objective_after: np.ndarray         # per image, on the result
    history: list[list[float]] = field(default_factory=list)   # per step, per image
    steps_done: int = 0
    budget_exhausted: bool = False


class GradientGraph:
    """gradient.onnx with the facts render needs from the manifest."""

    def __init__(self, session: ort.InferenceSession, layers: list[dict], size: tuple[int, int]):
        self.session, self.layers, self.size = session, layers, tuple(size)
        self._any_size = {layer["name"] for layer in layers if layer["any_size"]}

    @classmethod
    def of(cls, bundle) -> GradientGraph:
        spec = bundle.manifest["input"]
        return cls(bundle.gradient, bundle.layers, (spec["height"], spec["width"]))

    def check(self, objectives: list[Objective], size: tuple[int, int], octaves: int) -> None:
        fixed = set().union(*(o.layers for o in objectives)) - self._any_size
        if fixed and (tuple(size) != self.size or octaves > 1):
            raise ObjectiveError(
                f"layers {sorted(fixed)} take only {self.size[0]}x{self.size[1]} images and one "
                "octave; objectives on conv layers work at any size")

    def __call__(self, images: np.ndarray, weights: dict[str, np.ndarray]):
        objective, grad = self.session.run(["objective", "grad.image"], {"image": images, **weights})
        return objective, grad


def render(graph: GradientGraph, objectives: list[Objective], start: np.ndarray,
           settings: Settings = Settings(),
           on_step: Callable[[int, int], None] | None = None) -> Result:
    """Maximise objectives[i] starting from start[i] (float32 NCHW in [0, 1])."""
    start = np.ascontiguousarray(start, np.float32)
    graph.check(objectives, start.shape[2:], settings.octaves)
    weights = feeds(objectives, graph.layers)
    rng = np.random.default_rng(settings.seed)
    deadline = None if settings.time_budget is None else time.monotonic() + settings.time_budget
    result = Result(start, graph(start, weights)[0], np.zeros(len(start), np.float32))

    height, width = start.shape[2:]
    sizes = octave_sizes((height, width), settings)
    detail = np.zeros_like(transforms.resize(start, *sizes[0]))
    total = settings.steps * len(sizes)
    for size in sizes:
        base = transforms.resize(start, *size)
        image = np.clip(base + transforms.resize(detail, *size), 0, 1)
        for step in range(settings.steps):
            if deadline is not None and time.monotonic() > deadline:
                result.budget_exhausted = True
                break
            image, value = _step(graph, image, weights, settings, rng, step)
            result.history.append(value.tolist())
            result.steps_done += 1
            if on_step:
                on_step(result.steps_done, total)
        detail = image - base
        if result.budget_exhausted:
            break
    result.images = np.clip(start + transforms.resize(detail, height, width), 0, 1)
    result.objective_after = graph(result.images, weights)[0]
    return result


def octave_sizes(size: tuple[int, int], settings: Settings) -> list[tuple[int, int]]:
    """The image size of each octave, coarse to fine; the last is `size`."""
    height, width = size
    return [(max(8, round(height / settings.octave_scale ** i)),
             max(8, round(width / settings.octave_scale ** i)))
            for i in reversed(range(settings.octaves))]


def work(size: tuple[int, int], settings: Settings) -> int:
    """Pixel-steps `render` spends on one image of this size (H, W): steps x pixels summed over the
    octaves, plus the two full-size runs that measure the objective before and after. A run's
    time grows with its pixels, so this is what bounds a request's time before it starts."""
    steps = sum(h * w for h, w in octave_sizes(size, settings)) * settings.steps
    return steps + 2 * size[0] * size[1]


def _step(graph, image, weights, settings: Settings, rng, step: int):
    dy, dx = rng.integers(-settings.jitter, settings.jitter + 1, size=2) if settings.jitter else (0, 0)
    value, grad = graph(transforms.roll(image, dy, dx), weights)
    grad = transforms.roll(grad, -dy, -dx)
    # Normalising by the mean absolute gradient makes step_size mean the same for every layer,
    # image and stage of the ascent (Deep Dream's trick).
    scale = np.abs(grad).mean(axis=(1, 2, 3), keepdims=True) + 1e-8
    image = image + settings.step_size * grad / scale
    if settings.decay:
        image = image - settings.decay * (image - settings.background)
    if settings.blur_sigma and (step + 1) % settings.blur_every == 0:
        image = transforms.gaussian_blur(image, settings.blur_sigma)
    return np.clip(image, 0, 1).astype(np.float32), value
