"""Gradient ascent on the input image through a bundle's gradient.onnx.

The same loop serves activation maximisation (start from noise or grey: "find the image that
maximises filter k", as in the lecture) and Deep Dream (start from a photo and amplify what a layer
sees there). Regularisers, each a setting: random jitter, scaling and rotation of the image the
gradient is taken on (transformation robustness, lens/optvis/transforms.py), a blur of the image
every few steps, L2 decay towards the background, octaves (optimise coarse-to-fine, carrying the
added detail), and what the ascent optimises: the pixels or a 1/f-scaled Fourier spectrum
(lens/optvis/param.py). The defaults are plain pixels and jitter alone.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import onnxruntime as ort

from lens.optvis import param, transforms
from lens.optvis.objectives import PREACTIVATION, Objective, ObjectiveError, feeds, targets


@dataclass(frozen=True)
class Settings:
    steps: int = 64                # gradient steps per octave
    step_size: float = 0.02        # pixel change per step, relative to the normalised gradient
    octaves: int = 1               # >1 only for objectives on layers that take any image size
    octave_scale: float = 1.4      # size ratio between octaves
    jitter: int = 1                # max random shift in pixels per step
    scales: tuple[float, ...] = ()   # per step, magnify by one of these (empty: never)
    degrees: tuple[float, ...] = ()  # per step, turn by one of these angles (empty: never)
    param: str = "pixels"          # what ascent optimises: "pixels" or "fourier" (see param.py)
    blur_sigma: float = 0.0        # Gaussian blur of the image ...
    blur_every: int = 4            # ... every this many steps
    decay: float = 0.0             # L2 decay of the image towards `background` per step
    background: float = 0.0        # pixel value decay pulls towards (MNIST: 0, black)
    preactivation_steps: int = 0   # first steps on the objective's pre-activation (see below)
    seed: int = 0
    time_budget: float | None = None   # seconds; stop early and return what there is

    def __post_init__(self):
        # The manifest stores vars(settings) as JSON, which gives lists back.
        object.__setattr__(self, "scales", tuple(self.scales))
        object.__setattr__(self, "degrees", tuple(self.degrees))
        if self.param not in PARAMETERISATIONS:
            raise ValueError(f"param {self.param!r} is not one of {', '.join(PARAMETERISATIONS)}")


PARAMETERISATIONS = {"pixels": param.pixels, "fourier": param.fourier}


@dataclass
class Result:
    images: np.ndarray                  # float32 NCHW in [0, 1]
    objective_before: np.ndarray        # per image, on the starting image
    objective_after: np.ndarray         # per image, on the result
    history: list[list[float]] = field(default_factory=list)   # per step, per image
    steps_done: int = 0
    budget_exhausted: bool = False
    # per image: steps with a gradient to follow, and steps taken on the pre-activation because
    # the activation's gradient had vanished
    moved: np.ndarray | None = None
    redirected: np.ndarray | None = None


class GradientGraph:
    """gradient.onnx with the facts render needs from the manifest."""

    def __init__(self, session: ort.InferenceSession, layers: list[dict], size: tuple[int, int]):
        self.session, self.layers, self.size = session, layers, tuple(size)
        self.targets = targets(layers, [node.name for node in session.get_inputs()])
        self._any_size = {layer["name"] for layer in layers if layer["any_size"]}

    @classmethod
    def of(cls, bundle) -> GradientGraph:
        spec = bundle.manifest["input"]
        return cls(bundle.gradient, bundle.layers, (spec["height"], spec["width"]))

    def fixed_size_layers(self, objectives: list[Objective]) -> set[str]:
        """The layers the objectives use that take only the model's input size (dense, output)."""
        used = set().union(*(o.layers for o in objectives))
        return {name.removesuffix(PREACTIVATION) for name in used} - self._any_size

    def check(self, objectives: list[Objective], size: tuple[int, int], octaves: int) -> None:
        fixed = self.fixed_size_layers(objectives)
        if fixed and (tuple(size) != self.size or octaves > 1):
            raise ObjectiveError(
                f"layers {sorted(fixed)} take only {self.size[0]}x{self.size[1]} images and one "
                "octave; objectives on conv layers work at any size")

    def __call__(self, images: np.ndarray, weights: dict[str, np.ndarray]):
        objective, grad = self.session.run(["objective", "grad.image"], {"image": images, **weights})
        return objective, grad


