"""gunicorn settings for the comparison apps (HTTP ceiling, naive torch baseline): the same
workers, threads (gthread) and timeout as gunicorn.conf.py, from the same service.settings."""
import os

from service.settings import Settings

_settings = Settings.from_env()

wsgi_app = os.environ["BENCH_WSGI_APP"]   # bench.ceiling_app:app or bench.naive_app:app
bind = _settings.bind
workers = _settings.workers
threads = _settings.threads
timeout = _settings.timeout
accesslog = None
control_socket_disable = True
