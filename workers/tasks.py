"""The step task: one step of one caption pair, idempotently by (job, pair, step).

A task starts from the pair's state after the previous step (read from the store), runs its step through
the shared `PairPipeline`, and writes what came out (the next state, or the pair's record when it ends here)
before it enqueues the next step and returns, and so before it is acknowledged. A redelivered task finds
that output and only passes it on. Services that stay unavailable are retried with exponential backoff and
jitter; when the retries run out the pair's record says so.

Each worker process keeps one event loop and one set of HTTP clients for its whole life: connections to the
services are reused across tasks, and the models' ids are asked for once a minute, not once a task.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import redis

from spotdiff.clients import ServiceCallError, ServiceClients
from spotdiff.logs import log_context
from spotdiff.pipeline import STEPS, PairFailed, PairPipeline, PairRun, next_step
from spotdiff.protocol import CaptionPair, ModelRef, Rejection, SampleRecord, Stage
from spotdiff.protocol.jobs import JobManifest
from spotdiff.settings import PipelineSettings, Settings
from spotdiff.storage import ArtifactStore
from workers.celery_app import STEP_TASK, app, send_step
from workers.jobstore import JobStore

log = logging.getLogger("spotdiff.worker")
# Redis or the store out of reach is not the pair's fault: the task is tried again later
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
MODELS_TTL_S = 60.0
MANIFESTS_KEPT = 32


class WorkerProcess:
    """What one worker process keeps between tasks (made lazily: Celery forks its pool after import)."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.store = JobStore.from_url(self.settings.redis_url, self.settings.storage_url)
        self.loop = asyncio.new_event_loop()
        token = self.settings.worker.service_token
        self.clients = ServiceClients.over_http(
            self.settings.worker.service_urls, token=token.get_secret_value() if token else None
        )
        self._models: dict[str, ModelRef] = {}
        self._manifests: dict[str, JobManifest] = {}
        self._models_at = 0.0

    def manifest(self, job_id: str) -> JobManifest | None:
        """A job's manifest, read once per process: it never changes after the job is created, and a job of a
        thousand pairs would otherwise be parsed again by each of its six thousand step tasks."""
        if job_id not in self._manifests:
            manifest = self.store.manifest(job_id)
            if manifest is None:
                return None
            if len(self._manifests) >= MANIFESTS_KEPT:
                self._manifests.pop(next(iter(self._manifests)))  # the oldest job first
            self._manifests[job_id] = manifest
        return self._manifests[job_id]

    def job_settings(self, overrides: dict[str, Any]) -> Settings:
        """The worker's settings with this job's pipeline overrides applied (validated)."""
        pipeline = PipelineSettings.model_validate({**self.settings.pipeline.model_dump(), **overrides})
        return self.settings.model_copy(update={"pipeline": pipeline})

    async def models(self, store: ArtifactStore, config: Settings) -> dict[str, ModelRef]:
        """The services' model ids, asked for at most once a minute; a failed refresh keeps the last answer."""
        if not self._models or time.monotonic() - self._models_at > MODELS_TTL_S:
            try:
                self._models = (await PairPipeline.connect(self.clients, store, config)).models
                self._models_at = time.monotonic()
            except ServiceCallError:
                if not self._models:
                    raise
                log.warning("a service did not say which model it serves; keeping the last answer")
        return self._models

    async def step(self, job_id: str, run: PairRun, step: Stage, config: Settings) -> SampleRecord | None:
        store = self.store.artifacts(job_id)
        try:
            models = await self.models(store, config)
        except ServiceCallError as exc:  # a service is down: like any transient failure of the step
            failure = Rejection(stage=step, reason="service_unavailable", message=str(exc))
            raise PairFailed(self.failure_record(job_id, run, failure, config), exc) from exc
        return await PairPipeline(self.clients, store, config, models).step(run, step)

    def failure_record(self, job_id: str, run: PairRun, failure: Rejection, config: Settings) -> SampleRecord:
        return PairPipeline(self.clients, self.store.artifacts(job_id), config, self._models).record(run, failure)


_process: WorkerProcess | None = None


def worker_process() -> WorkerProcess:
    global _process
    if _process is None:
        _process = WorkerProcess()
    return _process


@app.task(
    name=STEP_TASK,
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=10,
)
def run_step(self: Any, job_id: str, pair_json: str, step_name: str, enqueued_at: float | None = None) -> str:
    """Run ``step_name`` of one pair; enqueue the next step, or keep the pair's record when it ends here."""
    pair = CaptionPair.model_validate_json(pair_json)
    with log_context(job_id=job_id, pair_id=pair.id, step=step_name):
        outcome = _run_step(self, job_id, pair, pair_json, Stage(step_name), enqueued_at)
        log.info("step %s: %s", step_name, outcome)
        return outcome


def _run_step(self: Any, job_id: str, pair: CaptionPair, pair_json: str, step: Stage, enqueued_at: float | None) -> str:
    worker = worker_process()
    store = worker.store
    if store.has_record(job_id, pair.id):  # redelivered after the record was written
        store.count(job_id, store.record(job_id, pair.id))
        for planned in store.plan_next_round(job_id):
            send_step(app, job_id, planned.model_dump_json(), STEPS[0])
        return "already done"
    manifest = worker.manifest(job_id)
    if manifest is None or store.is_stopped(job_id):
        return "stopped"
    if enqueued_at is not None:
        store.queue_waited(step, max(0.0, time.time() - enqueued_at))
    following = next_step(step)
    if following is not None and store.has_step(job_id, pair.id, step):
        send_step(app, job_id, pair_json, following)  # redelivered after its state was written: pass it on
        return "already done"
    previous = STEPS[STEPS.index(step) - 1] if step is not STEPS[0] else None
    if previous is not None and not store.has_step(job_id, pair.id, previous):
        resume = store.resume_step(job_id, pair.id)  # its input is gone (a store restored from a backup)
        store.entered(job_id, {pair.id: resume})
        send_step(app, job_id, pair_json, resume)
        return f"resumed at {resume.value}"
    run = store.load_step(job_id, pair.id, previous) if previous is not None else PairRun(pair=pair)
    config = worker.job_settings(manifest.request.settings)
    started = time.perf_counter()
    try:
        record = worker.loop.run_until_complete(worker.step(job_id, run, step, config))
        store.step_ran(step, time.perf_counter() - started)
    except PairFailed as failed:
        retries = self.request.retries
        if retries < config.worker.max_retries:
            delay = config.worker.retry_backoff_s * 2**retries * (1 + random.random() / 2)
            log.warning("%s; retry %d in %.1fs", failed, retries + 1, delay)
            raise self.retry(countdown=delay, max_retries=config.worker.max_retries) from failed
        record = failed.record
    except TRANSIENT:
        raise  # autoretry
    except Exception as exc:  # a bug of ours: the pair ends with it on record rather than vanish with the task
        log.exception("step %s failed", step.value)
        failure = Rejection(stage=step, reason="internal_error", message=f"{type(exc).__name__}: {exc}")
        record = worker.failure_record(job_id, run, failure, config)
    if record is not None:
        store.finish_pair(job_id, record)
        for planned in store.plan_next_round(job_id):  # this was the last pair of a round short of its target
            send_step(app, job_id, planned.model_dump_json(), STEPS[0])
        return record.status.value
    assert following is not None
    store.save_step(job_id, run, step)
    store.entered(job_id, {pair.id: following})
    send_step(app, job_id, pair_json, following)
    return f"next: {following.value}"
