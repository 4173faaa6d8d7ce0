"""Job state: progress in Redis, truth in the artifact store.

Each job keeps its manifest and one record per finished pair in the artifact store
(``jobs/<id>/manifest.json``, ``jobs/<id>/records/<pair>.json``), a ``cancelled.json`` once it is cancelled,
and, while a pair is under way, its state after each step (``jobs/<id>/steps/<pair>/<step>.json``). A step's
state, or the record, is written before its task is acknowledged, so a redelivered task finds it and moves on.
Redis holds the counters, the funnel, where each unfinished pair is (`spotdiff.jobs.progress`), which rounds of
pairs were planned and sent, and an event stream per job; if Redis loses them, ``reconcile`` rebuilds them from
the store and names the pairs still to run.

A job is created once: the first caller takes a Redis claim on its id and writes the manifest with an
exclusive create; every other caller finds the claim or the manifest and is told what exists.
"""

from __future__ import annotations

import json
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from pydantic import TypeAdapter

from spotdiff.imgdiff.rounds import next_round, round_pairs
from spotdiff.jobs.admission import Admissions
from spotdiff.jobs.progress import PairProgress
from spotdiff.pipeline import STEPS, PairRun, next_step
from spotdiff.protocol import CaptionPair, Rejection, SampleRecord, SampleStatus, Stage
from spotdiff.protocol.ids import check_id, is_valid_id
from spotdiff.protocol.jobs import JobManifest, JobState, JobStatus
from spotdiff.report import funnel_key
from spotdiff.storage import ArtifactStore

PREFIX = "spotdiff:job:"
EVENTS_MAXLEN = 10_000
MANIFEST = "manifest.json"
CANCELLED = "cancelled.json"
CLAIM_TTL_S = 60  # a creator that died before writing its job's progress gives the id back after this
SEND_GRACE_S = 60.0  # a round planned this long ago and still not sent is sent by the reconciler
MANIFESTS_KEPT = 32
REDIS_CONNECT_TIMEOUT_S = 5  # an unreachable Redis is an error in seconds, not a hang
FINAL = tuple(state.value for state in JobState if state.final)  # as Redis holds them
# Totals over every job, for the metrics (gateway/metrics.py reads them)
STATS_OUTCOMES = "spotdiff:stats:outcomes"
STATS_STEP_SECONDS = "spotdiff:stats:step_seconds"
STATS_STEP_RUNS = "spotdiff:stats:step_runs"
STATS_QUEUE_WAIT_SECONDS = "spotdiff:stats:queue_wait_seconds"
STATS_QUEUE_WAITS = "spotdiff:stats:queue_waits"
_PAIR_LIST = TypeAdapter(list[CaptionPair])
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


