"""The container engine the tests drive: podman and podman-compose, running the project's own
Dockerfile, compose file and Kubernetes manifests unchanged (deploy/podman/setup-host.sh makes them
work on a machine with no Docker engine and no image registry).

Where no engine can run (a laptop without podman), the tests skip and say why; where CI is set,
that is a failure: .ci/run sets the engine up first."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What setup-host.sh imports, standing in for python:3.11-slim-bookworm where no registry is.
LOCAL_BASE_IMAGE = "localhost/cnn-lens-base:bookworm"
API_IMAGE = "localhost/cnn-lens:dev"


def require_engine() -> None:
    reason = _why_no_engine()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: .ci/run runs deploy/podman/setup-host.sh, so this "
                    "is a failure)")
    pytest.skip(f"{reason}: no container engine here (deploy/podman/setup-host.sh sets one up)")


def _why_no_engine() -> str | None:
    for tool in ("podman", "podman-compose"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    info = subprocess.run(["podman", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        return f"podman cannot run: {info.stderr.strip()[-300:]}"
    return None


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n"
                             f"{done.stderr[-2000:]}")
    return done


def build_env(**extra: str) -> dict[str, str]:
    """The environment compose builds and runs with: the local base image where setup-host.sh made
    one (else the Dockerfile's default, from a registry), and the docker image format, whose
    HEALTHCHECK the OCI format would drop."""
    env = dict(os.environ, BUILDAH_FORMAT="docker", **extra)
    local = podman("image", "exists", LOCAL_BASE_IMAGE, check=False).returncode == 0
    if "PYTHON_IMAGE" not in env and local:
        env["PYTHON_IMAGE"] = LOCAL_BASE_IMAGE
    return env


class Compose:
    """`podman-compose -p PROJECT ...` on the repository's docker-compose.yml."""

    def __init__(self, project: str, env: dict[str, str]):
        self.project, self.env = project, env

    @property
    def base(self) -> str:
        """The api's URL on the host: compose publishes it on CNNLENS_PORT (default 8000)."""
        return f"http://127.0.0.1:{self.env.get('CNNLENS_PORT', '8000')}"

    def __call__(self, *args: str, timeout: float = 900, check: bool = True,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman-compose", "-p", self.project, *args], cwd=ROOT,
                              env=self.env | (env or {}), capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)}: exit {done.returncode}\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def containers(self, service: str | None = None, every: bool = True) -> list[str]:
        labels = [f"label=com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"label=com.docker.compose.service={service}")
        args = ["ps", "--format", "{{.Names}}"] + (["--all"] if every else [])
        for label in labels:
            args += ["--filter", label]
        return podman(*args).stdout.split()

    def volumes(self) -> list[str]:
        names = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
        return [name for name in names if name.startswith(f"{self.project}_")]


def added_bytes(image: str, base: str) -> int:
    """The size of the layers `image` adds on top of `base` (podman history: newest first)."""
    layers = json.loads(podman("history", "--format", "json", image).stdout)
    below = json.loads(podman("history", "--format", "json", base).stdout)
    def same(entries):
        return [(entry["CreatedBy"], entry["size"]) for entry in entries]
    assert same(layers[-len(below):]) == same(below), f"{image} is not built on {base}"
    return sum(layer["size"] for layer in layers[:-len(below)])


def inspect(container: str) -> dict:
    return json.loads(podman("inspect", container).stdout)[0]


def wait_ready(base: str, seconds: float = 120) -> dict:
    """/readyz's answer once it is 200; fails with the last error after `seconds`."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as reply:
                return json.load(reply)
        except OSError as error:
            last = error
        time.sleep(0.5)
    raise AssertionError(f"{base}/readyz not ready after {seconds} s: {last!r}")


@contextmanager
def wheelhouse(directory: Path):
    """A directory of wheels served over HTTP to builds, as pip's --find-links page. Builds reach
    the host as host.containers.internal (podman's name; Docker's is host.docker.internal)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://host.containers.internal:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
