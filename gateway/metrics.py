"""The pipeline's own metrics, read from Redis when Prometheus scrapes the gateway.

The workers count into Redis hashes (outcomes, step time, queue wait) and Celery keeps one Redis list per step;
nothing needs to run between scrapes to keep these numbers: each scrape reads them in one pipelined round trip.
Every gateway replica exports the same values, so the dashboard aggregates them with ``max``, not ``sum``.

If Redis does not answer, the scrape still succeeds with ``spotdiff_redis_up 0`` and none of the Redis families,
so the gateway's own request metrics keep flowing while Redis is away.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from spotdiff.jobs import stats
from spotdiff.jobs.queues import WORKER_QUEUES
from spotdiff.pipeline.graph import STEPS
from spotdiff.protocol import SampleStatus

log = logging.getLogger("spotdiff.gateway.metrics")


REJECTED = "rejected"
UNREJECTED = frozenset({SampleStatus.ACCEPTED.value, SampleStatus.SURPLUS.value})  # outcomes with no stage

# A scrape must not hang on a Redis that is gone: Prometheus would time the whole target out.
REDIS_TIMEOUT_S = 2.0


def _number(value: object) -> float | None:
    """A hash value as a float; None for anything that is not a number (skipped, never failing a scrape)."""
    try:
        return float(str(value))
    except ValueError:
        return None


def _outcome_labels(field: str) -> tuple[str, str, str]:
    """``accepted`` or ``<stage>:<reason>`` as (outcome, stage, reason)."""
    if field in UNREJECTED:
        return field, "", ""
    stage, _, reason = field.partition(":")
    return REJECTED, stage, reason


class PipelineStatsCollector(Collector):
    """Queue depth, queue wait, step time and pair outcomes of every job, from Redis at scrape time."""

    def __init__(self, client: redis.Redis, queues: Iterable[str] = WORKER_QUEUES) -> None:
        self.redis: Any = client  # decode_responses=True: str in, str out (redis-py's stubs say bytes | str)
        self.queues = tuple(queues)
        self.steps = tuple(step.value for step in STEPS)

    @classmethod
    def from_url(cls, redis_url: str) -> PipelineStatsCollector:
        """A collector on its own connection pool, with short timeouts so that a scrape fails fast."""
        client = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
        )
        return cls(client)

    def describe(self) -> Iterator[Metric]:
        """The families without samples: lets the registry refuse a name another collector already uses."""
        yield from self._families()
        yield self._redis_up()

    def collect(self) -> Iterator[Metric]:
        try:
            depths, hashes = self._read()
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreachable: %s: %s", type(exc).__name__, exc)
            up = self._redis_up()
            up.add_metric([], 0)
            yield up
            return
        queue_depth, queue_wait, step_seconds, pairs_finished = self._families()
        for queue, depth in zip(self.queues, depths, strict=True):
            queue_depth.add_metric([queue], depth)
        self._add_summaries(queue_wait, hashes[stats.QUEUE_WAIT_SECONDS], hashes[stats.QUEUE_WAITS])
        self._add_summaries(step_seconds, hashes[stats.STEP_SECONDS], hashes[stats.STEP_RUNS])
        for field, value in sorted(hashes[stats.OUTCOMES].items()):
            count = _number(value)
            if count is not None:
                pairs_finished.add_metric(list(_outcome_labels(field)), count)
        yield from (queue_depth, queue_wait, step_seconds, pairs_finished)
        up = self._redis_up()
        up.add_metric([], 1)
        yield up

    def _read(self) -> tuple[list[int], dict[str, Mapping[str, str]]]:
        """Every queue's length and every stats hash, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in self.queues:
            pipe.llen(queue)
        for key in stats.HASHES:
            pipe.hgetall(key)
        answers = pipe.execute()
        depths = [int(depth) for depth in answers[: len(self.queues)]]
        hashes = dict(zip(stats.HASHES, answers[len(self.queues) :], strict=True))
        return depths, hashes

    def _add_summaries(self, family: SummaryMetricFamily, sums: Mapping[str, str], counts: Mapping[str, str]) -> None:
        """One ``_sum``/``_count`` pair per step: every known step (0 until counted) plus any the hashes name."""
        for step in dict.fromkeys([*self.steps, *sorted({*sums, *counts})]):
            total = _number(sums.get(step, 0))
            count = _number(counts.get(step, 0))
            if total is not None and count is not None:
                family.add_metric([step], count_value=int(count), sum_value=total)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, SummaryMetricFamily, SummaryMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily(
                "spotdiff_queue_depth", "tasks waiting in a pipeline step's queue, not yet taken", labels=["queue"]
            ),
            SummaryMetricFamily(
                "spotdiff_queue_wait_seconds",
                "time tasks of a step waited in its queue before a worker took them",
                labels=["step"],
            ),
            SummaryMetricFamily("spotdiff_step_seconds", "time spent running a pipeline step", labels=["step"]),
            CounterMetricFamily(
                "spotdiff_pairs_finished",
                "pairs finished, accepted or rejected by a stage for a reason (the stage is empty when accepted)",
                labels=["outcome", "stage", "reason"],
            ),
        )

    @staticmethod
    def _redis_up() -> GaugeMetricFamily:
        return GaugeMetricFamily("spotdiff_redis_up", "1 when this scrape could read Redis, else 0")
