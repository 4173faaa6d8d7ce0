"""Job state: progress in Redis, truth in the artifact store.

Each job keeps its manifest and one record per finished pair in the artifact store
(``jobs/<id>/manifest.json``, ``jobs/<id>/records/<pair>.json``), and, while a pair is under way, its state
after each step (``jobs/<id>/steps/<pair>/<step>.json``). A step's state, or the record, is written before its
task is acknowledged, so a redelivered task finds it and moves on. Redis holds the counters, the funnel, the
step each unfinished pair waits for and an event stream per job; if Redis loses them, ``reconcile`` rebuilds
them from the store and names the pairs still to run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import redis
from pydantic import TypeAdapter

from spotdiff.imgdiff.rounds import next_round, round_pairs
from spotdiff.pipeline import STEPS, PairRun, next_step
from spotdiff.protocol import CaptionPair, Rejection, SampleRecord, SampleStatus, Stage
from spotdiff.protocol.jobs import JobManifest, JobState, JobStatus
from spotdiff.report import funnel_key
from spotdiff.storage import ArtifactStore

PREFIX = "spotdiff:job:"
EVENTS_MAXLEN = 10_000
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


class JobStore:
    def __init__(self, client: redis.Redis, storage_url: str) -> None:
        self.redis: Any = client  # decode_responses=True: str in, str out (redis-py's stubs say bytes | str)
        self.storage_url = storage_url.rstrip("/")
        self._claim_slot = self.redis.register_script(_CLAIM_SLOT)

    @classmethod
    def from_url(cls, redis_url: str, storage_url: str) -> JobStore:
        return cls(redis.Redis.from_url(redis_url, decode_responses=True), storage_url)

    # the artifact store: the durable truth
    def artifacts(self, job_id: str) -> ArtifactStore:
        return ArtifactStore(f"{self.storage_url}/jobs/{job_id}")

    def manifest(self, job_id: str) -> JobManifest | None:
        store = self.artifacts(job_id)
        if not store.exists("manifest.json"):
            return None
        return JobManifest.model_validate_json(store.get_bytes("manifest.json"))

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

    def resume_step(self, job_id: str, pair_id: str) -> Stage:
        """Where an unfinished pair goes on: after the last step whose state is in the store."""
        for step in reversed(STEPS):
            if self.has_step(job_id, pair_id, step):
                return next_step(step) or step
        return STEPS[0]

    def entered(self, job_id: str, steps: Mapping[str, Stage]) -> None:
        """Each pair now waits for (or runs) its step: the per-stage counts of the job's progress."""
        if steps:
            self.redis.hset(self.key(job_id, "stages"), mapping={pair: step.value for pair, step in steps.items()})

    def round_key(self, number: int) -> str:
        return f"rounds/{number}.json"

    def rounds(self, job_id: str) -> list[list[CaptionPair]]:
        """The pairs of each round planned so far (jobs with a target; the others have none)."""
        store = self.artifacts(job_id)
        found: list[list[CaptionPair]] = []
        while store.exists(self.round_key(len(found))):
            found.append(_PAIR_LIST.validate_json(store.get_bytes(self.round_key(len(found)))))
        return found

    def planned_pairs(self, job_id: str, manifest: JobManifest | None = None) -> list[CaptionPair]:
        """Every pair the job runs: the submitted ones, or for a job with a target, its rounds so far."""
        manifest = manifest or self.manifest(job_id)
        if manifest is None:
            return []
        if manifest.request.target_accepted is None:
            return list(manifest.request.pairs)
        return [pair for round_ in self.rounds(job_id) for pair in round_]

    def records(self, job_id: str) -> list[SampleRecord]:
        return [self.record(job_id, pair.id) for pair in self.planned_pairs(job_id) if self.has_record(job_id, pair.id)]

    # Redis: progress
    def key(self, job_id: str, part: str = "") -> str:
        return f"{PREFIX}{job_id}{':' + part if part else ''}"

    def create(self, manifest: JobManifest) -> list[CaptionPair]:
        """Write the manifest (the truth) and, for a job with a target, its first round; then the progress
        counters. Returns the pairs to enqueue."""
        self.artifacts(manifest.id).put_text("manifest.json", manifest.model_dump_json())
        request = manifest.request
        pairs = list(request.pairs)
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
            self.artifacts(manifest.id).put_text(self.round_key(0), _PAIR_LIST.dump_json(pairs).decode())
        self._reset(manifest, total=len(pairs), rounds=1, done=0, accepted=0, state=JobState.QUEUED)
        self.event(manifest.id, {"type": "created", "total": len(pairs)})
        return pairs

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
            store.put_text(key, record.model_dump_json())
        counted = self.count(job_id, self.record(job_id, record.pair_id))
        steps = store.path(f"steps/{record.pair_id}")
        if store.fs.exists(steps):
            store.fs.rm(steps, recursive=True)  # the record holds all of it now
        return counted

    def count(self, job_id: str, record: SampleRecord) -> bool:
        if not self.redis.sadd(self.key(job_id, "counted"), record.pair_id):
            return False  # already counted: a redelivered task
        accepted = record.status is SampleStatus.ACCEPTED
        pipe = self.redis.pipeline()
        pipe.hdel(self.key(job_id, "stages"), record.pair_id)
        pipe.hincrby(self.key(job_id), "done", 1)
        pipe.hincrby(self.key(job_id), "accepted" if accepted else "rejected", 1)
        pipe.hincrbyfloat(self.key(job_id), "spent_seconds", service_seconds(record))
        pipe.hincrby(self.key(job_id, "funnel"), funnel_key(record), 1)
        pipe.hincrby(STATS_OUTCOMES, funnel_key(record), 1)
        pipe.hset(self.key(job_id), "updated", time.time())
        pipe.hmget(self.key(job_id), ["state", "total", "target", "accepted"])
        results = pipe.execute()
        done, (state, total, target, accepted_so_far) = results[1], results[-1]
        self.event(
            job_id,
            {"type": "pair", "pair_id": record.pair_id, "status": record.status.value, "reason": funnel_key(record)},
        )
        if state == JobState.QUEUED.value:
            self.redis.hset(self.key(job_id), "state", JobState.RUNNING.value)
        if state in (JobState.CANCELLED.value, JobState.DONE.value):
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

    def stop(self, job_id: str, reason: str | None) -> None:
        """The job is done: every pair finished, or (with a target) the target or a budget was reached. Once:
        pairs finishing together may all see the target reached, but only the first ends the job."""
        if not self.redis.hsetnx(self.key(job_id), "ended", time.time()):
            return
        mapping: dict[str, Any] = {"state": JobState.DONE.value, "updated": time.time()}
        if reason is not None:
            mapping["stopped"] = reason
        self.redis.hset(self.key(job_id), mapping=mapping)
        self.redis.delete(self.key(job_id, "stages"))  # what still waits will not run
        self.event(job_id, {"type": "done", **({"stopped": reason} if reason else {})})

    def plan_next_round(self, job_id: str) -> list[CaptionPair]:
        """For a job with a target whose planned pairs have all finished short of it: the next round's pairs
        (written to the store, counted in the total; the caller enqueues them), or none when a budget stops the
        job. Idempotent: a round is planned once, whoever asks."""
        values = self.redis.hgetall(self.key(job_id))
        if "target" not in values or values.get("state") in (JobState.CANCELLED.value, JobState.DONE.value):
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
        if not self.redis.hsetnx(self.key(job_id, "planned"), str(number), decision.numbers["size"]):
            return []  # another task planned this round
        pairs = round_pairs(job_id, manifest.request.pairs, total, decision.numbers["size"])
        self.artifacts(job_id).put_text(self.round_key(number), _PAIR_LIST.dump_json(pairs).decode())
        pipe = self.redis.pipeline()
        pipe.hincrby(self.key(job_id), "total", len(pairs))
        pipe.hset(self.key(job_id), mapping={"rounds": number + 1, "updated": time.time()})
        pipe.hset(self.key(job_id, "stages"), mapping={pair.id: STEPS[0].value for pair in pairs})
        pipe.execute()
        self.event(job_id, {"type": "round", "round": number + 1, "size": len(pairs), **decision.numbers})
        return pairs

    def event(self, job_id: str, fields: dict[str, Any]) -> None:
        values = {key: str(value) for key, value in fields.items()}
        self.redis.xadd(self.key(job_id, "events"), values, maxlen=EVENTS_MAXLEN, approximate=True)

    def events(self, job_id: str, after: str = "0", block_ms: int = 1000) -> list[tuple[str, dict[str, str]]]:
        answer = self.redis.xread({self.key(job_id, "events"): after}, block=block_ms, count=100)
        return [(event_id, fields) for _, entries in answer for event_id, fields in entries]

    def cancel(self, job_id: str) -> None:
        self.redis.hset(self.key(job_id), mapping={"state": JobState.CANCELLED.value, "updated": time.time()})
        self.redis.delete(self.key(job_id, "stages"))  # what still waits will not run
        self.event(job_id, {"type": "cancelled"})

    def is_cancelled(self, job_id: str) -> bool:
        return bool(self.redis.hget(self.key(job_id), "state") == JobState.CANCELLED.value)

    def is_stopped(self, job_id: str) -> bool:
        """Cancelled, or done before every planned pair ran (a target reached): no more work for it."""
        return self.redis.hget(self.key(job_id), "state") in (JobState.CANCELLED.value, JobState.DONE.value)

    def lost(self, job_id: str) -> bool:
        """Redis has no (complete) progress for this job: it was flushed or restarted since the job began."""
        return not self.redis.hexists(self.key(job_id), "total")

    def status(self, job_id: str) -> JobStatus | None:
        """Progress from Redis; when Redis lost it, the same numbers read from the store (nothing written:
        restoring the job, queue included, is the reconciler's work)."""
        values = self.redis.hgetall(self.key(job_id))
        if "total" not in values:
            return self._status_from_store(job_id)
        funnel = {key: int(value) for key, value in self.redis.hgetall(self.key(job_id, "funnel")).items()}
        stages = Counter(self.redis.hvals(self.key(job_id, "stages")))
        return JobStatus(
            id=job_id,
            state=JobState(values["state"]),
            total=int(values["total"]),
            done=int(values["done"]),
            accepted=int(values["accepted"]),
            rejected=int(values["rejected"]),
            funnel=funnel,
            stages=dict(stages),
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
        return JobStatus(
            id=job_id,
            state=JobState.DONE if len(records) >= total else JobState.RUNNING,
            target_accepted=manifest.request.target_accepted,
            total=total,
            done=len(records),
            accepted=funnel.get("accepted", 0),
            rejected=len(records) - funnel.get("accepted", 0),
            funnel=dict(funnel),
            created=manifest.created,
            updated=time.time(),
        )

    def owner(self, job_id: str) -> str | None:
        owner = self.redis.hget(self.key(job_id), "owner")
        if owner is None:
            manifest = self.manifest(job_id)
            return None if manifest is None else manifest.owner
        return str(owner)

    def reconcile(self, job_id: str) -> list[CaptionPair]:
        """Rebuild progress from the store after Redis lost it; return the pairs that still have to run."""
        manifest = self.manifest(job_id)
        if manifest is None:
            return []
        cancelled = self.is_cancelled(job_id)
        planned = self.planned_pairs(job_id, manifest)
        records = self.records(job_id)
        funnel = Counter(funnel_key(record) for record in records)
        accepted = [record.pair_id for record in records if record.status is SampleStatus.ACCEPTED]
        pipe = self.redis.pipeline()
        pipe.delete(*(self.key(job_id, part) for part in ("counted", "funnel", "stages", "slots", "planned")))
        if records:
            pipe.sadd(self.key(job_id, "counted"), *(record.pair_id for record in records))
            pipe.hset(self.key(job_id, "funnel"), mapping=dict(funnel))
        if accepted:
            pipe.hset(self.key(job_id, "slots"), mapping={pair: slot for slot, pair in enumerate(accepted, 1)})
        pipe.execute()
        target = manifest.request.target_accepted
        rounds = max(1, len(self.rounds(job_id)))
        finished = len(records) >= len(planned) if target is None else len(accepted) >= target
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
        if state is not JobState.RUNNING:
            return []
        done = {record.pair_id for record in records}
        return [pair for pair in planned if pair.id not in done]

    def job_ids(self) -> list[str]:
        """Every job the artifact store knows, for the reconciler."""
        root = ArtifactStore(f"{self.storage_url}/jobs")
        try:
            names = root.fs.ls(root.root, detail=False)
        except FileNotFoundError:
            return []
        return [str(name).rstrip("/").rsplit("/", 1)[-1] for name in names]
