"""The bundle this process serves, loaded once when the app is created."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from flask import current_app

from lens import bundle as bundles
from lens.optvis.objectives import Objective, feeds
from lens.optvis.render import GradientGraph
from service.settings import Settings

EXTENSION = "cnnlens"


@dataclass(frozen=True)
class Served:
    settings: Settings
    bundle: bundles.Bundle
    graph: GradientGraph
    warmup_seconds: float

    @classmethod
    def load(cls, settings: Settings) -> Served:
        """Raises lens.bundle.BundleError, whose one-line message names the broken file."""
        bundle = bundles.load(settings.model_dir.resolve(), threads=settings.ort_threads)
        graph = GradientGraph.of(bundle)
        # The first run of a session allocates its buffers; do it now rather than in the first
        # user's request, and let /readyz say it happened.
        start = time.perf_counter()
        image = np.zeros((1, *bundle.input_shape), np.float32)
        bundle.model.run(None, {"image": image})
        graph(image, feeds([Objective()], bundle.layers))
        return cls(settings, bundle, graph, time.perf_counter() - start)


def current() -> Served:
    return current_app.extensions[EXTENSION]
