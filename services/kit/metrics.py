"""Prometheus metrics of one service, on a registry of its own.

Each app owns its registry so that the four services can share one process (the embedded run) without
their series colliding; a service process exposes exactly its own series on `/metrics`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """Requests, latency, queue depth, queue wait, batch size and inference time, labelled by service."""

    def __init__(self, service: str) -> None:
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
            "spotdiff_queue_depth", "requests waiting for a batch", ["service", "op"], registry=self.registry
        )
        self.queue_wait = Histogram(
            "spotdiff_queue_wait_seconds",
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
