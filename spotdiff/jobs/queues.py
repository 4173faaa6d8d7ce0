"""The job queues: their names, how a step or a round is sent, and the Celery configuration that makes a killed
worker lose nothing and run no long step twice. The gateway sends with it, the workers consume with it
(`workers.celery_app`).

- one queue per pipeline step (`step_queue`), so the backlog of each stage, and so of each service, is a list
  an autoscaler can read; a worker consumes every queue unless ``-Q`` names some;
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged after it finished (its state is
  in the store), and a worker that dies mid-task puts it back on its queue;
- ``worker_prefetch_multiplier = 1``: a worker holds one task at a time, so the queue length the autoscaler
  sees is the real backlog;
- every step has a deadline and Celery time limits above it (`spotdiff.jobs.deadlines`); the broker's
  ``visibility_timeout`` is just above the longest of them, so Redis never redelivers a task that is still
  running, and a task held by a worker that died comes back within it (every worker, and the reconciler,
  look for such tasks every few seconds);
- results are ignored (the pair's state in the store is the result) and expire anyway.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu.entity import Queue

from spotdiff.jobs.deadlines import step_limits, visibility_timeout_s
from spotdiff.pipeline.graph import FIRST_STEP, STEPS
from spotdiff.protocol import Stage
from spotdiff.settings import Settings

if TYPE_CHECKING:
    from spotdiff.jobs.store import JobStore

STEP_TASK = "spotdiff.step"
ROUND_TASK = "spotdiff.send_round"
ROUND_CHUNK = 500  # pairs one round task sends before it hands the rest to the next


def step_queue(step: Stage) -> str:
    """The queue a step's tasks wait on: ``spotdiff.generate``, ``spotdiff.pair_filter`` ..."""
    return f"spotdiff.{step.value}"


STEP_QUEUES: tuple[str, ...] = tuple(step_queue(step) for step in STEPS)
#: Round tasks send a round's pairs to the first step, ROUND_CHUNK at a time, on a queue of their own: a job of
#: any size is accepted at once, and its sending never waits behind the step backlogs it creates.
ROUNDS_QUEUE = "spotdiff.rounds"
WORKER_QUEUES: tuple[str, ...] = (*STEP_QUEUES, ROUNDS_QUEUE)


def create_celery(settings: Settings | None = None, include: Sequence[str] = ()) -> Celery:
    """A Celery app on the settings' Redis: a producer as it is, a worker with ``include`` naming its tasks."""
    settings = settings or Settings()
    app = Celery("spotdiff", broker=settings.redis_url, include=list(include))
    visibility = visibility_timeout_s(settings)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_expires=settings.worker.result_expires_s,
        broker_transport_options=broker_transport_options(visibility),
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(name) for name in WORKER_QUEUES],  # type: ignore[no-untyped-call]
        task_default_queue=step_queue(FIRST_STEP),
        worker_hijack_root_logger=False,
    )
    return app


def broker_transport_options(visibility: float) -> dict[str, Any]:
    """Redis redelivers a task nobody acknowledged within ``visibility`` seconds; consumers look for such
    tasks every few seconds (a tenth of it, at most 10 s) rather than kombu's default 100 s."""
    return {
        "visibility_timeout": visibility,
        "unacked_restore_interval": max(1, min(10, int(visibility / 10))),
        "unacked_restore_throttle": 1,
    }


def send_step(
    celery: Celery, settings: Settings, job_id: str, pair_json: str, step: Stage, *, give_up: bool = False
) -> None:
    """Enqueue one step of one pair on that step's queue, with the step's time limits (and stamped, so its
    wait in the queue can be measured). ``give_up``: the step outlived its lease too often; the task only
    writes the pair's ``deadline_exceeded`` record."""
    limits = step_limits(settings, step)
    celery.send_task(
        STEP_TASK,
        args=(job_id, pair_json, step.value, time.time()),
        kwargs={"give_up": True} if give_up else {},
        queue=step_queue(step),
        soft_time_limit=limits.soft_limit_s,
        time_limit=limits.hard_limit_s,
    )


def send_round(celery: Celery, job_id: str, number: int, start: int = 0) -> None:
    """Have round ``number`` of a job sent to its first step, from pair ``start`` on: one message here, a
    worker's round task sends the pairs, ``ROUND_CHUNK`` at a time."""
    celery.send_task(ROUND_TASK, args=(job_id, number, start), queue=ROUNDS_QUEUE)


def send_next_round(store: JobStore, celery: Celery, job_id: str) -> bool:
    """For a job with a target whose planned pairs have all finished short of it: plan its next round and have
    it sent (True), or nothing to do (False). Planning is idempotent, so whoever asks, a round is sent once."""
    if not store.rounds.plan_next(job_id):
        return False
    send_round(celery, job_id, store.rounds.latest(job_id))
    return True
