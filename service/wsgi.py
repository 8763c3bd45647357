"""The WSGI entry point for gunicorn: `service.wsgi:app`, built from environment variables.

A bad bundle or setting ends the process with one line naming the problem instead of a traceback,
and with exit status 3, gunicorn's "worker failed to boot", which makes the master stop instead of
restarting workers that would fail the same way.
"""
from __future__ import annotations

import logging
import sys

from lens.bundle import BundleError
from service import create_app
from service.settings import SettingsError

_WORKER_BOOT_ERROR = 3

# Errors the service logs (e.g. the stack trace behind a 500) go where gunicorn's own go.
_gunicorn_log = logging.getLogger("gunicorn.error")
logging.getLogger("service").handlers = _gunicorn_log.handlers
logging.getLogger("service").setLevel(logging.INFO)

try:
    app = create_app()
except (BundleError, SettingsError) as error:
    print(f"cnn-lens cannot start: {error}", file=sys.stderr, flush=True)
    sys.exit(_WORKER_BOOT_ERROR)
