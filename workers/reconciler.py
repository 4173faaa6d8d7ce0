"""Finish jobs whose progress Redis lost: rebuild it from the artifact store and re-enqueue missing pairs.

Redis holds the queue and the counters; the artifact store holds every job's manifest and finished records.
When Redis restarts empty (or is flushed), queued tasks are gone too, so for each job the store knows and
Redis does not, the reconciler rebuilds the counters from the records and enqueues each pair that has no
record yet at the step after the last one whose state is stored. Tasks are idempotent, so a pair enqueued
twice still yields one record.
"""

from __future__ import annotations

import logging

from celery import Celery

from spotdiff.pipeline import STEPS
from workers.celery_app import send_step
from workers.jobstore import JobStore

log = logging.getLogger("spotdiff.reconciler")


def reconcile_lost_jobs(store: JobStore, celery: Celery) -> dict[str, int]:
    """Jobs in the store with no state in Redis: restored; returns how many pairs each got re-enqueued. Jobs
    Redis still knows get their next round if one is due and was never planned."""
    restored: dict[str, int] = {}
    for job_id in store.job_ids():
        if not store.lost(job_id):
            # a job with a target whose last round finished while nobody planned the next (a worker died
            # between the two): plan it now; planning is idempotent, so a round is never added twice
            for pair in store.plan_next_round(job_id):
                send_step(celery, job_id, pair.model_dump_json(), STEPS[0])
            continue
        if store.manifest(job_id) is None:
            continue
        missing = store.reconcile(job_id)
        steps = {pair.id: store.resume_step(job_id, pair.id) for pair in missing}
        store.entered(job_id, steps)
        for pair in missing:
            send_step(celery, job_id, pair.model_dump_json(), steps[pair.id])
        for pair in store.plan_next_round(job_id):  # a job with a target whose last round had just finished
            send_step(celery, job_id, pair.model_dump_json(), STEPS[0])
        restored[job_id] = len(missing)
        log.warning("job %s: progress rebuilt from the store, %d pairs re-enqueued", job_id, len(missing))
    return restored
