"""The Celery app, configured so that a killed worker loses nothing and no long step runs twice.

- one queue per pipeline step (`step_queue`), so the backlog of each stage, and so of each service, is a list
  an autoscaler can read; a worker consumes every queue unless ``-Q`` names some;
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged after it finished (its state is
  in the store), and a worker that dies mid-task puts it back on its queue;
- ``worker_prefetch_multiplier = 1``: a worker holds one task at a time, so the queue length the autoscaler
  sees is the real backlog;
- the broker's ``visibility_timeout`` is above the longest step, so Redis does not redeliver a task that is
  still running;
- results are ignored (the pair's state in the store is the result) and expire anyway.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.signals import setup_logging
from kombu.entity import Queue

from spotdiff.logs import configure_logging
from spotdiff.pipeline import STEPS
from spotdiff.protocol import Stage
from spotdiff.settings import Settings

STEP_TASK = "spotdiff.step"


def step_queue(step: Stage) -> str:
    """The queue a step's tasks wait on: ``spotdiff.generate``, ``spotdiff.pair_filter`` ..."""
    return f"spotdiff.{step.value}"


STEP_QUEUES: tuple[str, ...] = tuple(step_queue(step) for step in STEPS)


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    app = Celery("spotdiff", broker=settings.redis_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_expires=settings.worker.result_expires_s,
        broker_transport_options={"visibility_timeout": settings.worker.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(name) for name in STEP_QUEUES],  # type: ignore[no-untyped-call]
        task_default_queue=STEP_QUEUES[0],
        worker_hijack_root_logger=False,
    )
    return app


def _configure_worker_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """The worker logs like every spotdiff process: JSON lines with SPOTDIFF_LOG_JSON, each tagged with the job,
    pair and step it is about (the task sets them)."""
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else (loglevel or "warning")
    configure_logging(str(level), json_format=Settings().log_json)


setup_logging.connect(_configure_worker_logging)  # with a receiver, Celery leaves logging to it


def send_step(celery: Celery, job_id: str, pair_json: str, step: Stage) -> None:
    """Enqueue one step of one pair on that step's queue (stamped, so its wait in the queue can be measured)."""
    celery.send_task(STEP_TASK, args=(job_id, pair_json, step.value, time.time()), queue=step_queue(step))


app = create_celery()