@dataclass(frozen=True)
class Progress:
    """Where an ascent is, after one step: for progress bars and previews of a dream in flight."""
    octave: int                  # 1-based, of `octaves`
    octaves: int
    step: int                    # 1-based, within the octave
    steps_done: int              # over all octaves so far, of `total_steps`
    total_steps: int
    objective: np.ndarray        # per image, on the image this step started from
    images: Callable[[], np.ndarray]   # the images as they are now, full size (computed on call)


class Ascent:
    """One render, a step at a time: iterating takes the steps, each yielding its Progress, and
    `result` is there once the iteration ends. Whoever stops iterating early (a client that went
    away) stops the work there. Bad objectives raise ObjectiveError here, before any step."""

    def __init__(self, graph: GradientGraph, objectives: list[Objective], start: np.ndarray,
                 settings: Settings = Settings()):
        self.start = np.ascontiguousarray(start, np.float32)
        graph.check(objectives, self.start.shape[2:], settings.octaves)
        self.graph, self.settings = graph, settings
        self.weights = Weights(feeds(objectives, graph.targets),
                               feeds([o.through(graph.targets) for o in objectives], graph.targets))
        self.result: Result | None = None
        self._steps = self._run()

    def __iter__(self) -> Iterator[Progress]:
        return self._steps

    def run(self, on_step: Callable[[Progress], None] | None = None) -> Result:
        """The steps left, each told to on_step; then the result."""
        for progress in self:
            if on_step:
                on_step(progress)
        return self.result

    def _run(self) -> Iterator[Progress]:
        graph, settings, start, weights = self.graph, self.settings, self.start, self.weights
        rng = np.random.default_rng(settings.seed)
        deadline = None if settings.time_budget is None else time.monotonic() + settings.time_budget
        result = Result(start, graph(start, weights.activation)[0], np.zeros(len(start), np.float32),
                        moved=np.zeros(len(start), int), redirected=np.zeros(len(start), int))
        on_preactivation = np.zeros(len(start), bool)

        height, width = start.shape[2:]
        sizes = octave_sizes((height, width), settings)
        detail = np.zeros_like(transforms.resize(start, *sizes[0]))
        transform = robustness(settings)
        for octave, size in enumerate(sizes, 1):
            base = transforms.resize(start, *size)
            # Each octave re-parameterises its own start: a Fourier parameter is tied to one size.
            parameterisation = PARAMETERISATIONS[settings.param](*size)
            p = parameterisation.from_image(np.clip(base + transforms.resize(detail, *size), 0, 1))
            for step in range(settings.steps):
                if deadline is not None and time.monotonic() > deadline:
                    result.budget_exhausted = True
                    break
                p, value, on_preactivation = _step(graph, parameterisation, p, transform(rng, size),
                                                   weights, settings, step, on_preactivation, result)
                result.history.append(value.tolist())
                result.steps_done += 1
                images = functools.partial(_full_size, start, parameterisation, p, base)
                yield Progress(octave, len(sizes), step + 1, result.steps_done,
                               settings.steps * len(sizes), value, images)
            detail = parameterisation.image(p) - base
            if result.budget_exhausted:
                break
        result.images = np.clip(start + transforms.resize(detail, height, width), 0, 1)
        result.objective_after = graph(result.images, weights.activation)[0]
        self.result = result


def render(graph: GradientGraph, objectives: list[Objective], start: np.ndarray,
           settings: Settings = Settings(),
           on_step: Callable[[Progress], None] | None = None) -> Result:
    """Maximise objectives[i] starting from start[i] (float32 NCHW in [0, 1])."""
    return Ascent(graph, objectives, start, settings).run(on_step)


