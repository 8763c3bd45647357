"""One served bundle: its onnxruntime sessions and gradient graph, loaded and warmed up."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from flask import current_app, g

from lens import bundle as bundles
from lens.optvis.objectives import Objective, feeds
from lens.optvis.render import GradientGraph
from service import observability
from service.plumbing import params
from service.plumbing.problems import not_found
from service.runtime import weights
from service.settings import Settings

EXTENSION = "cnnlens"


@dataclass(frozen=True, eq=False)   # one loaded bundle is equal only to itself
class Served:
    settings: Settings
    bundle: bundles.Bundle
    graph: GradientGraph
    warmup_seconds: float
    # The filter pictures, units.json and its example sprites, and model.onnx, read (and checked
    # against the manifest) once at load: requests never touch the disk, and a bundle changed on
    # disk is seen only by a reload.
    files: dict[str, bytes]

    @classmethod
    def load(cls, directory: Path, settings: Settings) -> Served:
        """Raises lens.bundle.BundleError, whose one-line message names the broken file."""
        bundle = bundles.load(directory.resolve(), threads=settings.ort_threads)
        graph = GradientGraph.of(bundle)
        # The first run of a session allocates its buffers; do it now rather than in the first
        # user's request, and let /readyz say it happened.
        start = time.perf_counter()
        image = np.zeros((1, *bundle.input_shape), np.float32)
        # Untimed, unlike infer: warm-ups are not request metrics (/readyz shows them).
        bundle.model.run(None, {"image": image})
        graph(image, feeds([Objective()], graph.targets))
        warmup = time.perf_counter() - start
        model_file = bundle.manifest["graphs"]["model"]["file"]
        files = {name: bundles.read_file(bundle.path, bundle.manifest, name)
                 for name in [*bundles.pictures(bundle.manifest), *bundles.unit_files(bundle.manifest),
                              model_file]}
        return cls(settings, bundle, _TimedGraph(graph, bundle.name), warmup, files)

    @cached_property
    def first_conv_kernels(self) -> np.ndarray | None:
        """Parsed on first use: only the first conv layer's /filters need it."""
        return weights.first_conv_kernels(self.files[self.bundle.manifest["graphs"]["model"]["file"]])

    @cached_property
    def units(self) -> dict | None:
        """units.json (each unit's dataset examples), parsed once; None for a bundle built
        before dataset examples."""
        spec = self.bundle.manifest.get("units")
        return None if spec is None else json.loads(self.files[spec["file"]])

    def infer(self, images: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """model.onnx on a float32 N x C x H x W batch in [0, 1]: the named outputs (default:
        all). Naming only those needed spares copying out every activation of a large batch."""
        names = outputs or self.bundle.manifest["graphs"]["model"]["outputs"]
        start = time.perf_counter()
        results = dict(zip(names, self.bundle.model.run(names, {"image": images})))
        observability.observe_inference(self.bundle.name, len(images), time.perf_counter() - start)
        return results


class _TimedGraph(GradientGraph):
    """The bundle's gradient graph, each run timed into its model's gradient-step histogram."""

    def __init__(self, graph: GradientGraph, model: str):
        super().__init__(graph.session, graph.layers, graph.size)
        self.model = model

    def __call__(self, images: np.ndarray, weights: dict[str, np.ndarray]):
        with observability.gradient_step(self.model):
            return super().__call__(images, weights)


def current() -> Served:
    """The bundle the request asks for with `model` (the default model without it), whose name
    the request log reads from g.requested_model."""
    registry = current_app.extensions[EXTENSION]
    name = g.requested_model = params.given("model")
    try:
        return registry.get(name)
    except KeyError:
        raise not_found(f"no model {name!r}; models: {', '.join(registry.names())}") from None
