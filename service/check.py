"""`python -m service.check`: load and warm up the models the settings name, as a worker would,
and say in one line whether it can be served (exit status 0) or what is wrong (1).

gunicorn.conf.py runs it before starting any worker; in a child process, because the gunicorn
master must never import onnxruntime (workers forked after that hang or abort when they exit).
"""
from __future__ import annotations

import os
import sys
import tempfile

from lens.bundle import BundleError
from service.runtime.registry import Registry
from service.settings import Settings, SettingsError

# prometheus-client's multiprocess files start at 1 MiB each (its mmap's initial size): a metrics
# directory that cannot take one would fail every worker at its first request, or kill it with
# SIGBUS when a full tmpfs cannot back the mapped page.
_METRICS_FILE_BYTES = 1 << 20


def main() -> int:
    try:
        _metrics_directory()
        settings = Settings.from_env()
        registry = Registry.load(settings)
    except (BundleError, SettingsError) as error:
        return _cannot_start(str(error))
    except OSError as error:   # e.g. a models directory that cannot be listed
        return _cannot_start(f"{error.filename}: {error.strerror}")
    models = ", ".join(f"{s.bundle.name} {s.bundle.manifest['version']}" for s in registry.all())
    print(f"cnn-lens: models from {settings.models_dir} are ready: {models} "
          f"(default {settings.default_model})")
    return 0


def _metrics_directory() -> None:
    """PROMETHEUS_MULTIPROC_DIR, if set, exists (made here, before the loads below write their
    metrics into it) and can take a file of the size the workers write."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as probe:
            probe.write(bytes(_METRICS_FILE_BYTES))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise SettingsError(f"PROMETHEUS_MULTIPROC_DIR={directory}: cannot write the workers' "
                            f"metrics there ({error.strerror})") from None


def _cannot_start(reason: str) -> int:
    print(f"cnn-lens cannot start: {reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