def _full_size(start: np.ndarray, parameterisation: param.Parameterisation, p: np.ndarray,
               base: np.ndarray) -> np.ndarray:
    """The images mid-octave at the start's size: the start plus the detail added so far, as the
    octave's end will add it."""
    detail = parameterisation.image(p) - base
    return np.clip(start + transforms.resize(detail, *start.shape[2:]), 0, 1)


@dataclass(frozen=True)
class Weights:
    """gradient.onnx's weight inputs for the objectives, on their activations and on their
    pre-activations (the same as the activations where the graph exposes none)."""
    activation: dict[str, np.ndarray]
    preactivation: dict[str, np.ndarray]


def octave_sizes(size: tuple[int, int], settings: Settings) -> list[tuple[int, int]]:
    """The image size of each octave, coarse to fine; the last is `size`."""
    height, width = size
    return [(max(8, round(height / settings.octave_scale ** i)),
             max(8, round(width / settings.octave_scale ** i)))
            for i in reversed(range(settings.octaves))]


def robustness(settings: Settings) -> transforms.Transform:
    """The random transform each step's gradient is taken through. Jitter alone draws from the
    rng exactly as render always has, so default settings keep their pictures."""
    chain = [transforms.jitter(settings.jitter)] if settings.jitter else []
    chain += [transforms.random_scale(settings.scales)] if settings.scales else []
    chain += [transforms.random_rotate(settings.degrees)] if settings.degrees else []
    return transforms.compose(*chain)


def work(size: tuple[int, int], settings: Settings) -> int:
    """Pixel-steps `render` spends on one image of this size (H, W): steps x pixels summed over the
    octaves, plus the two full-size runs that measure the objective before and after. A run's
    time grows with its pixels, so this is what bounds a request's time before it starts."""
    steps = sum(h * w for h, w in octave_sizes(size, settings)) * settings.steps
    return steps + 2 * size[0] * size[1]


def _step(graph, parameterisation: param.Parameterisation, p, sample: transforms.Sample,
          weights: Weights, settings: Settings, step: int, on_preactivation: np.ndarray,
          result: Result):
    """One ascent step on the parameter p; returns the new p, the objective before the step, and
    which images take their next step on the pre-activation."""
    early = result.steps_done < settings.preactivation_steps
    result.redirected += on_preactivation & ~early
    on_preactivation = on_preactivation | early
    chosen = {name: np.where(on_preactivation.reshape(-1, *[1] * (array.ndim - 1)),
                             weights.preactivation[name], array)
              for name, array in weights.activation.items()}
    image = parameterisation.image(p)
    value, grad = graph(sample.apply(image), chosen)
    has_gradient = grad.any(axis=(1, 2, 3))
    result.moved += has_gradient
    # A unit that is off everywhere passes no gradient through its ReLU: rather than stay where it
    # is, such an image takes its next step on the pre-activation, then tries the activation again
    # (a conv unit can fire on a stroke while its mean pre-activation stays negative).
    redirect = ~has_gradient & ~on_preactivation
    # The parameterisations are linear, so the image moves along image(gradient on p): for
    # `fourier` the gradient filtered by 1/f squared, the coarse structure first.
    direction = parameterisation.image(parameterisation.backward(p, sample.adjoint(grad)))
    # Normalising by the mean absolute change makes step_size the mean pixel change per step for
    # every layer, image, stage of the ascent (Deep Dream's trick) and parameterisation.
    scale = np.abs(direction).mean(axis=(1, 2, 3), keepdims=True) + 1e-8
    # Decay, blur and clipping act on the image whatever is optimised, so they too mean the same
    # for every parameterisation.
    image = image + settings.step_size * direction / scale
    if settings.decay:
        image = image - settings.decay * (image - settings.background)
    if settings.blur_sigma and (step + 1) % settings.blur_every == 0:
        image = transforms.gaussian_blur(image, settings.blur_sigma)
    return parameterisation.from_image(np.clip(image, 0, 1).astype(np.float32)), value, redirect
