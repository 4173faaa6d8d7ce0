"""The step task: one step of one caption pair, idempotently by (job, pair, step).

A task starts from the pair's state after the previous step (read from the store), runs its step through
the shared `PairPipeline`, and writes what came out (the next state, or the pair's record when it ends here)
before it enqueues the next step and returns, and so before it is acknowledged. A redelivered task finds
that output and only passes it on. While it runs the step's model work it holds the pair's lease (renewed by
a heartbeat), so a second delivery of the same step waits instead of running it again; the step must finish
within its deadline
(`spotdiff.jobs.deadlines`), or it is tried again, and after ``max_retries`` the pair's record says why.
Services that stay unavailable are retried with exponential backoff and jitter. Whatever else goes wrong
inside a task, the pair ends with an ``internal_error`` record: no pair is ever dropped silently.

Each worker process keeps one event loop and one set of HTTP clients for its whole life: connections to the
services are reused across tasks, and the models' ids are asked for once a minute, not once a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis
from celery.exceptions import Retry, SoftTimeLimitExceeded

from spotdiff.clients import ServiceCallError, ServiceClients
from spotdiff.jobs.deadlines import max_retry_delay_s, step_limits
from spotdiff.jobs.progress import RANK, PairProgress
from spotdiff.jobs.queues import (
    ROUND_CHUNK,
    ROUND_TASK,
    STEP_TASK,
    send_next_round,
    send_round,
    send_step,
)
from spotdiff.jobs.store import JobStore
from spotdiff.logs import log_context
from spotdiff.pipeline import FIRST_STEP, PairFailed, PairPipeline, PairRun, next_step, pair_record, previous_step
from spotdiff.pipeline.record import service_models
from spotdiff.protocol import CaptionPair, ModelRef, Rejection, SampleRecord, Stage
from spotdiff.protocol.jobs import JobManifest
from spotdiff.settings import PipelineSettings, Settings
from workers.celery_app import app

log = logging.getLogger("spotdiff.worker")
# Redis or the store out of reach is not the pair's fault: the task is tried again later
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
TRANSIENT_RETRIES = 20
MODELS_TTL_S = 60.0
T = TypeVar("T")


class StepTimedOut(Exception):
    """The step ran past its deadline."""


class Heartbeat:
    """Renews the lease of the step this process runs, every third of its length, from a thread of its own: a
    step busy on the CPU still renews it, a process that died (or was killed at its hard time limit) does not."""

    def __init__(self, progress: PairProgress, seconds: float) -> None:
        self.progress = progress
        self.seconds = seconds
        self._held: tuple[str, str] | None = None
        threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True).start()

    def hold(self, job_key: str, pair_id: str) -> None:
        self._held = (job_key, pair_id)

    def drop(self) -> None:
        self._held = None

    def _beat(self) -> None:
        while True:
            time.sleep(self.seconds / 3)
            held = self._held
            if held is not None:
                try:
                    if not self.progress.renew(*held, self.seconds):
                        log.warning("the lease of %s was taken over: the step may run twice", held[1])
                except redis.exceptions.RedisError:
                    pass  # Redis away: the lease may expire, and the step run again (harmlessly)


class WorkerProcess:
    """What one worker process keeps between tasks (made lazily: Celery forks its pool after import)."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.store = JobStore.from_url(self.settings.redis_url, self.settings.storage_url)
        self.loop = asyncio.new_event_loop()
        token = self.settings.worker.service_token
        self.clients = ServiceClients.over_http(
            self.settings.worker.service_urls,
            token=token.get_secret_value() if token else None,
            budgets=self.settings.service_budgets(),
        )
        self._models: dict[str, ModelRef] = {}
        self._models_at = 0.0
        self.heartbeat = Heartbeat(self.store.progress, self.settings.worker.lease_s)

    def hold(self, job_key: str, pair_id: str, step: Stage) -> bool:
        """Take the pair's lease for ``step`` and keep it renewed; False while another live task holds it."""
        if not self.store.progress.acquire(job_key, pair_id, step, self.settings.worker.lease_s):
            return False
        self.heartbeat.hold(job_key, pair_id)
        return True

    def release(self, job_key: str, pair_id: str) -> None:
        self.heartbeat.drop()
        with contextlib.suppress(*TRANSIENT):  # else the lease expires by itself
            self.store.progress.release(job_key, pair_id)

    def job_settings(self, manifest: JobManifest) -> Settings:
        """The worker's settings with this job's pipeline overrides applied (validated)."""
        overrides = manifest.request.settings.overrides()
        pipeline = PipelineSettings.model_validate({**self.settings.pipeline.model_dump(), **overrides})
        return self.settings.model_copy(update={"pipeline": pipeline})

    async def models(self) -> dict[str, ModelRef]:
        """The services' model ids, asked for at most once a minute; a failed refresh keeps the last answer."""
        if not self._models or time.monotonic() - self._models_at > MODELS_TTL_S:
            try:
                self._models = await service_models(self.clients)
                self._models_at = time.monotonic()
            except ServiceCallError:
                if not self._models:
                    raise
                log.warning("a service did not say which model it serves; keeping the last answer")
        return self._models

    async def step(self, job_id: str, run: PairRun, step: Stage, config: Settings) -> SampleRecord | None:
        try:
            models = await self.models()
        except ServiceCallError as exc:  # a service is down: like any transient failure of the step
            failure = Rejection(stage=step, reason="service_unavailable", message=str(exc))
            raise PairFailed(self.failure_record(run, failure, config), exc) from exc
        return await PairPipeline(self.clients, self.store.artifacts(job_id), config, models).step(run, step)

    def failure_record(self, run: PairRun, failure: Rejection, config: Settings) -> SampleRecord:
        return pair_record(run, failure, config, self._models)

    def within(self, work: Coroutine[Any, Any, T], seconds: float) -> T:
        """Run ``work`` on this process's loop for at most ``seconds``. If Celery's soft time limit interrupts
        the loop itself (something blocked it), the step's pending tasks are cancelled before it goes on."""
        try:
            return self.loop.run_until_complete(asyncio.wait_for(work, seconds))
        except TimeoutError as exc:
            raise StepTimedOut(f"the step ran past its deadline of {seconds:.0f}s") from exc
        except SoftTimeLimitExceeded:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            raise

    def finish(self, job_id: str, record: SampleRecord) -> str:
        """Keep the pair's record; if it was the last of a round short of its job's target, send the next."""
        self.store.finish_pair(job_id, record)
        send_next_round(self.store, app, job_id)
        return record.status.value


