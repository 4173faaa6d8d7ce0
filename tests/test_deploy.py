"""The deployment files: compose against the Compose spec, Kubernetes rendered by kustomize and schema-checked."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import check_jsonschema
import jsonschema
import kubernetes_validate
import pytest
import yaml

from spotdiff.jobs.queues import STEP_QUEUES, WORKER_QUEUES
from spotdiff.settings import PIPELINE_SERVICES, REWRITING, SERVICE_NAMES

ROOT = Path(__file__).parent.parent
SERVICES = SERVICE_NAMES


COMPOSE_FILES = ["docker-compose.yml", "docker-compose.cpu.yml", "docker-compose.gpu.yml", "docker-compose.one-gpu.yml"]
OVERLAYS = ["cpu-demo", "gpu", "one-gpu"]
# what Compose 1.29 (Debian's) does not know: the files must not use them
COMPOSE_V2_ONLY = re.compile(r"^name:|!reset|!override", re.MULTILINE)
# checkov's checks that this project answers otherwise, and why
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limits, on purpose: a limit throttles a model service mid-batch; requests schedule it",
    "CKV_K8S_15": "IfNotPresent with pinned tags; a registry digest goes in through kustomize images:",
    "CKV_K8S_35": "the gateway's Secret holds sha256 digests of the API keys, never the keys",
    "CKV_K8S_43": "digests are the deployer's: images are built per site (docker/build-images.sh); set in images:",
}
CHECKOV = ROOT / ".cache" / "checkov" / "bin" / "checkov"


def compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def merged_environment(service: str, *names: str) -> dict[str, str]:
    """A service's environment as Compose merges the files named (later ones override, key by key)."""
    env: dict[str, str] = {}
    for name in names:
        env.update({k: str(v) for k, v in compose(name)["services"].get(service, {}).get("environment", {}).items()})
    return env


def compose_schema() -> dict[str, Any]:
    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_follow_the_compose_spec_and_compose_1_29(name: str) -> None:
    document = {key: value for key, value in compose(name).items() if not key.startswith("x-")}
    jsonschema.validate(document, compose_schema())
    assert not COMPOSE_V2_ONLY.search((ROOT / name).read_text()), name


