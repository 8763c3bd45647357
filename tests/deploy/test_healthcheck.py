"""The health check command of the image and of compose, run for real: slim images have no curl,
so it is a python -c one-liner, and it must exit 0 only when /readyz answers 200."""
from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
import urllib.parse

import pytest

from tests.deploy.files import exec_form


def healthcheck_url(argv: list[str]) -> urllib.parse.ParseResult:
    assert argv[:2] == ["python", "-c"], argv
    urls = re.findall(r"https?://[^'\"]+", argv[2])
    assert len(urls) == 1, argv
    return urllib.parse.urlparse(urls[0])


def compose_argv(compose) -> list[str]:
    test = compose["services"]["api"]["healthcheck"]["test"]
    assert test[0] == "CMD", test     # exec form: no shell in between
    return test[1:]


def dockerfile_argv(dockerfile) -> list[str]:
    check = dockerfile.stage("api").all("HEALTHCHECK")[-1].args
    return exec_form(check[check.index("CMD") + 3 :].strip())


class _Server(http.server.ThreadingHTTPServer):
    status = 200
    paths: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.paths.append(self.path)
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_service():
    server = _Server(("127.0.0.1", 0), _Handler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run(argv: list[str], port: int) -> subprocess.CompletedProcess:
    """The health check's python -c code, pointed at `port` instead of the container's, run by a
    bare interpreter (-I: no site-packages, no environment), as the slim image would."""
    url = healthcheck_url(argv)
    code = argv[2].replace(url.netloc, f"127.0.0.1:{port}")
    return subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, timeout=30)


@pytest.mark.parametrize("source", ["compose", "dockerfile"])
def test_healthcheck_passes_on_200_and_fails_otherwise(source, compose, dockerfile, fake_service):
    argv = compose_argv(compose) if source == "compose" else dockerfile_argv(dockerfile)
    port = fake_service.server_address[1]
    assert run(argv, port).returncode == 0
    assert fake_service.paths == [healthcheck_url(argv).path]
    fake_service.status = 503     # e.g. not ready
    assert run(argv, port).returncode != 0
    fake_service.status = 500
    assert run(argv, port).returncode != 0


@pytest.mark.parametrize("source", ["compose", "dockerfile"])
def test_healthcheck_fails_when_nothing_listens(source, compose, dockerfile, fake_service):
    argv = compose_argv(compose) if source == "compose" else dockerfile_argv(dockerfile)
    port = fake_service.server_address[1]
    fake_service.shutdown()
    fake_service.server_close()
    assert run(argv, port).returncode != 0


def test_compose_and_image_check_the_same_way(compose, dockerfile):
    assert compose_argv(compose) == dockerfile_argv(dockerfile)
