"""Fixtures for the static checks of the deployment files; see tests/deploy/README.md."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from werkzeug.exceptions import MethodNotAllowed, NotFound

from service.settings import Settings, env_name
from tests.deploy.files import ROOT, read_dockerfile, yaml_documents


KUBERNETES = ROOT / "deploy" / "kubernetes"
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"


@pytest.fixture(scope="session")
def dockerfile():
    return read_dockerfile(ROOT / "Dockerfile")


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def kube() -> dict[str, dict]:
    """Every Kubernetes object of deploy/kubernetes/ (kustomization.yaml aside), by kind."""
    objects: dict[str, dict] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml_documents(path):
            assert document["kind"] not in objects, f"{path}: a second {document['kind']}"
            objects[document["kind"]] = document
    return objects


@pytest.fixture(scope="session")
def app():
    """The real Flask app with its default settings (the committed bundle), built from the
    repository root as gunicorn is."""
    from service import create_app
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        return create_app(Settings.from_env({}))
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def route(app):
    """route(path) -> the endpoint a GET of `path` reaches, None if no route matches."""
    adapter = app.url_map.bind("localhost")

    def endpoint(path: str) -> str | None:
        try:
            return adapter.match(path, method="GET")[0]
        except (NotFound, MethodNotAllowed):
            return None
    return endpoint


def known_settings() -> set[str]:
    return {env_name(name) for name in Settings.__dataclass_fields__}


def check_settings_env(env: dict[str, str], where: str) -> None:
    """Every CNNLENS_* variable is a setting of service/settings.py, and the values pass Settings'
    own bounds."""
    names = {key for key in env if key.startswith("CNNLENS_")}
    unknown = names - known_settings()
    assert not unknown, f"{where}: {sorted(unknown)} are not settings of service/settings.py"
    Settings.from_env({key: str(value) for key, value in env.items()
                       if key in known_settings() and value is not None})
