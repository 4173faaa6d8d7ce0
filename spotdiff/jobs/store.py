"""Job state: progress in Redis, truth in the artifact store.

Each job is a run folder in the artifact store (``jobs/<id>/``, laid out as `spotdiff.jobs.folder` says): its
manifest, one record per finished pair, and while a pair is under way its state after each step. A step's
state, or the record, is written before its task is acknowledged, so a redelivered task finds it and moves on.
Redis holds the counters, the funnel, where each unfinished pair is (`spotdiff.jobs.progress`), which rounds of
pairs were planned and sent, and an event stream per job (`spotdiff.jobs.events`); if Redis loses them,
`spotdiff.jobs.recovery` rebuilds them from the store.

A job is created once: the first caller takes a Redis claim on its id and writes the manifest with an
exclusive create; every other caller finds the claim or the manifest and is told what exists.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from spotdiff.jobs.admission import Admissions
from spotdiff.jobs.events import EventLog
from spotdiff.jobs.folder import RunFolder
from spotdiff.jobs.progress import PairProgress
from spotdiff.jobs.rounds import Rounds
from spotdiff.jobs.stats import PipelineStats
from spotdiff.pipeline.graph import FIRST_STEP
from spotdiff.protocol import CaptionPair, SampleRecord, SampleStatus, Stage
from spotdiff.protocol.ids import check_id, is_valid_id
from spotdiff.protocol.jobs import FINAL_STATES, JobManifest, JobState, JobStatus
from spotdiff.storage import ArtifactStore

PREFIX = "spotdiff:job:"
OWNER_JOBS = "spotdiff:owner:{owner}:jobs"  # a sorted set: an owner's job ids by creation time
CLAIM_TTL_S = 60  # a creator that died before writing its job's progress gives the id back after this
MANIFESTS_KEPT = 32
REDIS_CONNECT_TIMEOUT_S = 5  # an unreachable Redis is an error in seconds, not a hang
# An accepted pair's place among the job's accepted pairs: the same place when asked again, atomically.
_CLAIM_SLOT = """
local slot = redis.call('HGET', KEYS[1], ARGV[1])
if not slot then
  slot = redis.call('HLEN', KEYS[1]) + 1
  redis.call('HSET', KEYS[1], ARGV[1], slot)
end
return tonumber(slot)
"""


def service_seconds(record: SampleRecord) -> float:
    """Seconds the pair spent in its steps (model service calls, mostly): what a budget in seconds counts."""
    return float(sum(record.timings.values()))


def surplus(record: SampleRecord) -> SampleRecord:
    """An accepted pair past the job's target: on record, not a sample."""
    return record.model_copy(update={"status": SampleStatus.SURPLUS})


@dataclass(frozen=True)
class Claim:
    """Who holds (or held) a job id: the owner and the fingerprint of the body it was submitted with."""

    owner: str
    fingerprint: str

    def encode(self) -> str:
        return f"{self.owner}:{self.fingerprint}"

    @classmethod
    def decode(cls, value: str) -> Claim:
        owner, _, fingerprint = value.rpartition(":")
        return cls(owner, fingerprint)


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"
    ALREADY = "already_cancelled"
    FINISHED = "finished"
    MISSING = "missing"


