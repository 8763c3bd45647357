"""Every setting of the service, read once from environment variables (CNNLENS_*).

Each numeric setting has a default and bounds (`BOUNDS`); a value outside them stops startup with a
message naming the variable, because a typo such as CNNLENS_MAX_PIXELS=1e12 should fail loudly
rather than let one request exhaust the machine. The README's configuration table documents every
variable; tests/test_readme.py keeps it equal to this file. 4096 for the dream side is the largest
size gradient.onnx is exported for (training/onnx_export.py).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

BOUNDS = {   # field -> (lowest, highest) allowed value
    "max_request_bytes": (1024, 100 * 2**20),
    "max_pixels": (28 * 28, 100_000_000),
    "max_request_pixels": (28 * 28, 1_000_000_000),
    "max_batch": (1, 1024),
    "max_dream_steps": (1, 4096),
    "max_dream_octaves": (1, 12),
    "max_dream_side": (8, 4096),
    "dream_time_budget": (0.1, 300.0),
    "max_dream_work": (10_000, 1_000_000_000),
    "max_explain_samples": (1, 4096),
    "explain_time_budget": (0.1, 300.0),
    "max_concurrent_gradient": (1, 64),
    "max_scale": (1, 64),
    "ort_threads": (0, 64),
    "workers": (1, 64),
    "threads": (1, 64),
    "timeout": (1, 600),
    "client_timeout": (1, 300),
}

ANY_ORIGIN = "*"
# An origin as browsers send it: scheme, host (a name, IPv4 or bracketed IPv6) and port; no path.
_ORIGIN = re.compile(r"https?://(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::\d{1,5})?")

# Seconds a gradient request needs besides its time budget (waiting for a gradient slot,
# decoding, the last step, encoding).
_TIMEOUT_MARGIN = 10


class SettingsError(ValueError):
    """An environment variable has a value the service cannot run with."""


@dataclass(frozen=True)
class Settings:
    # A directory of bundles, each served under its manifest name (or one bundle directory).
    models_dir: Path = Path("models")
    default_model: str = "mnist-cnn"   # the model of requests without ?model=
    # Bearer token for POST /admin/reload; empty: the admin endpoints are off (404).
    admin_token: str = field(default="", repr=False)
    # Origins whose pages may call the API from a browser (CORS; service/plumbing/cors.py): exact
    # origins, comma-separated, or *; empty: none, and no answer carries a CORS header.
    cors_origins: str = ""
    max_request_bytes: int = 10 * 2**20
    max_pixels: int = 16_000_000
    # All the images of one request together, checked on their headers before any is decoded:
    # decoding is the work a small body can ask for (a solid 4000x4000 PNG is a few kB), and 64
    # of the largest images would be 1 G pixels, about 6 s of a core. 4 of the largest fit.
    max_request_pixels: int = 64_000_000
    max_batch: int = 64
    max_dream_steps: int = 256
    max_dream_octaves: int = 6
    max_dream_side: int = 1024
    dream_time_budget: float = 20.0
    # Pixel-steps of one /dream: the sum over octaves of steps x that octave's pixels, plus the
    # two full-size runs that measure the objective (lens.optvis.render.work). One pixel-step
    # costs at most about 0.7 us of one core here (64 steps of a 512x512 photo at full size,
    # 17.3 M pixel-steps, took 11.6 s on a busy day: docs/benchmarks.md), so the limit is at most
    # about 17 s, inside the 20 s time budget. One octave of 64 steps fits up to 600x600; on a
    # 1024x1024 image 20 steps do.
    max_dream_work: int = 24_000_000
    # SmoothGrad samples and Integrated Gradients steps of one /explain: each is one gradient run
    # on the model's input (0.45 ms at 28x28), so 256 is about 0.1 s.
    max_explain_samples: int = 256
    # Seconds of gradient runs one /explain may take; past it the answer is a 503 (an attribution
    # from part of its samples is not the one asked for). Far above the 0.1 s of the largest
    # request on an idle core: it is only reached under load.
    explain_time_budget: float = 10.0
    # /dream and /explain with samples at a time per worker; more wait briefly, then get a 503.
    # One per worker: each uses a core (ort_threads=1) and workers = cores, so a second one would
    # only halve the speed of both; the other threads stay free for /predict, /filters, /healthz.
    max_concurrent_gradient: int = 1
    max_scale: int = 32
    # One thread per session: gunicorn already runs one worker per core (gunicorn.conf.py), and
    # onnxruntime's default of one thread per core in every worker oversubscribes the CPU.
    ort_threads: int = 1
    bind: str = "127.0.0.1:8000"
    # The reference machine has 2 cores: one worker per core, since inference is CPU-bound and
    # each worker runs onnxruntime on one thread; 4 threads per worker so that /healthz and
    # /filters are not queued behind a /dream that is using its whole time budget. Measured
    # against other counts in gunicorn.conf.py.
    workers: int = 2
    threads: int = 4
    # Longer than the largest dream time budget's default, with room for decoding and encoding.
    timeout: int = 60
    # Seconds a client has to send a request's headers and its body (meanwhile it holds no
    # thread); a slower one is disconnected, or its body cut short (service/runtime/worker.py).
    # 30 s lets the largest body (CNNLENS_MAX_REQUEST_BYTES) arrive at 3 Mbit/s.
    client_timeout: int = 30

    def __post_init__(self):
        object.__setattr__(self, "models_dir", Path(self.models_dir))   # accept a str too
        self.allowed_origins   # a malformed origin stops start-up
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise SettingsError(f"{env_name(name)}={value} is outside [{low}, {high}]")
        if self.max_request_pixels < self.max_pixels:
            raise SettingsError(f"{env_name('max_request_pixels')}={self.max_request_pixels} must "
                                f"be at least {env_name('max_pixels')}={self.max_pixels}: a "
                                "request may hold one image of the largest size")
        for budget in ("dream_time_budget", "explain_time_budget"):
            if self.timeout < getattr(self, budget) + _TIMEOUT_MARGIN:
                raise SettingsError(f"{env_name('timeout')}={self.timeout} must be at least "
                                    f"{env_name(budget)}={getattr(self, budget)} + "
                                    f"{_TIMEOUT_MARGIN}, or gunicorn kills workers mid-gradient")

    @property
    def allowed_origins(self) -> frozenset[str]:
        """CNNLENS_CORS_ORIGINS as a set of origins ({"*"} for any; empty for none, and CORS is
        off: service.plumbing.cors). Raises SettingsError for anything that is not an origin."""
        origins = frozenset(o.strip().lower().rstrip("/") for o in self.cors_origins.split(",")
                            if o.strip())
        if ANY_ORIGIN in origins and len(origins) > 1:
            raise SettingsError(f"{env_name('cors_origins')}: '*' allows every origin; "
                                f"list no others beside it")
        for origin in origins - {ANY_ORIGIN}:
            if not _ORIGIN.fullmatch(origin):
                raise SettingsError(f"{env_name('cors_origins')}: {origin!r} is not an origin "
                                    f"such as https://example.org or http://localhost:3000")
        return origins

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for setting in fields(cls):
            raw = environ.get(env_name(setting.name))
            if raw is None:
                continue
            convert = {"Path": Path, "int": int, "float": float, "str": str}[setting.type]
            try:
                values[setting.name] = convert(raw)
            except ValueError:
                raise SettingsError(f"{env_name(setting.name)}={raw!r} is not a valid "
                                    f"{setting.type}") from None
        return cls(**values)


def env_name(field: str) -> str:
    return f"CNNLENS_{field.upper()}"
