"""`python -m service.check`: load and warm up the bundle the settings name, as a worker would,
and say in one line whether it can be served (exit status 0) or what is wrong (1).

gunicorn.conf.py runs it before starting any worker; in a child process, because the gunicorn
master must never import onnxruntime (workers forked after that hang or abort when they exit).
"""
from __future__ import annotations

import sys

from lens.bundle import BundleError
from service.served import Served
from service.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
        served = Served.load(settings)
    except (BundleError, SettingsError) as error:
        print(f"cnn-lens cannot start: {error}", file=sys.stderr)
        return 1
    print(f"cnn-lens: {served.bundle.name} version {served.bundle.manifest['version']} "
          f"from {settings.model_dir} is ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
