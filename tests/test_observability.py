"""Metrics, dashboard and scrape config agree: the pipeline's metrics the gateway reads from Redis, the names every
dashboard query uses (each one exported by a real `/metrics`), and the annotations Prometheus discovers pods by."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from PIL import Image
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from httpkit.metrics import GpuMemoryCollector
from spotdiff.clients import ServiceClients
from spotdiff.jobs.queues import WORKER_QUEUES
from spotdiff.jobs.store import JobStore
from spotdiff.protocol import Stage
from spotdiff.protocol.captioning import CaptionRequest
from spotdiff.protocol.generation import PairRequest
from spotdiff.protocol.similarity import CosineRequest, Operand, ScorePair
from spotdiff.settings import Settings

ROOT = Path(__file__).parent.parent
MONITORING = ROOT / "k8s" / "monitoring"
REDIS_URL = "redis://127.0.0.1:6379/10"  # this module's database; other tests use others
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/10"


@pytest.fixture
def redis_db10() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


async def scrape_gateway(redis_url: str, storage: Path) -> httpx.Response:
    app = create_app(Settings(redis_url=redis_url, storage_url=str(storage)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        return await client.get("/metrics")


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(family: Metric) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Each sample as (sample name, sorted labels) -> value."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value for sample in family.samples}


async def test_gateway_exports_the_pipeline_stats_from_redis(redis_db10: redis.Redis, tmp_path: Path) -> None:
    redis_db10.rpush("spotdiff.generate", "t1", "t2", "t3")
    redis_db10.rpush("spotdiff.proposals", "t4")
    redis_db10.hset(
        "spotdiff:stats:outcomes",
        mapping={
            "accepted": "5",
            "pair_filter:pair_too_similar": "2",
            "difference_areas:no_difference_area": "1",
            "region_labels:broken": "not a number",  # skipped, never failing the scrape
        },
    )
    redis_db10.hset("spotdiff:stats:step_seconds", mapping={"generate": "12.5", "pair_filter": "0.25"})
    redis_db10.hset("spotdiff:stats:step_runs", mapping={"generate": "5", "pair_filter": "5"})
    redis_db10.hset("spotdiff:stats:queue_wait_seconds", mapping={"generate": "3.0"})
    redis_db10.hset("spotdiff:stats:queue_waits", mapping={"generate": "5"})

    response = await scrape_gateway(REDIS_URL, tmp_path)
    assert response.status_code == 200
    found = families(response.text)

    depth = found["spotdiff_queue_depth"]
    assert depth.type == "gauge"
    assert {sample.labels["queue"]: sample.value for sample in depth.samples} == {
        queue: {"spotdiff.generate": 3.0, "spotdiff.proposals": 1.0}.get(queue, 0.0) for queue in WORKER_QUEUES
    }

    wait = found["spotdiff_queue_wait_seconds"]
    assert wait.type == "summary"
    assert values(wait)[("spotdiff_queue_wait_seconds_sum", (("step", "generate"),))] == 3.0
    assert values(wait)[("spotdiff_queue_wait_seconds_count", (("step", "generate"),))] == 5.0
    assert values(wait)[("spotdiff_queue_wait_seconds_count", (("step", "difference_caption"),))] == 0.0

    step = found["spotdiff_step_seconds"]
    assert step.type == "summary"
    assert values(step)[("spotdiff_step_seconds_sum", (("step", "generate"),))] == 12.5
    assert values(step)[("spotdiff_step_seconds_count", (("step", "pair_filter"),))] == 5.0

    finished = found["spotdiff_pairs_finished"]
    assert finished.type == "counter"
    assert values(finished) == {
        ("spotdiff_pairs_finished_total", (("outcome", "accepted"), ("reason", ""), ("stage", ""))): 5.0,
        (
            "spotdiff_pairs_finished_total",
            (("outcome", "rejected"), ("reason", "pair_too_similar"), ("stage", "pair_filter")),
        ): 2.0,
        (
            "spotdiff_pairs_finished_total",
            (("outcome", "rejected"), ("reason", "no_difference_area"), ("stage", "difference_areas")),
        ): 1.0,
    }
    assert values(found["spotdiff_redis_up"]) == {("spotdiff_redis_up", ()): 1.0}


async def test_what_the_workers_count_is_what_the_gateway_exports(redis_db10: redis.Redis, tmp_path: Path) -> None:
    store = JobStore.from_url(REDIS_URL, str(tmp_path))
    store.stats.step_ran(Stage.GENERATE, 2.5)
    store.stats.step_ran(Stage.GENERATE, 1.5)
    store.stats.queue_waited(Stage.PROPOSALS, 0.75)
    found = families((await scrape_gateway(REDIS_URL, tmp_path)).text)
    step = values(found["spotdiff_step_seconds"])
    assert step[("spotdiff_step_seconds_sum", (("step", "generate"),))] == 4.0
    assert step[("spotdiff_step_seconds_count", (("step", "generate"),))] == 2.0
    wait = values(found["spotdiff_queue_wait_seconds"])
    assert wait[("spotdiff_queue_wait_seconds_sum", (("step", "proposals"),))] == 0.75
    assert wait[("spotdiff_queue_wait_seconds_count", (("step", "proposals"),))] == 1.0


async def test_empty_redis_gives_zero_queues_and_no_outcomes(redis_db10: redis.Redis, tmp_path: Path) -> None:
    found = families((await scrape_gateway(REDIS_URL, tmp_path)).text)
    assert all(sample.value == 0 for sample in found["spotdiff_queue_depth"].samples)
    assert len(found["spotdiff_queue_depth"].samples) == len(WORKER_QUEUES)
    assert found["spotdiff_pairs_finished"].samples == []
    assert values(found["spotdiff_redis_up"]) == {("spotdiff_redis_up", ()): 1.0}


async def test_scrape_answers_without_redis(tmp_path: Path) -> None:
    response = await scrape_gateway(UNREACHABLE_REDIS_URL, tmp_path)
    assert response.status_code == 200
    found = families(response.text)
    assert values(found["spotdiff_redis_up"]) == {("spotdiff_redis_up", ()): 0.0}
    for name in ("spotdiff_queue_depth", "spotdiff_queue_wait_seconds", "spotdiff_step_seconds"):
        assert name not in found
    assert "spotdiff_pairs_finished" not in found
    assert "spotdiff_requests" in found  # the gateway's own metrics are still there


class FakeCuda:
    """Two devices, with known memory figures."""

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 2

    def memory_allocated(self, index: int) -> int:
        return 1000 * (index + 1)

    def memory_reserved(self, index: int) -> int:
        return 4000 * (index + 1)


def test_gpu_memory_is_sampled_per_device_and_kind() -> None:
    class OnTwoGpus(GpuMemoryCollector):
        @staticmethod
        def _cuda() -> Any:
            return FakeCuda()

    class WithoutTorch(GpuMemoryCollector):
        @staticmethod
        def _cuda() -> Any:
            return None

    registry = CollectorRegistry()
    registry.register(OnTwoGpus("generation"))
    gpu = families(generate_latest(registry).decode())["spotdiff_gpu_memory_bytes"]
    assert gpu.type == "gauge"
    assert {(s.labels["device"], s.labels["kind"]): s.value for s in gpu.samples} == {
        ("cuda:0", "allocated"): 1000,
        ("cuda:0", "reserved"): 4000,
        ("cuda:1", "allocated"): 2000,
        ("cuda:1", "reserved"): 8000,
    }
    assert {s.labels["service"] for s in gpu.samples} == {"generation"}

    registry = CollectorRegistry()
    registry.register(WithoutTorch("similarity"))
    text = generate_latest(registry).decode()
    assert "# TYPE spotdiff_gpu_memory_bytes gauge" in text
    assert families(text)["spotdiff_gpu_memory_bytes"].samples == []


# The dashboard


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return dashboard


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_has_what_grafana_needs() -> None:
    dashboard = load_dashboard()
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat", "barchart"}
        assert panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("x", "y", "w", "h"))
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"]
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
    titles = " | ".join(panel["title"].lower() for panel in panels)
    for topic in ("queue depth", "queue wait", "step latency", "p95", "requests per second", "batch size"):
        assert topic in titles
    for topic in ("outcome", "funnel", "gpu memory"):
        assert topic in titles


# What Prometheus appends to a family's name in its samples, by type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}


def exported_family(name: str, exported: dict[str, str]) -> str | None:
    """The family a sample name in a query belongs to, if some `/metrics` exports it."""
    if name in exported and exported[name] not in SUFFIXES:
        return name
    for kind, suffixes in SUFFIXES.items():
        for suffix in suffixes:
            base = name.removesuffix(suffix)
            if base != name and exported.get(base) == kind:
                return base
    return None


async def one_request_each(clients: ServiceClients) -> None:
    """So that the services' labelled families (per route, per op) have samples."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    await clients.generation.pair(
        PairRequest(source="a dog", target="a cat", seed=1, height=64, width=64, num_inference_steps=2)
    )
    await clients.similarity.cosine(CosineRequest(pairs=[ScorePair(a=Operand(text="a dog"), b=Operand(text="a cat"))]))
    await clients.regions.proposals(image)
    await clients.captioning.caption(CaptionRequest(image=image, prompt="What is this?", max_new_tokens=2))


