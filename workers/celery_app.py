"""The Celery app, configured so that a killed worker loses nothing and no long pair runs twice.

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged after it finished (its record
  is in the store), and a worker that dies mid-task puts it back on the queue;
- ``worker_prefetch_multiplier = 1``: a worker holds one task at a time, so the queue length the autoscaler
  sees is the real backlog;
- the broker's ``visibility_timeout`` is above the longest pair, so Redis does not redeliver a task that is
  still running;
- results are ignored (the record in the store is the result) and expire anyway.
"""

from __future__ import annotations

from celery import Celery

from spotdiff.settings import Settings

PAIR_QUEUE = "spotdiff.pairs"
PAIR_TASK = "spotdiff.pair"


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
        task_routes={PAIR_TASK: {"queue": PAIR_QUEUE}},
        task_default_queue=PAIR_QUEUE,
        worker_hijack_root_logger=False,
    )
    return app


app = create_celery()