_process: WorkerProcess | None = None


def worker_process() -> WorkerProcess:
    global _process
    if _process is None:
        _process = WorkerProcess()
    return _process


@app.task(name=STEP_TASK, bind=True)
def run_step(
    self: Any,
    job_id: str,
    pair_json: str,
    step_name: str,
    enqueued_at: float | None = None,
    give_up: bool = False,
) -> str:
    """Run ``step_name`` of one pair; enqueue the next step, or keep the pair's record when it ends here."""
    pair = CaptionPair.model_validate_json(pair_json)
    with log_context(job_id=job_id, pair_id=pair.id, step=step_name):
        outcome = _run_step(self, job_id, pair, pair_json, Stage(step_name), enqueued_at, give_up)
        log.info("step %s: %s", step_name, outcome)
        return outcome


@app.task(
    name=ROUND_TASK,
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=10,  # a round task is never kept waiting longer than the reconciler's patience
    max_retries=TRANSIENT_RETRIES,
)
def run_send_round(self: Any, job_id: str, number: int, start: int) -> str:
    """Send pairs ``start ..`` of round ``number`` to the first step, ``ROUND_CHUNK`` of them, then hand the
    rest to the next round task; the last one notes the round as sent. A redelivered round task sends its
    chunk again, which the step tasks make harmless."""
    with log_context(job_id=job_id, step="send_round"):
        worker = worker_process()
        store = worker.store
        if not store.exists(job_id) or store.is_stopped(job_id):
            return "stopped"
        folder = store.folder(job_id)
        pairs = folder.round_of(number)
        chunk = pairs[start : start + ROUND_CHUNK]
        finished = folder.finished_ids()  # a round sent again skips what already ran
        for pair in chunk:
            if pair.id not in finished:
                send_step(app, worker.settings, job_id, pair.model_dump_json(), FIRST_STEP)
        if start + ROUND_CHUNK < len(pairs):
            store.rounds.sending(job_id, number)
            send_round(app, job_id, number, start + ROUND_CHUNK)
            return f"sent {start}..{start + len(chunk) - 1}"
        store.rounds.sent(job_id, number)
        return f"round {number} sent: {len(pairs)} pairs"


def _retry_delay(settings: Settings, retries: int) -> float:
    delay = settings.worker.retry_backoff_s * 2 ** min(retries, 30) * (1 + random.random() / 2)
    return float(min(delay, max_retry_delay_s(settings)))


