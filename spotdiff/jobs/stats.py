"""Totals over every job, in Redis hashes the workers count into and the gateway's metrics read at scrape time
(`gateway/metrics.py`): pair outcomes, step run time, queue wait."""

from __future__ import annotations

from typing import Any

from spotdiff.protocol import SampleRecord, Stage

OUTCOMES = "spotdiff:stats:outcomes"  # outcome (`SampleRecord.outcome`) -> pairs
STEP_SECONDS = "spotdiff:stats:step_seconds"  # step -> seconds run
STEP_RUNS = "spotdiff:stats:step_runs"  # step -> runs
QUEUE_WAIT_SECONDS = "spotdiff:stats:queue_wait_seconds"  # step -> seconds its tasks waited in their queue
QUEUE_WAITS = "spotdiff:stats:queue_waits"  # step -> tasks that waited
HASHES = (OUTCOMES, STEP_SECONDS, STEP_RUNS, QUEUE_WAIT_SECONDS, QUEUE_WAITS)


class PipelineStats:
    def __init__(self, client: Any) -> None:
        self.redis = client

    def count_outcome(self, pipe: Any, record: SampleRecord) -> None:
        """Count a finished pair's outcome, on the caller's pipeline (it counts the job's funnel too)."""
        pipe.hincrby(OUTCOMES, record.outcome, 1)

    def step_ran(self, step: Stage, seconds: float) -> None:
        self._add(STEP_SECONDS, STEP_RUNS, step, seconds)

    def queue_waited(self, step: Stage, seconds: float) -> None:
        self._add(QUEUE_WAIT_SECONDS, QUEUE_WAITS, step, seconds)

    def _add(self, seconds_key: str, count_key: str, step: Stage, seconds: float) -> None:
        pipe = self.redis.pipeline()
        pipe.hincrbyfloat(seconds_key, step.value, seconds)
        pipe.hincrby(count_key, step.value, 1)
        pipe.execute()
