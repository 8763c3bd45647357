"""deploy/kubernetes/deployment.yaml, run by `podman kube play`: the pod template's initContainer,
probes, environment, security context and volumes, checked on a running pod over HTTP.

Two changes to a copy of the Deployment, both about podman 4.3 and not about the manifest: one
replica (podman publishes containerPort 8000 on the host, so a second pod cannot bind it), and
restartPolicy OnFailure (podman 4.3 gives the initContainer the pod's Always, so the seeding
container restarts in a loop instead of finishing). What this does and does not prove is in
docs/deployment.md."""
from __future__ import annotations

import socket
import urllib.request

import pytest
import yaml

from tests.containers.engine import (API_IMAGE, ROOT, build_env, inspect, podman, require_engine,
                                     wait_ready)

MANIFEST = ROOT / "deploy" / "kubernetes" / "deployment.yaml"
DEPLOYMENT = yaml.safe_load(MANIFEST.read_text())
POD_SPEC = DEPLOYMENT["spec"]["template"]["spec"]
(API_SPEC,) = POD_SPEC["containers"]


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def pod(tmp_path_factory):
    """The Deployment's pod, running; its IP on podman's network (the host reaches it there)."""
    require_engine()
    if not _port_is_free(8000):
        pytest.fail("podman kube play publishes containerPort 8000 on the host, which is taken")
    env = build_env()
    build_args = [f"--build-arg=PYTHON_IMAGE={env['PYTHON_IMAGE']}"] if "PYTHON_IMAGE" in env else []
    podman("build", "--format=docker", "--target=api", f"--tag={API_IMAGE}", *build_args, str(ROOT),
           timeout=900)
    deployment = yaml.safe_load(MANIFEST.read_text())
    deployment["spec"]["replicas"] = 1
    deployment["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    played = tmp_path_factory.mktemp("kube") / "deployment.yaml"
    played.write_text(yaml.safe_dump(deployment))
    name = f"{DEPLOYMENT['metadata']['name']}-pod-0"
    try:
        podman("kube", "play", str(played), timeout=300)
        infra = podman("pod", "inspect", name, "--format", "{{.InfraContainerID}}").stdout.strip()
        (network,) = inspect(infra)["NetworkSettings"]["Networks"].values()
        base = f"http://{network['IPAddress']}:{API_SPEC['ports'][0]['containerPort']}"
        wait_ready(base)
        yield {"name": name, "api": f"{name}-{API_SPEC['name']}", "base": base}
    finally:
        podman("kube", "down", str(played), check=False)
        podman("pod", "rm", "--force", name, check=False)


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.status, reply.read()


def test_every_probe_answers_on_the_port_it_names(pod):
    """podman 4.3 runs none of the probes (it turns liveness into a curl healthcheck the image
    cannot run, and ignores readiness and startup), so each is requested as the kubelet would."""
    ports = {port["name"]: port["containerPort"] for port in API_SPEC["ports"]}
    probes = [API_SPEC[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")]
    host = pod["base"].rsplit(":", 1)[0]
    for probe in probes:
        port = ports.get(probe["httpGet"]["port"], probe["httpGet"]["port"])
        assert _get(f"{host}:{port}{probe['httpGet']['path']}")[0] == 200


def test_the_init_container_seeded_the_models_volume(pod):
    status, body = _get(f"{pod['base']}/models")
    assert status == 200 and b'"mnist-cnn"' in body
    (init,) = POD_SPEC["initContainers"]
    seeded = podman("ps", "--all", "--filter", f"name={pod['name']}-{init['name']}",
                    "--format", "{{.Names}}").stdout.split()
    assert seeded == [], "the initContainer should have run once and been removed"


def test_the_environment_is_the_manifests(pod):
    env = dict(line.split("=", 1) for line in podman("exec", pod["api"], "env").stdout.splitlines()
               if "=" in line)
    expected = {item["name"]: item["value"] for item in API_SPEC["env"]}
    assert {name: env.get(name) for name in expected} == expected


def test_the_security_context_holds(pod):
    api = pod["api"]
    context = POD_SPEC["securityContext"]
    assert podman("exec", api, "id", "-u").stdout.strip() == str(context["runAsUser"])
    assert podman("exec", api, "id", "-g").stdout.strip() == str(context["runAsGroup"])
    assert inspect(api)["HostConfig"]["ReadonlyRootfs"] is True
    status = podman("exec", api, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert int(fields["CapEff"], 16) == 0            # capabilities: drop ALL
    assert fields["NoNewPrivs"].strip() == "1"       # allowPrivilegeEscalation: false
    for path, writable in [("/app/written", False), ("/models/written", False),
                           ("/tmp/written", True), ("/tmp/metrics/written", True)]:
        done = podman("exec", api, "touch", path, check=False)
        assert (done.returncode == 0) == writable, (path, done.stderr)


def test_the_pod_predicts(pod):
    request = urllib.request.Request(f"{pod['base']}/predict",
                                     data=(ROOT / "examples" / "mnist-7.png").read_bytes(),
                                     headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert b'"label":"7"' in reply.read().replace(b" ", b"")