def _run_step(
    task: Any, job_id: str, pair: CaptionPair, pair_json: str, step: Stage, enqueued_at: float | None, give_up: bool
) -> str:
    worker = worker_process()
    store = worker.store
    folder = store.folder(job_id)
    job_key = store.key(job_id)
    leased = False
    run = PairRun(pair=pair)
    config = worker.settings
    try:
        if folder.has_record(pair.id):  # redelivered after the record was written
            store.count(job_id, folder.record(pair.id))
            send_next_round(store, app, job_id)
            return "already done"
        manifest = store.manifest(job_id)  # kept in memory by the store: it never changes
        if manifest is None or store.is_stopped(job_id):
            return "stopped"
        config = worker.job_settings(manifest)
        limits = step_limits(config, step)
        if give_up:
            run = folder.last_state(pair)
            failure = Rejection(
                stage=step,
                reason="deadline_exceeded",
                message=f"the step outlived its lease {config.worker.max_lease_expiries} times",
                numbers={"deadline_s": limits.deadline_s},
            )
            return worker.finish(job_id, worker.failure_record(run, failure, config))
        if enqueued_at is not None:
            store.stats.queue_waited(step, max(0.0, time.time() - enqueued_at))
        following = next_step(step)
        if following is not None and folder.has_step(pair.id, step):
            # redelivered after its state was written: pass it on, unless the pair is already past it
            rank = store.progress.rank(job_key, pair.id)
            if rank is not None and rank >= RANK[following]:
                return "already passed on"
            send_step(app, config, job_id, pair_json, following)
            store.enter(job_id, {pair.id: following})
            return "passed on"
        previous = previous_step(step)
        if previous is not None:
            try:
                run = folder.load_step(pair.id, previous)
            except FileNotFoundError:  # its input is gone (a store restored from a backup)
                resume = folder.resume_step(pair.id)
                send_step(app, config, job_id, pair_json, resume)
                store.enter(job_id, {pair.id: resume}, force=True)
                return f"resumed at {resume.value}"
        if not worker.hold(job_key, pair.id, step):
            # another delivery runs this pair's step now: look again when its lease would have expired (if
            # it finishes, this finds its output and passes it on; if it died, this runs the step)
            wait = min(max(store.progress.held_for(job_key, pair.id), 1.0), max_retry_delay_s(config))
            raise task.retry(countdown=wait, max_retries=None)
        leased = True
        started = time.perf_counter()
        record = worker.within(worker.step(job_id, run, step, config), limits.deadline_s)
        store.stats.step_ran(step, time.perf_counter() - started)
        if record is not None:
            worker.heartbeat.drop()  # counting the record ends the lease
            return worker.finish(job_id, record)
        assert following is not None
        folder.save_step(run, step)
        worker.release(job_key, pair.id)
        leased = False
        send_step(app, config, job_id, pair_json, following)
        store.enter(job_id, {pair.id: following})
        return f"next: {following.value}"
    except Retry:
        raise
    except (PairFailed, StepTimedOut, SoftTimeLimitExceeded) as failed:
        _release(worker, job_key, pair.id, leased)
        retries = task.request.retries
        if retries < config.worker.max_retries:
            delay = _retry_delay(config, retries)
            log.warning("%s; retry %d in %.1fs", failed, retries + 1, delay)
            raise task.retry(countdown=delay, max_retries=config.worker.max_retries) from failed
        if isinstance(failed, PairFailed):
            return _end(task, worker, job_id, failed.record, config)
        failure = Rejection(stage=step, reason="deadline_exceeded", message=str(failed), numbers={"retries": retries})
        return _end(task, worker, job_id, worker.failure_record(run, failure, config), config)
    except TRANSIENT as exc:  # Redis or the store: not the pair's fault
        _release(worker, job_key, pair.id, leased)
        raise _transient_retry(task, step, exc, config) from exc
    except Exception as exc:  # a bug of ours: the pair ends with it on record rather than vanish with the task
        log.exception("step %s failed", step.value)
        _release(worker, job_key, pair.id, leased)
        failure = Rejection(stage=step, reason="internal_error", message=f"{type(exc).__name__}: {exc}")
        return _end(task, worker, job_id, worker.failure_record(run, failure, config), config)


def _transient_retry(task: Any, step: Stage, exc: BaseException, config: Settings) -> Retry:
    log.warning("step %s: %s: %s; retrying", step.value, type(exc).__name__, exc)
    retry: Retry = task.retry(countdown=_retry_delay(config, task.request.retries), max_retries=TRANSIENT_RETRIES)
    return retry


def _end(task: Any, worker: WorkerProcess, job_id: str, record: SampleRecord, config: Settings) -> str:
    """End the pair with ``record``; if Redis or the store cannot take it now, the task is tried again."""
    try:
        return worker.finish(job_id, record)
    except TRANSIENT as exc:
        stage = record.rejection.stage if record.rejection else Stage.DIFFERENCE_CAPTION
        raise _transient_retry(task, stage, exc, config) from exc


def _release(worker: WorkerProcess, job_key: str, pair_id: str, leased: bool) -> None:
    if leased:
        worker.release(job_key, pair_id)
