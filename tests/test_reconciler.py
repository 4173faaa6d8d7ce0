"""The reconciler plans a round that is due but was never planned (a worker died between the two)."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from spotdiff.protocol.jobs import JobManifest, JobRequest
from spotdiff.settings import Settings
from workers.jobstore import JobStore
from workers.reconciler import Pass, restore_lost_jobs, sweep_job

REDIS_URL = "redis://127.0.0.1:6379/8"


class RecordingCelery:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple, str]] = []

    def send_task(self, name: str, args: tuple, queue: str, **options: object) -> None:
        self.sent.append((name, args, queue))


def sweep(store: JobStore, celery: RecordingCelery) -> None:
    """The reconciler's pass, less the broker's own restore (there is no broker here)."""
    done = Pass()
    restore_lost_jobs(store, celery, Settings(), done)  # type: ignore[arg-type]
    for job_id in store.admissions.active():
        sweep_job(store, celery, Settings(), job_id, done)  # type: ignore[arg-type]


def test_a_due_round_is_planned_once(tmp_path: Path) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        store = JobStore.from_url(REDIS_URL, str(tmp_path))
        request = JobRequest.model_validate(
            {"pairs": [{"id": "a", "source": "A dog", "target": "A cat"}], "target_accepted": 4, "budget_pairs": 20}
        )
        manifest = JobManifest(
            id="job", owner="local", request=request, fingerprint="f", created=time.time(), budget_pairs=20
        )
        first = store.create(manifest)
        assert [pair.id for pair in first] == ["a", "a--v1", "a--v2", "a--v3"]
        # the round ran: two accepted, two rejected, and the worker died before it planned the next round
        store.redis.hset(store.key("job"), mapping={"done": 4, "accepted": 2, "rejected": 2, "state": "running"})
        celery = RecordingCelery()
        sweep(store, celery)
        assert celery.sent == [("spotdiff.send_round", ("job", 1, 0), "spotdiff.rounds")]  # round 1, from its start
        assert len(store.round_of("job", 1)) == 5  # 2 to go at a yield of 0.5, +20 %
        status = store.status("job")
        assert status is not None and status.total == 9 and status.rounds == 2
        sweep(store, celery)
        assert len(celery.sent) == 1  # planned once
        assert len(store.planned_pairs("job")) == 9
    finally:
        client.flushdb()


def test_a_job_ends_once_however_many_pairs_see_it_end(tmp_path: Path) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        store = JobStore.from_url(REDIS_URL, str(tmp_path))
        request = JobRequest.model_validate({"pairs": [{"id": "a", "source": "A dog", "target": "A cat"}]})
        store.create(JobManifest(id="job", owner="local", request=request, fingerprint="f", created=time.time()))
        store.stop("job", "target_reached")
        store.stop("job", "target_reached")
        types = [fields["type"] for _, fields in store.events("job", block_ms=10)]
        assert types.count("done") == 1 and store.status("job").stopped == "target_reached"  # type: ignore[union-attr]
    finally:
        client.flushdb()
