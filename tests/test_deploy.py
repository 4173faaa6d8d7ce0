"""The deployment files: compose against the Compose spec, Kubernetes rendered by kustomize and schema-checked."""

from __future__ import annotations

import json
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

ROOT = Path(__file__).parent.parent
SERVICES = ("generation", "similarity", "regions", "captioning")


class ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's ``!reset`` tag (an override that removes a key)."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)


def compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)
    return loaded


def compose_schema() -> dict[str, Any]:
    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.cpu.yml"])
def test_compose_files_follow_the_compose_spec(name: str) -> None:
    document = {key: value for key, value in compose(name).items() if not key.startswith("x-")}
    jsonschema.validate(document, compose_schema())


def test_compose_stack_is_healthy_before_it_serves() -> None:
    stack = compose("docker-compose.yml")["services"]
    assert stack["redis"]["command"][-2:] == ["--appendonly", "yes"]
    for name in SERVICES:
        service = stack[name]
        assert "readyz" in " ".join(service["healthcheck"]["test"])
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
        assert stack["gateway"]["depends_on"][name]["condition"] == "service_healthy"
    assert stack["worker"]["command"][:3] == ["celery", "-A", "workers.celery_app"]
    cpu = compose("docker-compose.cpu.yml")["services"]
    assert all(
        cpu[name]["deploy"] is None and cpu[name]["environment"]["SPOTDIFF_PROFILE"] == "tiny" for name in SERVICES
    )


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    output = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [document for document in yaml.safe_load_all(output) if document]


@pytest.mark.parametrize("overlay", ["cpu-demo", "gpu"])
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
            scaled[target] = {trigger["metadata"]["listName"] for trigger in obj["spec"]["triggers"]}
            continue
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    # the workers scale on every queue they consume; each model service on some step queues, together all
    assert scaled["worker"] == set(WORKER_QUEUES)
    service_queues = [scaled[name] for name in SERVICES]
    assert all(service_queues) and set().union(*service_queues) == set(STEP_QUEUES)


@pytest.mark.parametrize("overlay", ["cpu-demo", "gpu"])
def test_services_are_probed_on_the_kits_endpoints(overlay: str) -> None:
    deployments = {obj["metadata"]["name"]: obj for obj in render(overlay) if obj["kind"] == "Deployment"}
    for name in SERVICES:
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        probes = {
            kind: container[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        assert probes == {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        assert gpus == (1 if overlay == "gpu" else None)
    worker = deployments["worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] >= 1800  # above the longest pair