async def test_every_dashboard_metric_is_exported(
    clients: ServiceClients, redis_db10: redis.Redis, tmp_path: Path
) -> None:
    await one_request_each(clients)
    texts = [(await scrape_gateway(REDIS_URL, tmp_path)).text]
    for service in (clients.generation, clients.similarity, clients.regions, clients.captioning):
        answer = await service.http.get("/metrics")
        assert answer.status_code == 200
        texts.append(answer.text)
    exported: dict[str, str] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            assert exported.setdefault(family.name, family.type) == family.type, f"{family.name}: two types"
    used = {name for expr in exprs(load_dashboard()) for name in re.findall(r"spotdiff_[a-z0-9_]+", expr)}
    assert used
    missing = sorted(name for name in used if exported_family(name, exported) is None)
    assert not missing, f"the dashboard queries metrics no /metrics exports: {missing}"
    # the families the services promise, with samples once a request went through
    service_text = texts[1]
    for name in ("spotdiff_requests", "spotdiff_request_latency_seconds", "spotdiff_batch_size"):
        assert families(service_text)[name].samples, name
    assert exported["spotdiff_gpu_memory_bytes"] == "gauge"


# The scrape config and the annotations it discovers pods by


def meta_label(annotation: str) -> str:
    """The label Prometheus's pod discovery gives a pod annotation."""
    return "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", annotation)


