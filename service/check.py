"""`python -m service.check`: load and warm up the models the settings name, as a worker would,
and say in one line whether it can be served (exit status 0) or what is wrong (1).

gunicorn.conf.py runs it before starting any worker; in a child process, because the gunicorn
master must never import onnxruntime (workers forked after that hang or abort when they exit).
"""
from __future__ import annotations

import sys

from lens.bundle import BundleError
from service.registry import Registry
from service.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
        registry = Registry.load(settings)
    except (BundleError, SettingsError) as error:
        print(f"cnn-lens cannot start: {error}", file=sys.stderr)
        return 1
    models = ", ".join(f"{s.bundle.name} {s.bundle.manifest['version']}" for s in registry.all())
    print(f"cnn-lens: models from {settings.models_dir} are ready: {models} "
          f"(default {settings.default_model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
