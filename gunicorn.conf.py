"""gunicorn's configuration: `gunicorn -c gunicorn.conf.py` is how cnn-lens is served, locally, in
CI and in a container. Every value comes from service.settings (CNNLENS_* environment variables),
where the defaults and bounds are documented."""
import os
import signal
import subprocess
import sys
import threading

from service.settings import Settings

_settings = Settings.from_env()

wsgi_app = "service.wsgi:app"
bind = _settings.bind
workers = _settings.workers   # default 2: one per core of the 2-core reference machine
threads = _settings.threads   # gthread worker; see Settings for why 4
timeout = _settings.timeout
# No preload_app: workers forked from a process that has imported onnxruntime abort or hang when
# they exit, so the master never imports it (it reads only service.settings) and every worker
# loads the bundle itself.
accesslog = "-"
# gunicorn's runtime control socket sits at one fixed path per user, so two servers on one machine
# (a developer's and the test suite's) would fight over it; nothing here uses it.
control_socket_disable = True


def on_starting(server):
    """Check the bundle before any worker starts, so that a bad one stops gunicorn with one line.
    (Workers that all fail to boot make gunicorn 27 exit through a traceback, racing to halt.)"""
    check = subprocess.run([sys.executable, "-m", "service.check"], capture_output=True, text=True)
    if check.returncode:
        sys.exit(check.stderr.strip().splitlines()[-1] if check.stderr.strip()
                 else f"cnn-lens cannot start: service.check exited with {check.returncode}")
    server.log.info(check.stdout.strip())


def when_ready(server):
    """SIGHUP reloads the models inside every worker instead of gunicorn's default (replace the
    workers): a replaced worker could not keep serving a model whose new bundle is broken."""
    def forward_hup():
        server.log.info("SIGHUP: every worker reloads its models")
        for pid in list(server.WORKERS):
            os.kill(pid, signal.SIGHUP)

    server.handle_hup = forward_hup


def post_worker_init(worker):
    """In each worker: SIGHUP reloads the registry (in a thread: a signal handler must return
    quickly, and requests go on meanwhile); an admin reload tells the master, which tells all."""
    from service.served import EXTENSION   # in the worker: the master never imports onnxruntime

    registry = worker.wsgi.extensions[EXTENSION]
    signal.signal(signal.SIGHUP,
                  lambda *_: threading.Thread(target=registry.reload, daemon=True).start())
    registry.notify_peers = lambda: os.kill(worker.ppid, signal.SIGHUP)