def pod_templates() -> dict[str, dict[str, Any]]:
    """Every Deployment's pod template in k8s/base, by Deployment name."""
    templates = {}
    for path in (ROOT / "k8s" / "base").glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "Deployment":
                templates[document["metadata"]["name"]] = document["spec"]["template"]
    return templates


def test_scrape_config_discovers_the_annotated_pods() -> None:
    config_map = yaml.safe_load((MONITORING / "prometheus-scrape.yaml").read_text())
    assert config_map["kind"] == "ConfigMap"
    prometheus = yaml.safe_load(config_map["data"]["prometheus.yml"])
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod" and discovery["namespaces"]["names"] == ["spotdiff"]
    relabels = job["relabel_configs"]
    keep = [rule for rule in relabels if rule.get("action") == "keep"]
    assert keep == [{"source_labels": [meta_label("prometheus.io/scrape")], "regex": "true", "action": "keep"}]
    (address,) = [rule for rule in relabels if rule.get("target_label") == "__address__"]
    assert meta_label("prometheus.io/port") in address["source_labels"]

    templates = pod_templates()
    for name in ("gateway", "generation", "similarity", "regions", "captioning"):
        annotations = templates[name]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        ports = {port["containerPort"] for port in templates[name]["spec"]["containers"][0]["ports"]}
        assert int(annotations["prometheus.io/port"]) in ports
    used = {meta_label(key) for template in templates.values() for key in template["metadata"].get("annotations", {})}
    named = {label for rule in relabels for label in rule.get("source_labels", [])}
    assert used <= named


def test_dashboard_and_scrape_config_are_deployed() -> None:
    base = yaml.safe_load((ROOT / "k8s" / "base" / "kustomization.yaml").read_text())
    assert "../monitoring" in base["resources"]
    monitoring = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert "prometheus-scrape.yaml" in monitoring["resources"]
    (dashboard,) = monitoring["configMapGenerator"]
    assert any(entry.endswith("grafana-dashboard.json") for entry in dashboard["files"])
    assert dashboard["options"]["labels"] == {"grafana_dashboard": "1"}