class JobStore:
    def __init__(self, client: redis.Redis, storage_url: str) -> None:
        self.redis: Any = client  # decode_responses=True: str in, str out (redis-py's stubs say bytes | str)
        self.storage = ArtifactStore(storage_url)
        self.progress = PairProgress(client)
        self.admissions = Admissions(client)
        self.stats = PipelineStats(client)
        self.event_log = EventLog(client)
        self.rounds = Rounds(self)
        self._claim_slot = self.redis.register_script(_CLAIM_SLOT)
        self._manifests: OrderedDict[str, JobManifest] = OrderedDict()

    @classmethod
    def from_url(cls, redis_url: str, storage_url: str) -> JobStore:
        client = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S, socket_timeout=30
        )
        return cls(client, storage_url)

    # the artifact store: the durable truth
    def artifacts(self, job_id: str) -> ArtifactStore:
        """A job's folder; the id is checked again here, so no caller can reach outside ``jobs/``."""
        return self.storage.child(f"jobs/{check_id(job_id, 'job id')}")

    def folder(self, job_id: str) -> RunFolder:
        return RunFolder(self.artifacts(job_id))

    def manifest(self, job_id: str) -> JobManifest | None:
        """A job's manifest (kept in memory once read: it never changes after the job is created)."""
        if job_id in self._manifests:
            self._manifests.move_to_end(job_id)
            return self._manifests[job_id]
        manifest = self.folder(job_id).read_manifest()
        if manifest is None:
            return None
        self._manifests[job_id] = manifest
        if len(self._manifests) > MANIFESTS_KEPT:
            self._manifests.popitem(last=False)
        return manifest

    def exists(self, job_id: str) -> bool:
        return self.folder(job_id).has_manifest()

    def planned_pairs(self, job_id: str) -> list[CaptionPair]:
        """Every pair the job runs so far (`RunFolder.planned_pairs`)."""
        manifest = self.manifest(job_id)
        return [] if manifest is None else self.folder(job_id).planned_pairs(manifest)

    def records(self, job_id: str) -> list[SampleRecord]:
        return self.records_page(job_id, 0, None)[0]

    def iter_records(self, job_id: str) -> Iterator[SampleRecord]:
        """The finished pairs' records in the job's order, read one at a time (an export of any size)."""
        folder = self.folder(job_id)
        for pair_id in folder.ordered_ids(self.manifest(job_id)):
            yield folder.record(pair_id)

    def records_page(self, job_id: str, offset: int, limit: int | None) -> tuple[list[SampleRecord], int]:
        return self.folder(job_id).records_page(self.manifest(job_id), offset, limit)

    # Redis: progress
    def key(self, job_id: str, part: str = "") -> str:
        return f"{PREFIX}{job_id}{':' + part if part else ''}"

    def claim(self, job_id: str, claim: Claim) -> Claim | None:
        """Take the id for ``claim``; None when this caller now holds it, else who holds or created it."""
        for _ in range(3):  # a claim that expires between the two commands: ask again
            if self.redis.set(self.key(job_id, "claim"), claim.encode(), nx=True, ex=CLAIM_TTL_S):
                return self.creator(job_id)  # Redis may have lost an older claim: the store is the truth
            held = self.redis.get(self.key(job_id, "claim"))
            if held is not None:
                return Claim.decode(held)
        raise redis.exceptions.ConnectionError("the job id's claim kept changing hands")

    def holder(self, job_id: str) -> Claim | None:
        """Who holds or created the id, read only (None when it is free): lets a submission that is the same
        job again be answered before any work is spent on making its pairs. ``claim`` still decides a race."""
        held = self.redis.get(self.key(job_id, "claim"))
        return Claim.decode(held) if held is not None else self.creator(job_id)

    def creator(self, job_id: str) -> Claim | None:
        """Who created the job, from its manifest in the store (None when there is none)."""
        manifest = self.manifest(job_id)
        return None if manifest is None else Claim(manifest.owner, manifest.fingerprint)

    def unclaim(self, job_id: str) -> None:
        self.redis.delete(self.key(job_id, "claim"))

    def wait_manifest(self, job_id: str, timeout: float = 5.0) -> JobManifest | None:
        """The manifest of a job another caller is creating right now, once it is written."""
        deadline = time.monotonic() + timeout
        while (manifest := self.manifest(job_id)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return manifest

    def create(self, manifest: JobManifest) -> list[CaptionPair] | None:
        """Write the manifest if no job has this id (exclusively), then, for a job with a target, its first
        round, then the progress; returns the pairs of round 0, or None when the job already existed. The
        caller has them sent (`spotdiff.jobs.queues.send_round`)."""
        folder = self.folder(manifest.id)
        if not folder.create_manifest(manifest):
            return None
        pairs = self.rounds.plan_first(manifest)
        total = len(pairs) + len(manifest.rewrite_drops)
        self.reset(manifest, total=total, rounds=1, done=0, accepted=0, state=JobState.QUEUED)
        self.progress.move(self.key(manifest.id), (pair.id for pair in pairs), FIRST_STEP)
        self.event(manifest.id, {"type": "created", "total": total})
        self.keep_rewrite_drops(manifest)
        return pairs

    def keep_rewrite_drops(self, manifest: JobManifest) -> None:
        """The rewrites that gave no pair, as the job's first records, each counted once (again after a crash)."""
        for record in manifest.rewrite_drops:
            self.finish_pair(manifest.id, record)

    def planned_total(self, manifest: JobManifest, planned: int) -> int:
        """What a job counts to: its planned pairs and the rewrites of its captions that gave none."""
        return planned + len(manifest.rewrite_drops)

    def reset(
        self, manifest: JobManifest, *, total: int, rounds: int, done: int, accepted: int, state: JobState
    ) -> None:
        now = time.time()
        request = manifest.request
        mapping: dict[str, Any] = {
            "state": state.value,
            "total": total,
            "rounds": rounds,
            "done": done,
            "accepted": accepted,
            "rejected": done - accepted,
            "created": manifest.created,
            "updated": now,
            "owner": manifest.owner,
        }
        if request.target_accepted is not None:
            mapping["target"] = request.target_accepted
            mapping["budget_pairs"] = manifest.budget_pairs or total
            if request.budget_seconds is not None:
                mapping["budget_seconds"] = request.budget_seconds
        pipe = self.redis.pipeline()
        pipe.hset(self.key(manifest.id), mapping=mapping)
        pipe.zadd(OWNER_JOBS.format(owner=manifest.owner), {manifest.id: manifest.created})
        pipe.execute()

    def owner_jobs(
        self, owner: str, states: Collection[JobState] = (), offset: int = 0, limit: int = 20
    ) -> tuple[list[JobStatus], int]:
        """An owner's jobs, newest first, those in ``states`` only when given; one page and how many in all.
        (The index is kept where a job's progress is, so a job rebuilt from the store is listed again.)"""
        job_ids: list[str] = self.redis.zrevrange(OWNER_JOBS.format(owner=owner), 0, -1)
        if states:
            pipe = self.redis.pipeline()
            for job_id in job_ids:
                pipe.hget(self.key(job_id), "state")
            wanted = {state.value for state in states}
            job_ids = [job_id for job_id, state in zip(job_ids, pipe.execute(), strict=True) if state in wanted]
        page = [self.status(job_id) for job_id in job_ids[offset : offset + limit]]
        return [status for status in page if status is not None], len(job_ids)

    def finish_pair(self, job_id: str, record: SampleRecord) -> bool:
        """Keep a pair's record (if it is the first) and count it once; True when this call counted it.

        In a job with a target, an accepted pair takes the next accepted slot (atomically, and the same slot
        again if its task is redelivered); past the target it is kept as a surplus rejection, so that the job
        ends with exactly its target of accepted samples however many pairs were in flight."""
        folder = self.folder(job_id)
        if not folder.has_record(record.pair_id):
            target = self.redis.hget(self.key(job_id), "target")
            if target is not None and record.status is SampleStatus.ACCEPTED:
                slot = int(self._claim_slot(keys=[self.key(job_id, "slots")], args=[record.pair_id]))
                if slot > int(target):
                    record = surplus(record)
            folder.create_record(record)  # a racing duplicate keeps the first
        counted = self.count(job_id, folder.record(record.pair_id))
        folder.clear_steps(record.pair_id)
        return counted

    def count(self, job_id: str, record: SampleRecord) -> bool:
        if not self.redis.sadd(self.key(job_id, "counted"), record.pair_id):
            return False  # already counted: a redelivered task
        self.progress.remove(self.key(job_id), record.pair_id)
        accepted = record.status is SampleStatus.ACCEPTED
        pipe = self.redis.pipeline()
        pipe.hincrby(self.key(job_id), "done", 1)
        pipe.hincrby(self.key(job_id), "accepted" if accepted else "rejected", 1)
        pipe.hincrbyfloat(self.key(job_id), "spent_seconds", service_seconds(record))
        pipe.hincrby(self.key(job_id, "funnel"), record.outcome, 1)
        self.stats.count_outcome(pipe, record)
        pipe.hset(self.key(job_id), "updated", time.time())
        pipe.hmget(self.key(job_id), ["state", "total", "target", "accepted"])
        results = pipe.execute()
        done, (state, total, target, accepted_so_far) = results[0], results[-1]
        self.event(
            job_id,
            {"type": "pair", "pair_id": record.pair_id, "status": record.status.value, "reason": record.outcome},
        )
        if state == JobState.QUEUED.value:
            self.redis.hset(self.key(job_id), "state", JobState.RUNNING.value)
        if state in FINAL_STATES:
            return True
        if target is not None and int(accepted_so_far or 0) >= int(target):
            self.stop(job_id, "target_reached")
        elif target is None and int(done) >= int(total or 0):
            self.stop(job_id, None)
        return True

    def _end(self, job_id: str) -> bool:
        """Claim the job's end: True for the one caller (finishing or cancelling) that ends it."""
        return bool(self.redis.hsetnx(self.key(job_id), "ended", time.time()))

    def _ended(self, job_id: str) -> None:
        """What every end does: no pair is anywhere any more, and the job stops counting against its key."""
        self.progress.clear(self.key(job_id))
        self.admissions.release(self.owner(job_id), job_id)

    def stop(self, job_id: str, reason: str | None) -> None:
        """The job is done: every pair finished, or (with a target) the target or a budget was reached. Once:
        pairs finishing together may all see the target reached, but only the first ends the job."""
        if not self._end(job_id):
            return
        mapping: dict[str, Any] = {"state": JobState.DONE.value, "updated": time.time()}
        if reason is not None:
            mapping["stopped"] = reason
        self.redis.hset(self.key(job_id), mapping=mapping)
        self._ended(job_id)
        self.event(job_id, {"type": "done", **({"stopped": reason} if reason else {})})

    def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job that has not ended, durably: the store's ``cancelled.json`` is written before Redis is
        told, so a Redis restart cannot bring the job back. A finished job stays finished (`FINISHED`); a
        cancelled one stays cancelled (`ALREADY`)."""
        status = self.status(job_id)
        if status is None:
            return CancelOutcome.MISSING
        if status.state is JobState.CANCELLED:
            return CancelOutcome.ALREADY
        if status.state is JobState.DONE:
            return CancelOutcome.FINISHED
        folder = self.folder(job_id)
        folder.mark_cancelled()
        if not self._end(job_id):  # it ended in between: by finishing, or another cancel
            if self.redis.hget(self.key(job_id), "state") == JobState.CANCELLED.value:
                return CancelOutcome.ALREADY
            folder.unmark_cancelled()
            return CancelOutcome.FINISHED
        self.redis.hset(self.key(job_id), mapping={"state": JobState.CANCELLED.value, "updated": time.time()})
        self._ended(job_id)
        self.event(job_id, {"type": "cancelled"})
        return CancelOutcome.CANCELLED

    def is_stopped(self, job_id: str) -> bool:
        """Cancelled, or done before every planned pair ran (a target reached): no more work for it. With its
        progress lost from Redis, the store says whether it was cancelled."""
        state = self.redis.hget(self.key(job_id), "state")
        if state is None:
            return self.folder(job_id).is_cancelled()
        return state in FINAL_STATES

    def lost(self, job_id: str) -> bool:
        """Redis has no (complete) progress for this job: it was flushed or restarted since the job began."""
        return not self.redis.hexists(self.key(job_id), "total")

    def being_created(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.key(job_id, "claim"))) and self.lost(job_id)

    def status(self, job_id: str) -> JobStatus | None:
        """Progress from Redis (a few small reads, whatever the job's size); when Redis lost it, the same
        numbers read from the store (nothing written: restoring the job is the reconciler's work)."""
        values = self.redis.hgetall(self.key(job_id))
        if "total" not in values:
            return self._status_from_store(job_id)
        funnel = {key: int(value) for key, value in self.redis.hgetall(self.key(job_id, "funnel")).items()}
        state = JobState(values["state"])
        return JobStatus(
            id=job_id,
            state=state,
            total=int(values["total"]),
            done=int(values["done"]),
            accepted=int(values["accepted"]),
            rejected=int(values["rejected"]),
            funnel=funnel,
            stages={} if state.value in FINAL_STATES else self.progress.counts(self.key(job_id)),
            target_accepted=int(values["target"]) if "target" in values else None,
            rounds=int(values.get("rounds", 1)),
            stopped=values.get("stopped"),
            created=float(values["created"]),
            updated=float(values["updated"]),
        )

    def _status_from_store(self, job_id: str) -> JobStatus | None:
        manifest = self.manifest(job_id)
        if manifest is None:
            return None
        records = self.records(job_id)
        funnel = Counter(record.outcome for record in records)
        total = self.planned_total(manifest, len(self.planned_pairs(job_id)))
        finished = self.finished(manifest, records, total)
        state = (
            JobState.CANCELLED
            if self.folder(job_id).is_cancelled()
            else JobState.DONE
            if finished
            else JobState.RUNNING
        )
        return JobStatus(
            id=job_id,
            state=state,
            target_accepted=manifest.request.target_accepted,
            total=total,
            done=len(records),
            accepted=funnel.get("accepted", 0),
            rejected=len(records) - funnel.get("accepted", 0),
            funnel=dict(funnel),
            created=manifest.created,
            updated=time.time(),
        )

    @staticmethod
    def finished(manifest: JobManifest, records: Sequence[SampleRecord], total: int) -> bool:
        target = manifest.request.target_accepted
        if target is None:
            return len(records) >= total
        return sum(record.status is SampleStatus.ACCEPTED for record in records) >= target

    def owner(self, job_id: str) -> str | None:
        """Who created the job: from Redis (one small read), else from the manifest."""
        owner = self.redis.hget(self.key(job_id), "owner")
        if owner is None:
            manifest = self.manifest(job_id)
            return None if manifest is None else manifest.owner
        return str(owner)

    # leases of running steps (spotdiff.jobs.progress)
    def enter(self, job_id: str, steps: Mapping[str, Stage], *, force: bool = False) -> None:
        """Each pair now waits for (or runs) its step: the per-stage counts of the job's progress."""
        by_step: dict[Stage, list[str]] = {}
        for pair_id, step in steps.items():
            by_step.setdefault(step, []).append(pair_id)
        for step, pair_ids in by_step.items():
            self.progress.move(self.key(job_id), pair_ids, step, force=force)

    def event(self, job_id: str, fields: dict[str, Any]) -> None:
        self.event_log.add(self.key(job_id, "events"), fields)

    def events(self, job_id: str, after: str = "0", block_ms: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        return self.event_log.read(self.key(job_id, "events"), after, block_ms)

    def job_ids(self) -> list[str]:
        """Every job the artifact store knows, for the reconciler."""
        return sorted(name for name in self.storage.names("jobs") if is_valid_id(name))
