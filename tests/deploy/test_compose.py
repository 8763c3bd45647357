"""docker-compose.yml: valid against the Compose Specification schema, and consistent with the
Dockerfile, the service's settings and routes, and what docs/deployment.md says."""
from __future__ import annotations

import copy
import json
import re
import runpy

import jsonschema
import pytest

from tests.deploy.conftest import check_settings_env
from tests.deploy.files import ROOT, parse_copy, stage_env, stage_workdir
from tests.deploy.test_healthcheck import compose_argv, healthcheck_url
from tests.serve_command import GUNICORN_ARGV

SCHEMA = json.loads((ROOT / "tests" / "deploy" / "compose_spec.json").read_text())


def validate(document: dict) -> list[str]:
    validator = jsonschema.Draft201909Validator(
        SCHEMA, format_checker=jsonschema.Draft201909Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(document)]


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def memory_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)b?", str(value).lower()).groups()
    return int(number) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[unit]


def volume_mounts(service: dict) -> dict[str, dict]:
    """target -> long-syntax mount (short syntax is turned into the long one)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            volume = {"type": "volume", "source": source, "target": target,
                      "read_only": mode == ["ro"]}
        mounts[volume["target"]] = volume
    return mounts


def tmpfs_targets(service: dict) -> list[str]:
    tmpfs = service.get("tmpfs", [])
    return [entry.split(":")[0] for entry in ([tmpfs] if isinstance(tmpfs, str) else tmpfs)]


# --- schema ----------------------------------------------------------------------------------

def test_compose_file_is_valid_against_the_compose_specification(compose):
    assert validate(compose) == []


@pytest.mark.parametrize("break_it", [
    lambda c: c["services"]["api"].update(helthcheck=c["services"]["api"]["healthcheck"]),
    lambda c: c["services"]["api"].update(read_only="yes please"),
    lambda c: c["services"]["api"]["deploy"]["resources"]["limits"].update(gpus=1),
    lambda c: c["services"]["trainer"].update(profiles="train"),
    lambda c: c["services"]["api"]["depends_on"]["models-init"].update(condition="done"),
    lambda c: c.update(volume={}),
])
def test_the_schema_check_catches_mistakes(compose, break_it):
    broken = copy.deepcopy(compose)
    break_it(broken)
    assert validate(broken)


# --- services --------------------------------------------------------------------------------

def test_services_and_profiles(compose):
    services = compose["services"]
    assert set(services) == {"api", "models-init", "trainer"}
    assert services["trainer"]["profiles"] == ["train"]
    assert "profiles" not in services["api"] and "profiles" not in services["models-init"]


def test_build_targets_are_stages_of_the_dockerfile(compose, dockerfile):
    stages = {stage.name for stage in dockerfile.stages}
    assert compose["services"]["api"]["build"]["target"] == "api"
    assert compose["services"]["models-init"]["build"]["target"] == "api"
    assert compose["services"]["trainer"]["build"]["target"] == "trainer"
    for service in compose["services"].values():
        assert service["build"]["target"] in stages
        assert service["build"]["context"] == "."
    assert compose["services"]["models-init"]["image"] == compose["services"]["api"]["image"]


def test_no_image_is_tagged_latest(compose):
    for name, service in compose["services"].items():
        repository, _, tag = service["image"].rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: image {service['image']}"


def test_api_uses_the_image_command(compose):
    # no command/entrypoint override: the container runs the Dockerfile's CMD, GUNICORN_ARGV
    api = compose["services"]["api"]
    assert api.get("command", GUNICORN_ARGV) == GUNICORN_ARGV
    assert "entrypoint" not in api


def test_api_port_is_the_bind_port(compose, dockerfile):
    api = compose["services"]["api"]
    bind_port = api["environment"]["CNNLENS_BIND"].rpartition(":")[2]
    assert api["environment"]["CNNLENS_BIND"].startswith("0.0.0.0:")
    assert [str(p).rpartition(":")[2] for p in api["ports"]] == [bind_port]
    exposed = dockerfile.stage("api").all("EXPOSE")[-1].args.split("/")[0]
    assert bind_port == exposed


def test_api_environment_is_valid_settings(compose):
    env = compose["services"]["api"]["environment"]
    assert isinstance(env, dict)
    check_settings_env(env, "docker-compose.yml api")


def test_api_workers_match_the_cpu_limit(compose):
    api = compose["services"]["api"]
    # one CPU-bound worker (onnxruntime on one thread) per CPU of the limit
    assert api["environment"]["CNNLENS_ORT_THREADS"] == "1"
    assert float(api["deploy"]["resources"]["limits"]["cpus"]) == \
        int(api["environment"]["CNNLENS_WORKERS"])


def test_api_is_locked_down(compose, dockerfile):
    api = compose["services"]["api"]
    assert api["read_only"] is True
    assert api["user"] == dockerfile.stage("api").all("USER")[-1].args
    assert "/tmp" in tmpfs_targets(api)         # gunicorn's heartbeat files, tempfile
    assert "no-new-privileges:true" in api["security_opt"]
    assert api["cap_drop"] == ["ALL"]


def test_metrics_directory_is_a_tmpfs(compose):
    api = compose["services"]["api"]
    directory = api["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert directory in tmpfs_targets(api)      # writable despite read_only, empty on every start


def test_models_volume_is_shared_read_only_by_api_and_writable_by_trainer(compose):
    services = compose["services"]
    api_mount = volume_mounts(services["api"])["/models"]
    assert api_mount["type"] == "volume" and api_mount["read_only"] is True
    assert services["api"]["environment"]["CNNLENS_MODELS_DIR"] == api_mount["target"]
    for writer in ("trainer", "models-init"):
        mount = volume_mounts(services[writer])["/models"]
        assert mount["source"] == api_mount["source"], writer
        assert not mount.get("read_only", False), writer
    assert api_mount["source"] in compose["volumes"]


def test_healthcheck_probes_the_readiness_route_on_the_bind_port(compose, route):
    api = compose["services"]["api"]
    url = healthcheck_url(compose_argv(compose))
    assert route(url.path) == "health.readyz"
    assert url.hostname in ("127.0.0.1", "localhost")
    assert str(url.port) == api["environment"]["CNNLENS_BIND"].rpartition(":")[2]
    check = api["healthcheck"]
    assert seconds(check["timeout"]) <= seconds(check["interval"])
    assert check["retries"] >= 1 and seconds(check["start_period"]) > 0


def test_restart_policy_and_resource_limits(compose):
    api = compose["services"]["api"]
    assert api["restart"] in ("always", "unless-stopped")
    limits = api["deploy"]["resources"]["limits"]
    reservations = api["deploy"]["resources"]["reservations"]
    assert float(limits["cpus"]) >= float(reservations["cpus"]) > 0
    assert memory_bytes(limits["memory"]) >= memory_bytes(reservations["memory"]) > 0
    trainer = compose["services"]["trainer"]["deploy"]["resources"]["limits"]
    assert float(trainer["cpus"]) > 0 and memory_bytes(trainer["memory"]) > 0


def test_stop_grace_outlasts_gunicorns_graceful_shutdown(compose):
    api = compose["services"]["api"]
    assert api["stop_signal"] == "SIGTERM"
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    import gunicorn.config
    graceful = config.get("graceful_timeout", gunicorn.config.Config().graceful_timeout)
    assert seconds(api["stop_grace_period"]) > graceful


def test_api_waits_for_the_models_volume_to_be_seeded(compose):
    services = compose["services"]
    for name in ("api", "trainer"):
        assert services[name]["depends_on"]["models-init"]["condition"] == \
            "service_completed_successfully"
    assert services["models-init"]["restart"] == "no"
    assert services["models-init"]["healthcheck"] == {"disable": True}


def test_models_init_copies_the_baked_bundles_into_the_volume(compose, dockerfile):
    init = compose["services"]["models-init"]
    python, script, source, target = init["command"]
    assert python == "python" and (ROOT / script).is_file()
    # `script` is relative to the image's WORKDIR, `source` under it: where the Dockerfile put them
    workdir = stage_workdir(dockerfile, "api")
    copies = {parse_copy(c.args).destination for c in dockerfile.stage("api").all("COPY")}
    assert script in copies
    assert any(f"{workdir}/{d}".startswith(source + "/") for d in copies if d.startswith("models/"))
    assert target in volume_mounts(init)
    assert init["user"] == compose["services"]["api"]["user"]


def test_trainer_runs_the_training_cli_as_the_same_user(compose, dockerfile):
    trainer = dockerfile.stage("trainer")
    from tests.deploy.files import exec_form
    assert exec_form(trainer.all("ENTRYPOINT")[-1].args) == ["python", "-m", "training"]
    assert compose["services"]["trainer"]["user"] == compose["services"]["api"]["user"] == \
        trainer.all("USER")[-1].args
    assert "entrypoint" not in compose["services"]["trainer"]


def test_image_defaults_are_not_what_compose_serves(compose, dockerfile):
    # The image alone serves its baked-in bundles; compose points it at the shared volume.
    image_models = stage_env(dockerfile, "api")["CNNLENS_MODELS_DIR"]
    assert image_models.startswith(stage_workdir(dockerfile, "api") + "/")
    assert compose["services"]["api"]["environment"]["CNNLENS_MODELS_DIR"] != image_models


def test_every_service_drops_privileges_and_only_the_trainer_writes_its_root(compose):
    """The trainer writes checkpoints into the image's runs/; the others write only to tmpfs and
    the models volume."""
    for name, service in compose["services"].items():
        assert service["user"] == compose["services"]["api"]["user"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["cap_drop"] == ["ALL"] and "cap_add" not in service, name
        assert not service.get("privileged", False), name
        assert service.get("read_only", False) is (name != "trainer"), name
    api = compose["services"]["api"]
    assert api["environment"]["PROMETHEUS_MULTIPROC_DIR"] in tmpfs_targets(api)
