"""deploy/kubernetes/ and deploy/kserve/: the YAML parses, the kinds are there, and ports,
probes, labels, names, resources and security agree with each other and with the service."""
from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.conftest import KSERVE, KUBERNETES, check_settings_env
from tests.deploy.files import ROOT, parse_copy, stage_workdir, yaml_documents

KINDS = {"Deployment": "apps/v1", "Service": "v1",
         "HorizontalPodAutoscaler": "autoscaling/v2", "PodDisruptionBudget": "policy/v1"}


def cpu(value) -> float:
    value = str(value)
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def memory(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", value).groups()
    return int(number) * {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[unit]


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def port_number(container: dict, port) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    assert port in named, f"no container port named {port!r}"
    return named[port]


@pytest.fixture(scope="module")
def pod(kube) -> dict:
    return kube["Deployment"]["spec"]["template"]


@pytest.fixture(scope="module")
def api(pod) -> dict:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_every_file_parses_and_has_the_expected_kinds(kube):
    assert set(kube) == set(KINDS)
    for kind, api_version in KINDS.items():
        assert kube[kind]["apiVersion"] == api_version
        assert kube[kind]["metadata"]["name"] == "cnn-lens"


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_selectors_match_the_pod_labels(kube, pod):
    labels = pod["metadata"]["labels"]
    deployment_selector = kube["Deployment"]["spec"]["selector"]["matchLabels"]
    assert deployment_selector.items() <= labels.items()
    assert kube["Service"]["spec"]["selector"].items() <= labels.items()
    assert kube["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_container_port_is_the_bind_port_and_the_service_target(kube, api):
    port = port_number(api, "http")
    assert env_of(api)["CNNLENS_BIND"] == f"0.0.0.0:{port}"
    (service_port,) = kube["Service"]["spec"]["ports"]
    assert service_port["port"] == 80
    assert port_number(api, service_port["targetPort"]) == port


def test_probes_hit_the_health_routes_on_the_container_port(api, route):
    port = port_number(api, "http")
    expected = {"readinessProbe": "health.readyz", "livenessProbe": "health.healthz",
                "startupProbe": "health.healthz"}
    for probe, endpoint in expected.items():
        get = api[probe]["httpGet"]
        assert route(get["path"]) == endpoint, f"{probe} {get['path']}"
        assert port_number(api, get["port"]) == port, probe


def test_prometheus_scrapes_the_metrics_route_on_the_container_port(pod, api, route):
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port_number(api, "http")
    path = annotations["prometheus.io/path"]
    assert route(path) is not None, path


def test_environment_is_valid_settings(api):
    check_settings_env(env_of(api), "deployment.yaml")


def test_hpa_scales_the_deployment_on_cpu(kube, pod):
    hpa = kube["HorizontalPodAutoscaler"]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == \
        ("apps/v1", "Deployment", kube["Deployment"]["metadata"]["name"])
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
    # utilisation is measured against requests: every container must request CPU
    for container in pod["spec"]["containers"]:
        assert cpu(container["resources"]["requests"]["cpu"]) > 0
    assert kube["PodDisruptionBudget"]["spec"]["minAvailable"] < hpa["minReplicas"]


def test_resources_are_requested_and_limited(pod, api):
    for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        requests, limits = container["resources"]["requests"], container["resources"]["limits"]
        assert 0 < cpu(requests["cpu"]) <= cpu(limits["cpu"]), container["name"]
        assert 0 < memory(requests["memory"]) <= memory(limits["memory"]), container["name"]
    env = env_of(api)
    assert env["CNNLENS_ORT_THREADS"] == "1"
    assert int(env["CNNLENS_WORKERS"]) <= cpu(api["resources"]["limits"]["cpu"])


def test_pods_run_unprivileged_with_a_read_only_root(pod, dockerfile):
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    uid, gid = map(int, dockerfile.stage("api").all("USER")[-1].args.split(":"))
    assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
    assert pod["spec"]["automountServiceAccountToken"] is False
    for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]


def test_writable_paths_are_volumes(pod, api):
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in api["volumeMounts"]}
    for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes, mount
    assert "/tmp" in mounts and not mounts["/tmp"].get("readOnly", False)
    metrics = env_of(api)["PROMETHEUS_MULTIPROC_DIR"]
    assert metrics in mounts and not mounts[metrics].get("readOnly", False)
    assert volumes[mounts[metrics]["name"]]["emptyDir"]["medium"] == "Memory"


def test_models_come_from_the_init_container_read_only(pod, api, dockerfile):
    (init,) = pod["spec"]["initContainers"]
    assert init["image"] == api["image"]
    models_dir = env_of(api)["CNNLENS_MODELS_DIR"]
    api_mounts = {m["mountPath"]: m for m in api["volumeMounts"]}
    init_mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    assert api_mounts[models_dir]["readOnly"] is True
    python, script, source, target = init["command"]
    assert python == "python" and (ROOT / script).is_file()
    assert target == models_dir
    assert init_mounts[target]["name"] == api_mounts[models_dir]["name"]
    assert not init_mounts[target].get("readOnly", False)
    workdir = stage_workdir(dockerfile, "api")
    copies = [parse_copy(c.args).destination for c in dockerfile.stage("api").all("COPY")]
    assert any(f"{workdir}/{d}".startswith(source + "/") for d in copies), "nothing baked there"


def test_no_command_override_and_no_latest_tag(pod, api):
    assert "command" not in api and "args" not in api   # the image's CMD: GUNICORN_ARGV
    for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        repository, _, tag = container["image"].rpartition(":")
        assert repository and tag not in ("", "latest"), container["image"]


def test_termination_grace_outlasts_prestop_and_gunicorns_graceful_shutdown(pod, api):
    import runpy

    import gunicorn.config
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    graceful = config.get("graceful_timeout", gunicorn.config.Config().graceful_timeout)
    pre_stop = api["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["spec"]["terminationGracePeriodSeconds"] > graceful + int(pre_stop[1])


def test_rolling_update_never_drops_below_the_replica_count(kube):
    strategy = kube["Deployment"]["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1


# --- KServe ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inference_service() -> dict:
    (document,) = yaml_documents(KSERVE)
    return document


def test_kserve_custom_predictor(inference_service, route, dockerfile):
    assert inference_service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert inference_service["kind"] == "InferenceService"
    predictor = inference_service["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    (port,) = container["ports"]
    assert env_of(container)["CNNLENS_BIND"] == f"0.0.0.0:{port['containerPort']}"
    check_settings_env(env_of(container), "inferenceservice.yaml")
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == port["containerPort"]
        assert get["path"].startswith("/v2/health/")
        assert route(get["path"]) is not None, get["path"]
    assert predictor["securityContext"]["runAsNonRoot"] is True
    uid = int(dockerfile.stage("api").all("USER")[-1].args.split(":")[0])
    assert predictor["securityContext"]["runAsUser"] == uid
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts and env_of(container)["PROMETHEUS_MULTIPROC_DIR"] in mounts
    assert int(inference_service["metadata"]["annotations"]["prometheus.io/port"]) == \
        port["containerPort"]


def test_pods_get_the_default_seccomp_profile_and_no_host_access(pod):
    spec = pod["spec"]
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key, False), key
    for container in spec["containers"] + spec["initContainers"]:
        assert not container["securityContext"].get("privileged", False), container["name"]
        assert "add" not in container["securityContext"]["capabilities"], container["name"]


def test_the_kserve_predictor_drops_privileges_too(inference_service):
    (container,) = inference_service["spec"]["predictor"]["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert not context.get("privileged", False)
