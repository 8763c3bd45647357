"""gunicorn's configuration: `gunicorn -c gunicorn.conf.py` is how cnn-lens is served, locally, in
CI and in a container. Every value comes from service.settings (CNNLENS_* environment variables),
where the defaults and bounds are documented."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from service.settings import Settings, SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as error:   # one line naming the variable, not gunicorn's traceback
    sys.exit(f"cnn-lens cannot start: {error}")

wsgi_app = "service.wsgi:app"
bind = _settings.bind
# 2 workers x 4 threads by default, chosen from `python -m bench --parts workers` (2 cores,
# docs/benchmarks.md): /predict at concurrency 64 gave 1,563 req/s with 2x1, 1,782 with 2x2,
# 1,951 with 2x4, 1,673 with 4x1 (3x2: 780, its connections piled on one worker). With one
# thread per worker a dream holds its whole worker: beside a client posting dreams, /predict's
# p99 at concurrency 8 was 1.3 s with 2x1 and 1.2 s with 4x1, against 18-27 ms with 2 or 4
# threads. More workers than cores only add memory (about 100 MB each) and contention.
workers = _settings.workers
threads = _settings.threads
timeout = _settings.timeout
# gthread (threads per worker) with one change: a slow client (slowloris headers, a silent
# connection) waits in the worker's poller instead of holding a thread, and a client slower than
# CNNLENS_CLIENT_TIMEOUT is dropped; plain gthread lets a few of them starve a worker. Chosen over
# an async worker (inference is CPU-bound and needs real threads) and over requiring a reverse
# proxy (the service must hold on its own, as the tests start it). See service/runtime/worker.py.
worker_class = "service.runtime.worker.ThreadWorker"
# No preload_app: workers forked from a process that has imported onnxruntime abort or hang when
# they exit, so the master never imports it (it reads only service.settings) and every worker
# loads the bundle itself.
# No gunicorn access log: every request gets one JSON line on stdout from the app instead
# (service.observability), with its request id, model and duration.
accesslog = None
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
    _metrics_directory(server)


def _metrics_directory(server):
    """prometheus-client's multiprocess mode, so that /metrics adds up every worker: the workers
    write their values as files in PROMETHEUS_MULTIPROC_DIR, which must be empty at start (stale
    files from an earlier run would be added in). A directory set by the environment (a tmpfs in
    the container) is emptied; without one, a fresh temporary one is made and removed on exit.
    Set here, after service.check (whose own loads must not be counted) and before any worker is
    forked, and before prometheus_client is first imported (it picks its mode at import)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for stale in os.listdir(directory):
            if stale.endswith(".db"):
                os.remove(os.path.join(directory, stale))
    else:
        directory = server.cnnlens_metrics_tmp = tempfile.mkdtemp(prefix="cnnlens-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory   # inherited by the workers
    server.log.info("metrics of all workers in %s", directory)


def on_exit(server):
    directory = getattr(server, "cnnlens_metrics_tmp", None)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


def child_exit(server, worker):
    """A dead worker's live gauges (which model versions it served) go with it; its counters and
    histograms stay, so that totals never go down. prometheus_client is safe in the master
    (onnxruntime is not), and imported only here, once PROMETHEUS_MULTIPROC_DIR is set."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def when_ready(server):
    """SIGHUP reloads the models inside every worker instead of gunicorn's default (replace the
    workers): a replaced worker could not keep serving a model whose new bundle is broken."""
    def forward_hup():
        server.log.info("SIGHUP: every worker reloads its models")
        for pid in list(server.WORKERS):
            os.kill(pid, signal.SIGHUP)

    server.handle_hup = forward_hup
