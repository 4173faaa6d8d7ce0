"""The reconciler: what makes a job finish whatever died on the way. Every worker's main process runs it every
``worker.reconcile_interval_s`` (`Reconciler`), one worker at a time (a Redis lock). One pass does three things.

1. **Jobs whose progress Redis lost** (it restarted empty, or was flushed): for each job the artifact store knows
   and Redis does not, the counters are rebuilt from the records and each pair without a record is sent again
   at the step after the last one whose state is stored. This scan of the store runs on the first pass, every
   ``FULL_SCAN_EVERY`` passes, and whenever Redis's ``spotdiff:alive`` mark is gone (Redis lost everything).
2. **Live jobs with stalled pairs**: a pair whose step outlived its lease (its worker died mid-step, or the step
   hung past its hard time limit) is sent again; after ``max_lease_expiries`` it ends as ``deadline_exceeded``.
   A round planned but never sent (its planner died) is sent, and a due round nobody planned is planned.
3. **Tasks held by dead workers**: a task delivered but not acknowledged, whose pair no live task holds a lease
   on, for longer than a live worker ever keeps one waiting (a retry's delay plus a lease), belongs to a worker
   that died before it started it: it goes back on its queue now. Whatever is older than the broker's
   visibility timeout goes back too (kombu's own restore, which live workers also run).

Tasks are idempotent and a step's stored output makes a duplicate delivery harmless, so sending a pair twice
still yields one record.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from celery import Celery

from spotdiff.jobs.deadlines import max_retry_delay_s
from spotdiff.jobs.queues import STEP_TASK, send_next_round, send_round, send_step
from spotdiff.jobs.recovery import rebuild
from spotdiff.jobs.store import JobStore
from spotdiff.protocol import CaptionPair
from spotdiff.protocol.jobs import JobState
from spotdiff.settings import Settings

log = logging.getLogger("spotdiff.reconciler")
ALIVE = "spotdiff:alive"  # set after a full scan; its absence means Redis lost its data since
LOCK = "spotdiff:reconciler"  # held for one interval by the worker whose pass it is
FULL_SCAN_EVERY = 10


@dataclass
class Pass:
    """What one pass did, by job."""

    restored: dict[str, int] = field(default_factory=dict)  # pairs re-sent after Redis lost the job
    expired: Counter[str] = field(default_factory=Counter)  # stalled steps sent again (or given up)
    resent: Counter[str] = field(default_factory=Counter)  # rounds planned but never all sent, sent again
    restored_tasks: int = 0  # tasks put back on their queues (their worker died)


def reconcile(store: JobStore, celery: Celery, settings: Settings, *, full: bool = False) -> Pass:
    done = Pass()
    if full or not store.redis.exists(ALIVE):
        restore_lost_jobs(store, celery, settings, done)
        store.redis.set(ALIVE, time.time())
    for job_id in store.admissions.active():
        sweep_job(store, celery, settings, job_id, done)
    done.restored_tasks = restore_abandoned(store, celery, settings) + restore_unacknowledged(celery)
    return done


def restore_lost_jobs(store: JobStore, celery: Celery, settings: Settings, done: Pass) -> None:
    for job_id in store.job_ids():
        if not store.lost(job_id):
            state = store.redis.hget(store.key(job_id), "state")
            if state in (JobState.QUEUED.value, JobState.RUNNING.value):
                owner = store.owner(job_id)
                if owner is not None:
                    store.admissions.track(owner, job_id)  # the sweep looks after it from now on
            continue
        if store.being_created(job_id) or store.manifest(job_id) is None:
            continue  # its creator is still at work (or gave up before writing anything)
        missing = rebuild(store, job_id)
        folder = store.folder(job_id)
        for pair in missing:
            send_step(celery, settings, job_id, pair.model_dump_json(), folder.resume_step(pair.id))
        for number in range(store.rounds.latest(job_id) + 1):
            store.rounds.sent(job_id, number)
        done.restored[job_id] = len(missing)
        log.warning("job %s: progress rebuilt from the store, %d pairs sent again", job_id, len(missing))


def sweep_job(store: JobStore, celery: Celery, settings: Settings, job_id: str, done: Pass) -> None:
    """Stalled pairs and unsent rounds of one job in flight."""
    if store.is_stopped(job_id) or store.lost(job_id):
        store.admissions.release(store.owner(job_id), job_id)
        return
    expired = store.progress.take_expired(store.key(job_id))
    if expired:
        pairs = _pairs_by_id(store, job_id)
        for lease in expired:
            pair = pairs.get(lease.pair_id)
            if pair is None:
                continue
            give_up = lease.times > settings.worker.max_lease_expiries
            send_step(celery, settings, job_id, pair.model_dump_json(), lease.step, give_up=give_up)
            done.expired[job_id] += 1
            log.warning(
                "job %s, pair %s: step %s outlived its lease (%d times)%s",
                job_id,
                lease.pair_id,
                lease.step.value,
                lease.times,
                "; giving up" if give_up else "; sent again",
            )
    for number in store.rounds.unsent(job_id):
        store.rounds.sending(job_id, number)  # the grace starts again: one resend, not one a pass
        send_round(celery, job_id, number)
        done.resent[job_id] += 1
    # a job with a target whose last round finished while nobody planned the next (a worker died between the
    # two): plan it now; planning is idempotent, so a round is never added twice
    send_next_round(store, celery, job_id)


def _pairs_by_id(store: JobStore, job_id: str) -> dict[str, CaptionPair]:
    return {pair.id: pair for pair in store.planned_pairs(job_id)}


def restore_abandoned(store: JobStore, celery: Celery, settings: Settings) -> int:
    """Put back the tasks a dead worker had received and not started: unacknowledged for longer than a live
    worker keeps a task waiting, and no live lease on their pair. Returns how many."""
    patience = max_retry_delay_s(settings) + settings.worker.lease_s
    restored = 0
    with celery.connection_for_write() as connection:
        channel = connection.default_channel
        client, qos = channel.client, channel.qos
        now = time.time()
        for tag, raw in client.hgetall(qos.unacked_key).items():
            delivered = client.zscore(qos.unacked_index_key, tag)
            if delivered is None or now - float(delivered) < patience:
                continue
            step_task = _step_task_of(raw)
            if step_task is not None and store.progress.held_for(store.key(step_task[0]), step_task[1]) > 0:
                continue  # a live task runs this pair's step
            qos.restore_by_tag(tag, client)
            restored += 1
    return restored


def _step_task_of(raw: bytes | str) -> tuple[str, str] | None:
    """(job id, pair id) of an unacknowledged step task in kombu's Redis format (Celery's message protocol 2:
    a base64 JSON body ``[args, kwargs, embed]``), or None for another task or a message it cannot read."""
    try:
        message = json.loads(raw)[0]
        if message["headers"]["task"] != STEP_TASK:
            return None
        args = json.loads(base64.b64decode(message["body"]))[0]
        return str(args[0]), str(json.loads(args[1])["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def restore_unacknowledged(celery: Celery) -> int:
    """Put back on their queues the tasks delivered longer ago than the visibility timeout and never
    acknowledged (kombu's restore; live workers run it too, this one does not wait for them)."""
    with celery.connection_for_write() as connection:
        qos = connection.default_channel.qos
        before = connection.default_channel.client.zcard(qos.unacked_index_key)
        qos.restore_visible(num=1000, interval=1)
        after = connection.default_channel.client.zcard(qos.unacked_index_key)
    return max(0, int(before) - int(after))


class Reconciler:
    """Runs a pass every ``worker.reconcile_interval_s`` on a thread of the worker's main process: whichever
    worker takes the Redis lock for the interval runs it, so a fleet of workers makes one pass per interval,
    and the passes go on while any worker lives. Every ``FULL_SCAN_EVERY``-th pass (and the first) also scans
    the store for jobs Redis lost."""

    def __init__(self, settings: Settings, celery: Celery, store: JobStore | None = None) -> None:
        self.settings = settings
        self.celery = celery
        self.store = store or JobStore.from_url(settings.redis_url, settings.storage_url)
        self.passes = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def run_once(self) -> Pass | None:
        """One pass if this worker holds the lock for the interval; None when another worker's turn it is."""
        interval = self.settings.worker.reconcile_interval_s
        if not self.store.redis.set(LOCK, "1", nx=True, px=max(1, int(interval * 1000))):
            return None
        done = reconcile(self.store, self.celery, self.settings, full=self.passes % FULL_SCAN_EVERY == 0)
        self.passes += 1
        return done

    def _run(self) -> None:
        while not self._stopped.wait(self.settings.worker.reconcile_interval_s):
            try:
                self.run_once()
            except Exception:  # Redis away: try again next interval; the loop must outlive any one failure
                log.exception("a reconciler pass failed")
