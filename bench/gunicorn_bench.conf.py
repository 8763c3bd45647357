"""gunicorn settings for the comparison apps (lean server, HTTP ceiling, naive torch baseline): the
same workers, threads and timeout as gunicorn.conf.py, from the same service.settings. Their
worker is gunicorn's own gthread: cnn-lens's (service/runtime/worker.py) is gthread plus slow-client
handling, connections spread evenly over the workers, and model reloads, which need cnn-lens's
app; its cost per request is a non-blocking read of what has arrived."""
import os

from service.settings import Settings

_settings = Settings.from_env()

wsgi_app = os.environ["BENCH_WSGI_APP"]   # bench.lean_app:app, bench.ceiling_app:app or bench.naive_app:app
bind = _settings.bind
workers = _settings.workers
threads = _settings.threads
timeout = _settings.timeout
accesslog = None
control_socket_disable = True