def surplus(record: SampleRecord, target: int) -> SampleRecord:
    """An accepted pair past the job's target: on record, not a sample."""
    rejection = Rejection(
        stage=Stage.TARGET,
        reason="target_reached",
        message=f"accepted after the job already had its {target} samples",
        numbers={"target_accepted": target},
    )
    return record.model_copy(update={"status": SampleStatus.REJECTED, "rejection": rejection})


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

    def manifest(self, job_id: str) -> JobManifest | None:
        """A job's manifest (kept in memory once read: it never changes after the job is created)."""
        if job_id in self._manifests:
            self._manifests.move_to_end(job_id)
            return self._manifests[job_id]
        store = self.artifacts(job_id)
        if not store.exists(MANIFEST):
            return None
        manifest = JobManifest.model_validate_json(store.get_bytes(MANIFEST))
        self._manifests[job_id] = manifest
        if len(self._manifests) > MANIFESTS_KEPT:
            self._manifests.popitem(last=False)
        return manifest

    def exists(self, job_id: str) -> bool:
        return self.artifacts(job_id).exists(MANIFEST)

    def has_record(self, job_id: str, pair_id: str) -> bool:
        return self.artifacts(job_id).exists(f"records/{pair_id}.json")

    def record(self, job_id: str, pair_id: str) -> SampleRecord:
        return SampleRecord.model_validate_json(self.artifacts(job_id).get_bytes(f"records/{pair_id}.json"))

    def step_key(self, pair_id: str, step: Stage) -> str:
        return f"steps/{pair_id}/{step.value}.json"

    def has_step(self, job_id: str, pair_id: str, step: Stage) -> bool:
        return self.artifacts(job_id).exists(self.step_key(pair_id, step))

    def save_step(self, job_id: str, run: PairRun, step: Stage) -> None:
        """The pair's state after ``step``: what the next step's task starts from."""
        self.artifacts(job_id).put_text(self.step_key(run.pair.id, step), run.model_dump_json())

    def load_step(self, job_id: str, pair_id: str, step: Stage) -> PairRun:
        return PairRun.model_validate_json(self.artifacts(job_id).get_bytes(self.step_key(pair_id, step)))

    def last_state(self, job_id: str, pair: CaptionPair) -> PairRun:
        """What is known of an unfinished pair: its state after the last step in the store, or nothing yet."""
        for step in reversed(STEPS):
            if self.has_step(job_id, pair.id, step):
                return self.load_step(job_id, pair.id, step)
        return PairRun(pair=pair)

    def resume_step(self, job_id: str, pair_id: str) -> Stage:
        """Where an unfinished pair goes on: after the last step whose state is in the store."""
        for step in reversed(STEPS):
            if self.has_step(job_id, pair_id, step):
                return next_step(step) or step
        return STEPS[0]

    def round_key(self, number: int) -> str:
        return f"rounds/{number}.json"

    def rounds(self, job_id: str) -> list[list[CaptionPair]]:
        """The pairs of each round planned so far (jobs with a target; the others have none)."""
        store = self.artifacts(job_id)
        found: list[list[CaptionPair]] = []
        while store.exists(self.round_key(len(found))):
            found.append(_PAIR_LIST.validate_json(store.get_bytes(self.round_key(len(found)))))
        return found

    def round_of(self, job_id: str, number: int) -> list[CaptionPair]:
        """The pairs of round ``number`` (a job without a target has one round, its submitted pairs). Only the
        pairs are read, not the whole manifest: a worker that cannot read some other part of it (a setting from
        a newer gateway, say) still sends each pair on, and each pair then ends with a record that says why."""
        store = self.artifacts(job_id)
        request = json.loads(store.get_bytes(MANIFEST))["request"]
        if request.get("target_accepted") is None:
            return _PAIR_LIST.validate_python(request["pairs"]) if number == 0 else []
        if not store.exists(self.round_key(number)):
            return []
        return _PAIR_LIST.validate_json(store.get_bytes(self.round_key(number)))

    def planned_pairs(self, job_id: str, manifest: JobManifest | None = None) -> list[CaptionPair]:
        """Every pair the job runs: the submitted ones, or for a job with a target, its rounds so far."""
        manifest = manifest or self.manifest(job_id)
        if manifest is None:
            return []
        if manifest.request.target_accepted is None:
            return list(manifest.request.pairs)
        return [pair for round_ in self.rounds(job_id) for pair in round_]

    def finished_ids(self, job_id: str) -> set[str]:
        """The pairs with a record, from one listing of the records folder."""
        names = self.artifacts(job_id).names("records")
        return {name.removesuffix(".json") for name in names if name.endswith(".json")}

    def records(self, job_id: str) -> list[SampleRecord]:
        return self.records_page(job_id, 0, None)[0]

    def iter_records(self, job_id: str) -> Iterator[SampleRecord]:
        """The finished pairs' records in the job's order, read one at a time (an export of any size)."""
        finished = self.finished_ids(job_id)
        for pair in self.planned_pairs(job_id):
            if pair.id in finished:
                yield self.record(job_id, pair.id)

    def records_page(self, job_id: str, offset: int, limit: int | None) -> tuple[list[SampleRecord], int]:
        """The finished pairs' records in the job's order, ``limit`` from ``offset`` (only those are read), and
        how many there are in all."""
        finished = self.finished_ids(job_id)
        ordered = [pair.id for pair in self.planned_pairs(job_id) if pair.id in finished]
        page = ordered[offset:] if limit is None else ordered[offset : offset + limit]
        return [self.record(job_id, pair_id) for pair_id in page], len(ordered)

    def is_cancelled_in_store(self, job_id: str) -> bool:
        return self.artifacts(job_id).exists(CANCELLED)

    # Redis: progress
    def key(self, job_id: str, part: str = "") -> str:
        return f"{PREFIX}{job_id}{':' + part if part else ''}"

    def claim(self, job_id: str, claim: Claim) -> Claim | None:
        """Take the id for ``claim``; None when this caller now holds it, else who holds or created it."""
        for _ in range(3):  # a claim that expires between the two commands: ask again
            if self.redis.set(self.key(job_id, "claim"), claim.encode(), nx=True, ex=CLAIM_TTL_S):
                manifest = self.manifest(job_id)  # Redis may have lost an older claim: the store is the truth
                return None if manifest is None else Claim(manifest.owner, manifest.fingerprint)
            held = self.redis.get(self.key(job_id, "claim"))
            if held is not None:
                return Claim.decode(held)
        raise redis.exceptions.ConnectionError("the job id's claim kept changing hands")

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
        caller has them sent (`workers.celery_app.send_round`)."""
        store = self.artifacts(manifest.id)
        if not store.create_bytes(MANIFEST, manifest.model_dump_json(exclude_none=True).encode()):
            return None
        request = manifest.request
        pairs: list[CaptionPair] = list(request.pairs)
        if request.target_accepted is not None:
            first = next_round(
                target=request.target_accepted,
                accepted=0,
                finished=0,
                planned=0,
                budget_pairs=manifest.budget_pairs or len(pairs),
                spent_seconds=0.0,
                budget_seconds=request.budget_seconds,
            )
            pairs = round_pairs(manifest.id, request.pairs, 0, first.numbers["size"])
            store.put_text(self.round_key(0), _PAIR_LIST.dump_json(pairs).decode())
        self._reset(manifest, total=len(pairs), rounds=1, done=0, accepted=0, state=JobState.QUEUED)
        self.redis.hset(self.key(manifest.id, "planned"), 0, time.time())
        self.progress.move(self.key(manifest.id), (pair.id for pair in pairs), STEPS[0])
        self.event(manifest.id, {"type": "created", "total": len(pairs)})
        return pairs

    def sent(self, job_id: str, number: int) -> None:
        """Every pair of round ``number`` is on its queue."""
        self.redis.hset(self.key(job_id, "sent"), number, time.time())

    def sending(self, job_id: str, number: int) -> None:
        """Round ``number`` is being sent: one more chunk of its pairs is on its queue."""
        self.redis.hset(self.key(job_id, "sending"), number, time.time())

    def unsent_rounds(self, job_id: str, grace_s: float = SEND_GRACE_S) -> list[int]:
        """Rounds planned (or last sent a chunk of) more than ``grace_s`` ago and never all sent: whoever was
        sending them died."""
        planned = self.redis.hgetall(self.key(job_id, "planned"))
        sending = self.redis.hgetall(self.key(job_id, "sending"))
        sent = set(self.redis.hkeys(self.key(job_id, "sent")))
        now = time.time()
        return sorted(
            int(number)
            for number, at in planned.items()
            if number not in sent and now - max(float(at), float(sending.get(number, 0))) > grace_s
        )

    def _reset(
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
        self.redis.hset(self.key(manifest.id), mapping=mapping)

    def finish_pair(self, job_id: str, record: SampleRecord) -> bool:
        """Keep a pair's record (if it is the first) and count it once; True when this call counted it.

        In a job with a target, an accepted pair takes the next accepted slot (atomically, and the same slot
        again if its task is redelivered); past the target it is kept as a surplus rejection, so that the job
        ends with exactly its target of accepted samples however many pairs were in flight."""
        store = self.artifacts(job_id)
        key = f"records/{record.pair_id}.json"
        if not store.exists(key):
            target = self.redis.hget(self.key(job_id), "target")
            if target is not None and record.status is SampleStatus.ACCEPTED:
                slot = int(self._claim_slot(keys=[self.key(job_id, "slots")], args=[record.pair_id]))
                if slot > int(target):
                    record = surplus(record, int(target))
            store.create_bytes(key, record.model_dump_json().encode())  # a racing duplicate keeps the first
        counted = self.count(job_id, self.record(job_id, record.pair_id))
        store.remove_tree(f"steps/{record.pair_id}")  # the record holds all of it now
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
        pipe.hincrby(self.key(job_id, "funnel"), funnel_key(record), 1)
        pipe.hincrby(STATS_OUTCOMES, funnel_key(record), 1)
        pipe.hset(self.key(job_id), "updated", time.time())
        pipe.hmget(self.key(job_id), ["state", "total", "target", "accepted"])
        results = pipe.execute()
        done, (state, total, target, accepted_so_far) = results[0], results[-1]
        self.event(
            job_id,
            {"type": "pair", "pair_id": record.pair_id, "status": record.status.value, "reason": funnel_key(record)},
        )
        if state == JobState.QUEUED.value:
            self.redis.hset(self.key(job_id), "state", JobState.RUNNING.value)
        if state in FINAL:
            return True
        if target is not None and int(accepted_so_far or 0) >= int(target):
            self.stop(job_id, "target_reached")
        elif target is None and int(done) >= int(total or 0):
            self.stop(job_id, None)
        return True

    def step_ran(self, step: Stage, seconds: float) -> None:
        """A step's run time, into the totals the metrics read."""
        pipe = self.redis.pipeline()
        pipe.hincrbyfloat(STATS_STEP_SECONDS, step.value, seconds)
        pipe.hincrby(STATS_STEP_RUNS, step.value, 1)
        pipe.execute()

    def queue_waited(self, step: Stage, seconds: float) -> None:
        """How long a step's task waited in its queue, into the totals the metrics read."""
        pipe = self.redis.pipeline()
        pipe.hincrbyfloat(STATS_QUEUE_WAIT_SECONDS, step.value, seconds)
        pipe.hincrby(STATS_QUEUE_WAITS, step.value, 1)
        pipe.execute()

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
        store = self.artifacts(job_id)
        store.put_text(CANCELLED, json.dumps({"cancelled": time.time()}))
        if not self._end(job_id):  # it ended in between: by finishing, or another cancel
            if self.redis.hget(self.key(job_id), "state") == JobState.CANCELLED.value:
                return CancelOutcome.ALREADY
            store.remove_tree(CANCELLED)
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
            return self.is_cancelled_in_store(job_id)
        return state in FINAL

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
            stages={} if state.value in FINAL else self.progress.counts(self.key(job_id)),
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
        funnel = Counter(funnel_key(record) for record in records)
        total = len(self.planned_pairs(job_id, manifest))
        finished = self._finished(manifest, records, total)
        state = (
            JobState.CANCELLED
            if self.is_cancelled_in_store(job_id)
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
    def _finished(manifest: JobManifest, records: Sequence[SampleRecord], total: int) -> bool:
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

    def plan_next_round(self, job_id: str) -> list[CaptionPair]:
        """For a job with a target whose planned pairs have all finished short of it: the next round's pairs
        (written to the store, counted in the total; the caller has them sent), or none when a budget stops
        the job. Idempotent: a round is planned once, whoever asks."""
        values = self.redis.hgetall(self.key(job_id))
        if "target" not in values or values.get("state") in FINAL:
            return []
        done, total, number = int(values["done"]), int(values["total"]), int(values.get("rounds", 1))
        if done < total:
            return []
        manifest = self.manifest(job_id)
        assert manifest is not None
        decision = next_round(
            target=int(values["target"]),
            accepted=int(values["accepted"]),
            finished=done,
            planned=total,
            budget_pairs=int(values["budget_pairs"]),
            spent_seconds=float(values.get("spent_seconds", 0.0)),
            budget_seconds=float(values["budget_seconds"]) if "budget_seconds" in values else None,
        )
        if not decision:
            self.stop(job_id, decision.reason)
            return []
        if not self.redis.hsetnx(self.key(job_id, "planned"), str(number), time.time()):
            return []  # another task planned this round
        pairs = round_pairs(job_id, manifest.request.pairs, total, decision.numbers["size"])
        self.artifacts(job_id).put_text(self.round_key(number), _PAIR_LIST.dump_json(pairs).decode())
        pipe = self.redis.pipeline()
        pipe.hincrby(self.key(job_id), "total", len(pairs))
        pipe.hset(self.key(job_id), mapping={"rounds": number + 1, "updated": time.time()})
        pipe.execute()
        self.progress.move(self.key(job_id), (pair.id for pair in pairs), STEPS[0])
        self.event(job_id, {"type": "round", "round": number + 1, "size": len(pairs), **decision.numbers})
        return pairs

    def latest_round(self, job_id: str) -> int:
        return int(self.redis.hget(self.key(job_id), "rounds") or 1) - 1

    def event(self, job_id: str, fields: dict[str, Any]) -> None:
        values = {key: str(value) for key, value in fields.items()}
        self.redis.xadd(self.key(job_id, "events"), values, maxlen=EVENTS_MAXLEN, approximate=True)

    def events(self, job_id: str, after: str = "0", block_ms: int = 1000) -> list[tuple[str, dict[str, str]]]:
        answer = self.redis.xread({self.key(job_id, "events"): after}, block=block_ms, count=100)
        return [(event_id, fields) for _, entries in answer for event_id, fields in entries]

    def reconcile(self, job_id: str) -> list[CaptionPair]:
        """Rebuild progress from the store after Redis lost it; return the pairs that still have to run (each
        already entered at the step it resumes from). The caller sends them, then calls `sent` for each round."""
        manifest = self.manifest(job_id)
        if manifest is None:
            return []
        cancelled = self.is_cancelled_in_store(job_id)
        planned = self.planned_pairs(job_id, manifest)
        records = self.records(job_id)
        funnel = Counter(funnel_key(record) for record in records)
        accepted = [record.pair_id for record in records if record.status is SampleStatus.ACCEPTED]
        self.progress.clear(self.key(job_id))
        pipe = self.redis.pipeline()
        parts = ("counted", "funnel", "slots", "planned", "sending", "sent")
        pipe.delete(*(self.key(job_id, part) for part in parts))
        pipe.hdel(self.key(job_id), "ended", "stopped")
        if records:
            pipe.sadd(self.key(job_id, "counted"), *(record.pair_id for record in records))
            pipe.hset(self.key(job_id, "funnel"), mapping=dict(funnel))
        if accepted:
            pipe.hset(self.key(job_id, "slots"), mapping={pair: slot for slot, pair in enumerate(accepted, 1)})
        pipe.execute()
        target = manifest.request.target_accepted
        rounds = max(1, len(self.rounds(job_id)))
        finished = self._finished(manifest, records, len(planned))
        state = JobState.CANCELLED if cancelled else JobState.DONE if finished else JobState.RUNNING
        self._reset(manifest, total=len(planned), rounds=rounds, done=len(records), accepted=len(accepted), state=state)
        spent = sum(service_seconds(record) for record in records)
        self.redis.hset(
            self.key(job_id),
            mapping={
                "spent_seconds": spent,
                **({"stopped": "target_reached"} if target is not None and finished else {}),
            },
        )
        self.redis.hset(self.key(job_id, "planned"), mapping={number: 0 for number in range(rounds)})
        if state is not JobState.RUNNING:
            self.redis.hset(self.key(job_id), "ended", time.time())
            self.admissions.release(manifest.owner, job_id)
            return []
        self.admissions.track(manifest.owner, job_id)
        done = {record.pair_id for record in records}
        missing = [pair for pair in planned if pair.id not in done]
        self.enter(job_id, {pair.id: self.resume_step(job_id, pair.id) for pair in missing}, force=True)
        return missing

    def job_ids(self) -> list[str]:
        """Every job the artifact store knows, for the reconciler."""
        return sorted(name for name in self.storage.names("jobs") if is_valid_id(name))
