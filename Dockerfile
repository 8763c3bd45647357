# syntax=docker/dockerfile:1
# cnn-lens images: one multi-target Dockerfile (docs/deployment.md says why).
#
#   docker build -t cnn-lens:dev .                                    # the serving image (default: last stage)
#   docker build -t cnn-lens-trainer:dev --target trainer .           # the training image
#
# `api` has no torch: its virtualenv is built from requirements/serve.lock alone (every package
# pinned with PyPI's sha256 of its files, `make lock`) and the stage checks that `import torch` is
# impossible. `trainer` installs torch's CPU wheel, so no CUDA build is pulled.
# tests/deploy/ checks this file statically (no Docker engine on the development machines).

# Pinned by tag to Python 3.11 (the project's Python) on Debian bookworm; pin a digest for
# bit-for-bit rebuilds with --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# One unprivileged user, by number, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --gid 10001 cnnlens \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/cnnlens \
            --shell /usr/sbin/nologin cnnlens
WORKDIR /app

# ---------------------------------------------------------------------------------------------
# Builder: the serving dependencies, as wheels installed into a virtualenv that later stages copy.
# --require-hashes: pip refuses any file whose hash is not in the lock, and any package not in it.
FROM base AS serve-deps
RUN python -m venv /opt/venv
COPY requirements/serve.lock requirements/serve.lock
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements/serve.lock

# Builder: the training dependencies on top. torch comes first, the CPU build of exactly the
# version requirements/train.txt pins (read from that file, so the pin lives in one place), from
# TORCH_INDEX_URL (PyTorch's CPU-only index) or, when TORCH_FIND_LINKS is set, from that wheelhouse
# (a directory of wheels, or its listing over HTTP; a plain-http host is trusted, being your own)
# with torch's own dependencies from PyPI. The second install then finds torch==X satisfied by
# X+cpu and takes the rest from PyPI.
FROM serve-deps AS train-deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_FIND_LINKS=
COPY requirements/serve.txt requirements/train.txt requirements/
RUN torch_pin="$(grep -E '^torch==' requirements/train.txt)+cpu" \
 && if [ -z "$TORCH_FIND_LINKS" ]; then source="--index-url $TORCH_INDEX_URL"; \
    else source="--find-links $TORCH_FIND_LINKS"; host="${TORCH_FIND_LINKS#http://}"; \
      if [ "$host" != "$TORCH_FIND_LINKS" ]; then source="$source --trusted-host ${host%%/*}"; fi; fi \
 && /opt/venv/bin/pip install --no-cache-dir $source "$torch_pin" \
 && /opt/venv/bin/pip install --no-cache-dir -r requirements/train.txt \
 && /opt/venv/bin/python -c "import sys, torch; sys.exit(f'torch {torch.__version__} is a CUDA build') if torch.version.cuda else None"

# The serving virtualenv as it ships: without pip and setuptools (nothing is installed at serving
# time) and without the packages' own test suites (numpy's are 15 MB), which nothing imports.
FROM serve-deps AS serve-venv
RUN /opt/venv/bin/pip uninstall --yes --quiet setuptools pip \
 && find /opt/venv -type d -name tests -prune -exec rm -rf {} +

# ---------------------------------------------------------------------------------------------
# The trainer: `docker compose --profile train run --rm trainer build --out /models/NAME`.
FROM base AS trainer
COPY --from=train-deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1
COPY lens lens
COPY training training
COPY validation validation
# runs/: training's default checkpoint directory; /models: the shared models volume (an empty
# directory owned by the user, so that a new named volume mounted there is writable by it).
RUN mkdir -p runs /models \
 && chown 10001:10001 runs /models
USER 10001:10001
ENTRYPOINT ["python", "-m", "training"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------
# The serving image (the default target): no torch, no training code, no compiler.
FROM base AS api
COPY --from=serve-venv /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    CNNLENS_BIND=0.0.0.0:8000 \
    CNNLENS_MODELS_DIR=/app/models
COPY gunicorn.conf.py gunicorn.conf.py
COPY lens lens
COPY service service
# The default bundle, baked in: served as is by `docker run`, and copied into an empty models
# volume by deploy/seed_models.py (compose's models-init service, the Kubernetes initContainer).
COPY models/mnist-cnn models/mnist-cnn
COPY deploy/seed_models.py deploy/seed_models.py
# Byte-compile now: the root filesystem is read-only at run time. Then prove torch is absent.
RUN python -m compileall -q lens service deploy \
 && python -c "import importlib.util, sys; sys.exit('torch is in the serving image') if importlib.util.find_spec('torch') else None" \
 && mkdir /models \
 && chown 10001:10001 /models
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
# gunicorn stops gracefully on SIGTERM (in-flight requests finish within its graceful_timeout).
STOPSIGNAL SIGTERM
# Exactly the command the test suite starts (tests/serve_command.py), exec form: gunicorn is PID 1.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
