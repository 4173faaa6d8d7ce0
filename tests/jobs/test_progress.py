"""Pair progress, leases and admission in a real Redis (database 9), decided by their Lua scripts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from spotdiff.jobs.admission import ACTIVE_JOBS, Admissions
from spotdiff.jobs.progress import PairProgress
from spotdiff.protocol import Stage

REDIS_URL = "redis://127.0.0.1:6379/9"
JOB = "spotdiff:job:j"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    connection.flushdb()
    yield connection
    connection.flushdb()


def test_pairs_move_forward_only_and_never_after_they_finished(client: redis.Redis) -> None:
    progress = PairProgress(client)
    assert progress.move(JOB, ["a", "b", "c"], Stage.GENERATE) == 3
    assert progress.move(JOB, ["a"], Stage.PROPOSALS) == 1
    assert progress.move(JOB, ["a"], Stage.PAIR_FILTER) == 0  # a late duplicate cannot pull it back
    assert progress.counts(JOB) == {"generate": 2, "proposals": 1}
    client.sadd(f"{JOB}:counted", "b")
    assert progress.move(JOB, ["b"], Stage.DIFFERENCE_CAPTION) == 0  # finished pairs stay finished
    progress.remove(JOB, "b")
    progress.remove(JOB, "b")  # twice is once
    assert progress.counts(JOB) == {"generate": 1, "proposals": 1}
    assert progress.move(JOB, ["a"], Stage.GENERATE, force=True) == 1  # a rebuild may go back
    assert progress.counts(JOB) == {"generate": 2}


def test_a_lease_holds_a_pair_until_it_expires_then_the_reconciler_takes_it(client: redis.Redis) -> None:
    progress = PairProgress(client)
    assert progress.acquire(JOB, "a", Stage.PROPOSALS, 0.3)
    assert not progress.acquire(JOB, "a", Stage.PROPOSALS, 0.3)  # a second delivery while the first runs
    assert progress.take_expired(JOB) == []
    time.sleep(0.4)
    (expired,) = progress.take_expired(JOB)
    assert (expired.pair_id, expired.step, expired.times) == ("a", Stage.PROPOSALS, 1)
    assert progress.take_expired(JOB) == []  # taken once
    assert progress.acquire(JOB, "a", Stage.PROPOSALS, 0.01)
    time.sleep(0.05)
    assert [lease.times for lease in progress.take_expired(JOB)] == [2]  # counted across expiries
    assert progress.acquire(JOB, "a", Stage.PROPOSALS, 10)
    progress.release(JOB, "a")
    assert progress.acquire(JOB, "a", Stage.REGION_LABELS, 10)  # released: the next step may take it


def test_an_expired_lease_of_a_finished_pair_is_dropped(client: redis.Redis) -> None:
    progress = PairProgress(client)
    progress.acquire(JOB, "a", Stage.GENERATE, 0.01)
    client.sadd(f"{JOB}:counted", "a")
    time.sleep(0.05)
    assert progress.take_expired(JOB) == []
    assert client.zcard(f"{JOB}:leases") == 0


def test_admission_bounds_jobs_in_flight_and_pairs_per_minute(client: redis.Redis) -> None:
    admissions = Admissions(client)
    limits = {"max_jobs": 2, "pairs_per_minute": 60, "capacity": 50}
    assert admissions.admit("alice", "j1", cost=30, **limits).admitted
    assert admissions.admit("alice", "j1", cost=0, **limits).admitted  # the same job again is no new one
    assert admissions.admit("alice", "j2", cost=20, **limits).admitted
    refused = admissions.admit("alice", "j3", cost=1, **limits)
    assert (refused.admitted, refused.reason) == (False, "jobs_in_flight") and refused.retry_after_s >= 1
    assert admissions.admit("bob", "j4", cost=40, **limits).admitted  # another key has its own limits
    admissions.release("alice", "j1")
    empty = admissions.admit("alice", "j3", cost=30, **limits)  # 60 - 50 = 10 left (plus a second's refill)
    assert (empty.admitted, empty.reason) == (False, "pairs_per_minute")
    assert 15 <= empty.retry_after_s <= 21  # 20 missing at one a second
    assert admissions.admit("alice", "j3", cost=5, **limits).admitted
    assert client.smembers(ACTIVE_JOBS) == {"j2", "j3", "j4"}
    admissions.release("alice", "j2")
    admissions.release("alice", "j3")
    admissions.release("bob", "j4")
    assert client.smembers(ACTIVE_JOBS) == set()


def test_the_heartbeat_keeps_a_running_steps_lease_and_a_dropped_one_lapses(client: redis.Redis) -> None:
    from workers.tasks import Heartbeat

    progress = PairProgress(client)
    heartbeat = Heartbeat(progress, 0.3)
    assert progress.acquire(JOB, "a", Stage.GENERATE, 0.3)
    heartbeat.hold(JOB, "a")
    time.sleep(0.9)  # three lease lengths: renewed all along
    assert not progress.acquire(JOB, "a", Stage.GENERATE, 0.3) and progress.take_expired(JOB) == []
    heartbeat.drop()  # the process stops renewing (as a dead one would)
    time.sleep(0.5)
    assert [lease.pair_id for lease in progress.take_expired(JOB)] == ["a"]
