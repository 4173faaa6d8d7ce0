"""The workers' Celery app: the queues' configuration (`spotdiff.jobs.queues`), the step and round tasks
(`workers.tasks`), spotdiff's logging, and the reconciler, which each worker's main process runs every
``worker.reconcile_interval_s`` (one worker at a time, `workers.reconciler`)."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging, worker_ready, worker_shutdown

from spotdiff.jobs.queues import create_celery
from spotdiff.logs import configure_logging
from spotdiff.settings import Settings
from workers.reconciler import Reconciler

app = create_celery(include=["workers.tasks"])
_reconciler: Reconciler | None = None


def _configure_worker_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """The worker logs like every spotdiff process: JSON lines with SPOTDIFF_LOG_JSON, each tagged with the job,
    pair and step it is about (the task sets them)."""
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else (loglevel or "warning")
    configure_logging(str(level), json_format=Settings().log_json)


def _start_reconciler(**_: Any) -> None:
    global _reconciler
    _reconciler = Reconciler(Settings(), app)
    _reconciler.start()


def _stop_reconciler(**_: Any) -> None:
    if _reconciler is not None:
        _reconciler.stop()


setup_logging.connect(_configure_worker_logging)  # with a receiver, Celery leaves logging to it
worker_ready.connect(_start_reconciler, weak=False)  # in the main process, once it consumes
worker_shutdown.connect(_stop_reconciler, weak=False)