def test_compose_stack_is_healthy_before_it_serves() -> None:
    stack = compose("docker-compose.yml")["services"]
    assert stack["redis"]["command"][-2:] == ["--appendonly", "yes"]
    for name in SERVICES:
        service = stack[name]
        assert "readyz" in " ".join(service["healthcheck"]["test"])
        assert "deploy" not in service  # accelerators come from an override: the base runs anywhere
        assert stack["gateway"]["depends_on"][name]["condition"] == "service_healthy"
    assert stack["worker"]["command"][:3] == ["celery", "-A", "workers.celery_app"]
    assert "$$HOSTNAME" in " ".join(stack["worker"]["healthcheck"]["test"])  # its own node, escaped for Compose
    gpu = compose("docker-compose.gpu.yml")["services"]
    for name in SERVICES:
        [devices] = gpu[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices["count"] == 1 and devices["capabilities"] == ["gpu"]


def test_the_reference_weights_are_where_the_manifest_puts_them() -> None:
    """The Compose file and the ConfigMap point every service at the models volume exactly as the manifest that
    fills it says; the CPU override and overlay empty every one of those settings."""
    from spotdiff.weights import load_manifest, service_environment

    wanted = service_environment(load_manifest("reference"), "/models")
    for service in SERVICES:
        base = merged_environment(service, "docker-compose.yml")
        assert {key: base[key] for key in wanted} == wanted, service
        cpu = merged_environment(service, "docker-compose.yml", "docker-compose.cpu.yml")
        assert all(cpu[key] == "" for key in wanted) and cpu["SPOTDIFF_PROFILE"] == "tiny", service
    for overlay in OVERLAYS:
        maps = {obj["metadata"]["name"]: obj.get("data") or {} for obj in render(overlay) if obj["kind"] == "ConfigMap"}
        assert maps["spotdiff-model-paths"] == ({} if overlay == "cpu-demo" else wanted), overlay
    fetch = compose("docker-compose.yml")["services"]["models-fetch"]
    assert "models fetch --profile reference --out /models --allow-network" in " ".join(fetch["command"])
    assert fetch["volumes"] == ["models:/models"] and fetch["profiles"] == ["fetch"]


def test_the_models_fetch_job_runs_only_where_the_reference_is_served() -> None:
    for overlay in OVERLAYS:
        [job] = [obj for obj in render(overlay) if obj["kind"] == "Job"]
        assert job["spec"]["suspend"] is (overlay == "cpu-demo"), overlay
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert (
            "--allow-network" in " ".join(container["command"]) and "models verify /models" in container["command"][-1]
        )
        assert {"name": "models", "mountPath": "/models"} in container["volumeMounts"]  # writable, for this one


def test_one_gpu_shares_the_card_within_its_memory() -> None:
    """The single-card shapes: every service on one device, each with a memory share, the shares within the card
    and the same in Compose and Kubernetes."""
    compose_shares: dict[str, float] = {}
    one = compose("docker-compose.one-gpu.yml")["services"]
    for service in SERVICES:
        [devices] = one[service]["deploy"]["resources"]["reservations"]["devices"]
        assert devices["device_ids"] == ["0"]
        compose_shares[service] = float(one[service]["environment"][f"SPOTDIFF_{service.upper()}__GPU_MEMORY_FRACTION"])
    kube_shares: dict[str, float] = {}
    specs = pod_specs(render("one-gpu"))
    for service in SERVICES:
        container = specs[service]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        env = {variable["name"]: variable.get("value") for variable in container["env"]}
        kube_shares[service] = float(env[f"SPOTDIFF_{service.upper()}__GPU_MEMORY_FRACTION"])
    assert compose_shares == kube_shares
    assert sum(kube_shares.values()) <= 1.0
    slicing = yaml.safe_load((ROOT / "k8s/overlays/one-gpu/time-slicing.yaml").read_text())
    assert yaml.safe_load(slicing["data"]["any"])["sharing"]["timeSlicing"]["resources"][0]["replicas"] == len(SERVICES)


def test_the_memory_share_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from spotdiff.settings import Settings

    monkeypatch.setenv("SPOTDIFF_REGIONS__GPU_MEMORY_FRACTION", "0.15")
    assert Settings().regions.gpu_memory_fraction == 0.15
    monkeypatch.setenv("SPOTDIFF_REGIONS__GPU_MEMORY_FRACTION", "1.5")
    with pytest.raises(ValueError, match="gpu_memory_fraction"):
        Settings()


def test_the_rendered_overlays_pass_checkov(tmp_path: Path) -> None:
    """The ecosystem's policy checker over every overlay as rendered; the checks skipped are each answered above."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: `make checkov` installs it")
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render(overlay)))
    command = [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "--compact", "--quiet"]
    command += ["--skip-download", "--skip-check", ",".join(CHECKOV_SKIPS), "-o", "json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    summaries = [entry["summary"] for entry in (report if isinstance(report, list) else [report])]
    assert sum(summary["passed"] for summary in summaries) > 1000
    failed = [
        (check["check_id"], check["resource"])
        for entry in (report if isinstance(report, list) else [report])
        for check in entry["results"]["failed_checks"]
    ]
    assert failed == [] and result.returncode == 0


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    output = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [document for document in yaml.safe_load_all(output) if document]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_matches_its_schema(overlay: str) -> None:
    objects = render(overlay)
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "Service", "StatefulSet", "NetworkPolicy", "ScaledObject", "Secret"} <= kinds
    deployments = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Deployment"}
    scaled: dict[str, set[str]] = {}
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            target = obj["spec"]["scaleTargetRef"]["name"]
            assert target in deployments
            scaled[target] = {
                trigger["metadata"]["listName"] if trigger["type"] == "redis" else trigger["metadata"]["query"]
                for trigger in obj["spec"]["triggers"]
            }
            continue
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    # the workers scale on every queue they consume; each pipeline service on some step queues, together all;
    # the rewriting service, called at submission, on its own batch queue
    assert scaled["worker"] == set(WORKER_QUEUES)
    service_queues = [scaled[name] for name in PIPELINE_SERVICES]
    assert all(service_queues) and set().union(*service_queues) == set(STEP_QUEUES)
    assert scaled[REWRITING] == {'sum(spotdiff_batch_queue_depth{service="rewriting"})'}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_are_probed_on_the_kits_endpoints(overlay: str) -> None:
    deployments = {obj["metadata"]["name"]: obj for obj in render(overlay) if obj["kind"] == "Deployment"}
    for name in SERVICES:
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        probes = {
            kind: container[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        assert probes == {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        assert gpus == (None if overlay == "cpu-demo" else 1)
    worker = deployments["worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] >= 1800  # above the longest pair


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        obj["metadata"]["name"]: obj["spec"]["template"]["spec"]
        for obj in objects
        if obj["kind"] in ("Deployment", "StatefulSet", "Job")
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_unprivileged_on_a_read_only_root_with_requests_and_limits(overlay: str) -> None:
    for name, spec in pod_specs(render(overlay)).items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], name
            assert resources["limits"]["memory"], name
        if name != "redis":  # home and caches on a writable emptyDir: the tiny checkpoints are built there
            mounts = {mount["mountPath"] for mount in spec["containers"][0]["volumeMounts"]}
            assert "/tmp" in mounts and any("emptyDir" in volume for volume in spec["volumes"]), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probe_commands_use_only_declared_variables_and_ports_and_paths_exist(overlay: str) -> None:
    objects = render(overlay)
    specs = pod_specs(objects)
    for name, spec in specs.items():
        container = spec["containers"][0]
        declared = {variable["name"] for variable in container.get("env", [])}
        # $(VAR) in a command is expanded only from declared variables; a probe's command not at all
        for part in container.get("command", []):
            assert set(re.findall(r"\$\((\w+)\)", part)) <= declared, (name, part)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            if probe and "exec" in probe:
                words = " ".join(probe["exec"]["command"])
                assert "$(" not in words, (name, kind)
                assert set(re.findall(r"\$(\w+)", words)) <= declared | {"HOSTNAME"}, (name, kind)
            if probe and "httpGet" in probe:
                assert probe["httpGet"]["path"] in ("/healthz", "/readyz"), (name, kind)
    named_ports = {
        (obj["spec"]["selector"].get("app")): {port["name"] for port in obj["spec"]["ports"]}
        for obj in objects
        if obj["kind"] == "Service"
    }
    for app, ports in named_ports.items():
        if app in specs:
            container_ports = {port.get("name") for port in specs[app]["containers"][0].get("ports", [])}
            assert ports <= container_ports, app


def test_the_probe_paths_are_routes_of_the_kit_and_the_gateway() -> None:
    from gateway.app import create_app as gateway_app
    from services.registry import create_app as service_app
    from spotdiff.settings import Settings

    for app in (gateway_app(Settings()), service_app("similarity", Settings())):
        assert {"/healthz", "/readyz"} <= set(app.openapi()["paths"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_network_and_pinned_images(overlay: str) -> None:
    objects = render(overlay)
    deployments = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Deployment"}
    budgets = {obj["spec"]["selector"]["matchLabels"]["app"] for obj in objects if obj["kind"] == "PodDisruptionBudget"}
    assert deployments <= budgets
    images = {container["image"] for spec in pod_specs(objects).values() for container in spec["containers"]}
    assert all(re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+", image) for image in images), images  # no floating tags
    policies = {obj["metadata"]["name"]: obj["spec"] for obj in objects if obj["kind"] == "NetworkPolicy"}
    sources = policies["redis-from-clients"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}} in sources
    egress = policies["model-services-egress-dns-only"]["egress"][0]["ports"]
    assert {"port": 53, "protocol": "UDP"} in egress


def settings_of(objects: list[dict[str, Any]], deployment: str, monkeypatch: pytest.MonkeyPatch, tiny: Path) -> Any:
    """The Settings a container of ``deployment`` would read from its rendered environment."""
    from spotdiff.settings import Settings

    maps = {obj["metadata"]["name"]: obj.get("data", {}) for obj in objects if obj["kind"] == "ConfigMap"}
    container = pod_specs(objects)[deployment]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
    env.update({v["name"]: v["value"] for v in container.get("env", []) if "value" in v})
    for name in [name for name in os.environ if name.startswith("SPOTDIFF_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny))
    return Settings()


def test_the_cpu_overlay_serves_the_tiny_checkpoints_and_the_gpu_one_the_models_volume(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cpu, gpu = render("cpu-demo"), render("gpu")
    for service in SERVICES:
        tiny = settings_of(cpu, service, monkeypatch, tmp_path)
        assert tiny.profile == "tiny" and str(tmp_path) in tiny.service(service).model, service
        reference = settings_of(gpu, service, monkeypatch, tmp_path)
        assert reference.profile == "reference" and str(tmp_path) not in reference.service(service).model
    assert settings_of(gpu, "generation", monkeypatch, tmp_path).generation.model.startswith("/models/")


def test_the_cpu_compose_override_serves_the_tiny_checkpoints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from spotdiff.settings import Settings

    for service in SERVICES:
        env = merged_environment(service, "docker-compose.yml", "docker-compose.cpu.yml")
        for name in [name for name in os.environ if name.startswith("SPOTDIFF_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        settings = Settings()
        assert settings.profile == "tiny" and str(tmp_path) in settings.service(service).model, service
