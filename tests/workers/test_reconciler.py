"""The reconciler plans a round that is due but was never planned (a worker died between the two)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import redis

from spotdiff.jobs.queues import create_celery, send_step
from spotdiff.jobs.store import JobStore
from spotdiff.protocol import Stage
from spotdiff.protocol.jobs import JobManifest, JobRequest
from spotdiff.settings import Settings
from workers.reconciler import Pass, restore_abandoned, restore_lost_jobs, restore_unacknowledged, sweep_job

REDIS_URL = "redis://127.0.0.1:6379/8"


class RecordingCelery:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple, str]] = []
        self.options: list[dict] = []

    def send_task(self, name: str, args: tuple, queue: str, **options: object) -> None:
        self.sent.append((name, args, queue))
        self.options.append(options)


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
        assert len(store.folder("job").round_of(1)) == 5  # 2 to go at a yield of 0.5, +20 %
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


def test_a_lapsed_lease_sends_its_step_again_then_gives_the_pair_up(tmp_path: Path) -> None:
    """A worker died mid-step (its heartbeat stopped): the step is sent again, and after max_lease_expiries
    the pair is sent to end with a deadline_exceeded record instead."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        store = JobStore.from_url(REDIS_URL, str(tmp_path))
        request = JobRequest.model_validate({"pairs": [{"id": "a", "source": "A dog", "target": "A cat"}]})
        manifest = JobManifest(id="job", owner="local", request=request, fingerprint="f", created=time.time())
        store.create(manifest)
        store.admissions.track("local", "job")
        celery = RecordingCelery()
        limit = Settings().worker.max_lease_expiries
        for expiry in range(1, limit + 2):
            assert store.progress.acquire(store.key("job"), "a", Stage.PROPOSALS, 0.01)
            time.sleep(0.03)
            sweep(store, celery)
            name, args, queue = celery.sent[-1]
            assert (name, args[0], args[2], queue) == ("spotdiff.step", "job", "proposals", "spotdiff.proposals")
            assert celery.options[-1].get("kwargs", {}).get("give_up", False) is (expiry > limit)
        assert len(celery.sent) == limit + 1
        sweep(store, celery)
        assert len(celery.sent) == limit + 1  # a live lease, or none, sends nothing
    finally:
        client.flushdb()


DEAD_CONSUMER = """
import os, sys
from spotdiff.settings import Settings
from spotdiff.jobs.queues import create_celery
app = create_celery(Settings(redis_url=sys.argv[1]))
with app.connection_for_read() as connection:
    assert connection.default_channel.basic_get("spotdiff.generate", no_ack=False) is not None
    os._exit(0)  # dies holding the task: no ack, no restore at shutdown
"""


def test_a_task_held_by_a_dead_consumer_is_put_back_after_the_visibility_timeout() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        settings = Settings(redis_url=REDIS_URL, worker={"visibility_timeout_s": 1.0})
        app = create_celery(settings)
        send_step(app, settings, "job", '{"id": "a", "source": "A dog", "target": "A cat"}', Stage.GENERATE)
        subprocess.run([sys.executable, "-c", DEAD_CONSUMER, REDIS_URL], check=True, timeout=60)
        assert client.llen("spotdiff.generate") == 0 and client.hlen("unacked") == 1
        assert restore_unacknowledged(app) == 0  # not yet: it might still be running
        time.sleep(1.2)
        assert restore_unacknowledged(app) == 1
        assert client.llen("spotdiff.generate") == 1 and client.hlen("unacked") == 0
    finally:
        client.flushdb()


def test_a_task_a_dead_worker_never_started_comes_back_long_before_the_visibility_timeout(tmp_path: Path) -> None:
    """Delivered, unacknowledged, no live lease on its pair, for longer than a live worker keeps a task
    waiting (a retry's delay plus a lease): its worker died before starting it."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        worker = {"visibility_timeout_s": 3600.0, "step_grace_s": 0.2, "lease_s": 0.3}
        settings = Settings(redis_url=REDIS_URL, storage_url=str(tmp_path), worker=worker)
        app, store = create_celery(settings), JobStore.from_url(REDIS_URL, str(tmp_path))
        send_step(app, settings, "job", '{"id": "a", "source": "A dog", "target": "A cat"}', Stage.GENERATE)
        subprocess.run([sys.executable, "-c", DEAD_CONSUMER, REDIS_URL], check=True, timeout=60)
        assert restore_abandoned(store, app, settings) == 0  # too young: a live worker may be about to start it
        store.progress.acquire(store.key("job"), "a", Stage.GENERATE, 60)
        time.sleep(0.6)
        assert restore_abandoned(store, app, settings) == 0  # a live task holds the pair: it is running
        store.progress.release(store.key("job"), "a")
        assert restore_abandoned(store, app, settings) == 1
        assert client.llen("spotdiff.generate") == 1 and client.hlen("unacked") == 0
    finally:
        client.flushdb()
