"""The WSGI entry point for gunicorn: `service.wsgi:app`, built from environment variables.

A bad bundle or setting ends the process with one line naming the problem instead of a traceback.
At start-up, with exit status 3, gunicorn's "worker failed to boot", which makes the master stop
instead of restarting workers that would fail the same way. A worker that replaces one that died
(kill -9, out of memory) while a bundle on disk is broken must not stop a server whose other
workers still serve the version they loaded: it waits, exits with 1, and gunicorn retries it.
"""
from __future__ import annotations

import logging
import os
import sys
import time

from lens.bundle import BundleError
from service import create_app
from service.runtime.worker import REPLACEMENT
from service.settings import SettingsError

_WORKER_BOOT_ERROR = 3
_REPLACEMENT_RETRY_SECONDS = 5   # between attempts of a replacement worker to load the bundles

# Errors the service logs (e.g. the stack trace behind a 500) go where gunicorn's own go.
_gunicorn_log = logging.getLogger("gunicorn.error")
logging.getLogger("service").handlers = _gunicorn_log.handlers
logging.getLogger("service").setLevel(logging.INFO)

try:
    app = create_app()
except (BundleError, SettingsError) as error:
    if os.environ.get(REPLACEMENT):
        _gunicorn_log.error("replacement worker cannot load the models (%s); the other workers "
                            "serve on; retrying in %d s", error, _REPLACEMENT_RETRY_SECONDS)
        time.sleep(_REPLACEMENT_RETRY_SECONDS)
        sys.exit(1)
    print(f"cnn-lens cannot start: {error}", file=sys.stderr, flush=True)
    sys.exit(_WORKER_BOOT_ERROR)
