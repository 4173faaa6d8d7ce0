"""Prometheus metrics of one service, on a registry of its own.

Each app owns its registry so that the four services can share one process (the embedded run) without
their series colliding; a service process exposes exactly its own series on `/metrics`.

Every family is named ``spotdiff_<what>_<base unit>`` and labelled by ``service``. The micro-batcher's
families are ``spotdiff_batch_*``: the bare ``spotdiff_queue_*`` names belong to the pipeline's step queues,
which the gateway exports from Redis (`gateway/metrics.py`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """Requests, latency, queue depth, queue wait, batch size and inference time, labelled by service."""

    def __init__(self, service: str, *, gpu_memory: bool = False) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "spotdiff_requests_total",
            "HTTP requests answered",
            ["service", "route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "spotdiff_request_latency_seconds",
            "HTTP request latency",
            ["service", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "spotdiff_batch_queue_depth", "requests waiting for a batch", ["service", "op"], registry=self.registry
        )
        self.queue_wait = Histogram(
            "spotdiff_batch_queue_wait_seconds",
            "time from enqueue to the start of its batch",
            ["service", "op"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "spotdiff_batch_size",
            "items per model batch",
            ["service", "op"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "spotdiff_inference_seconds",
            "model time per batch",
            ["service", "op"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "spotdiff_rejected_total",
            "requests refused because the queue was full",
            ["service", "op"],
            registry=self.registry,
        )
        self.ready = Gauge("spotdiff_ready", "1 once the model is loaded and warm", ["service"], registry=self.registry)
        if gpu_memory:
            self.registry.register(GpuMemoryCollector(service))


GPU_MEMORY = "spotdiff_gpu_memory_bytes"


class GpuMemoryCollector(Collector):
    """CUDA memory held by this process, per visible device, read when Prometheus scrapes.

    torch is never imported here (the kit stays light for the gateway): a process that loaded a model has
    it in ``sys.modules`` already; one that has not, or has no CUDA, declares the family with no samples.
    CUDA is not initialised by a scrape either: before a model touched a device its counters read 0.
    """

    def __init__(self, service: str) -> None:
        self.service = service

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        cuda = self._cuda()
        if cuda is not None and cuda.is_available():
            for index in range(cuda.device_count()):
                device = f"cuda:{index}"
                family.add_metric([self.service, device, "allocated"], cuda.memory_allocated(index))
                family.add_metric([self.service, device, "reserved"], cuda.memory_reserved(index))
        yield family

    @staticmethod
    def _cuda() -> Any:
        """``torch.cuda`` if this process imported torch, else None."""
        return getattr(sys.modules.get("torch"), "cuda", None)

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            GPU_MEMORY,
            "CUDA memory of this process: allocated by tensors, reserved by the caching allocator",
            labels=["service", "device", "kind"],
        )
