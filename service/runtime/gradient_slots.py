"""Load shedding for gradient work: at most CNNLENS_MAX_CONCURRENT_GRADIENT requests of a worker
run gradient.onnx loops (/dream, and /explain with SmoothGrad or Integrated Gradients) at once.

A request that finds no free slot within QUEUE_WAIT seconds gets a 503 with Retry-After, instead
of queueing: a queue of dreams would hold the worker's threads, and /predict, /filters and
/healthz behind them, for many time budgets. Retry-After is the time until the first running
gradient request reaches the end of its budget, when a slot is sure to be free.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

from flask import current_app

from service.plumbing.problems import unavailable
from service.settings import Settings

# Long enough for a slot freed by a request that is just finishing; short enough that the
# threads waiting here leave the worker's other requests almost unqueued.
QUEUE_WAIT = 0.5
_EXTENSION = "cnnlens.gradient_slots"


class Slots:
    def __init__(self, count: int):
        self._free = threading.Semaphore(count)
        self._lock = threading.Lock()
        self._ends: list[float] = []   # time.monotonic() when each running request's budget ends

    @contextmanager
    def hold(self, budget: float) -> Iterator[None]:
        """Run the block in a slot, for at most `budget` seconds of gradient work, or raise a 503
        Problem when no slot frees up within QUEUE_WAIT."""
        if not self._free.acquire(timeout=QUEUE_WAIT):
            raise unavailable("the server is busy with other gradient requests (/dream, "
                              "/explain); retry later", self.retry_after())
        end = time.monotonic() + budget
        with self._lock:
            self._ends.append(end)
        try:
            yield
        finally:
            with self._lock:
                self._ends.remove(end)
            self._free.release()

    def retry_after(self) -> float:
        with self._lock:
            first = min(self._ends, default=time.monotonic())
        return first - time.monotonic()


def hold(settings: Settings, budget: float):
    """This worker's slots (made on first use, from its settings) held for `budget` seconds."""
    extensions = current_app.extensions
    slots = extensions.get(_EXTENSION)
    if slots is None:
        slots = extensions.setdefault(_EXTENSION, Slots(settings.max_concurrent_gradient))
    return slots.hold(budget)
