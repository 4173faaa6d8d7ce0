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

from spotdiff.pipeline import STEPS, PairRun, next_step
from spotdiff.protocol import CaptionPair, SampleRecord, SampleStatus, Stage
from spotdiff.protocol.jobs import JobManifest, JobState, JobStatus
from spotdiff.storage import ArtifactStore

PREFIX = "spotdiff:job:"
EVENTS_MAXLEN = 10_000


def funnel_key(record: SampleRecord) -> str:
    if record.rejection is None:
        return "accepted"
    return f"{record.rejection.stage.value}:{record.rejection.reason}"


class JobStore:
    def __init__(self, client: redis.Redis, storage_url: str) -> None:
        self.redis: Any = client  # decode_responses=True: str in, str out (redis-py's stubs say bytes | str)
        self.storage_url = storage_url.rstrip("/")

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

    def records(self, job_id: str) -> list[SampleRecord]:
        manifest = self.manifest(job_id)
        if manifest is None:
            return []
        return [self.record(job_id, pair.id) for pair in manifest.request.pairs if self.has_record(job_id, pair.id)]

    # Redis: progress
    def key(self, job_id: str, part: str = "") -> str:
        return f"{PREFIX}{job_id}{':' + part if part else ''}"

    def create(self, manifest: JobManifest) -> None:
        """Write the manifest first (the truth), then the progress counters."""
        self.artifacts(manifest.id).put_text("manifest.json", manifest.model_dump_json())
        self._reset(manifest, done=0, accepted=0, state=JobState.QUEUED)
        self.event(manifest.id, {"type": "created", "total": len(manifest.request.pairs)})

    def _reset(self, manifest: JobManifest, *, done: int, accepted: int, state: JobState) -> None:
        now = time.time()
        self.redis.hset(
            self.key(manifest.id),
            mapping={
                "state": state.value,
                "total": len(manifest.request.pairs),
                "done": done,
                "accepted": accepted,
                "rejected": done - accepted,
                "created": manifest.created,
                "updated": now,
                "owner": manifest.owner,
            },
        )

    def finish_pair(self, job_id: str, record: SampleRecord) -> bool:
        """Keep a pair's record (if it is the first) and count it once; True when this call counted it."""
        store = self.artifacts(job_id)
        key = f"records/{record.pair_id}.json"
        if not store.exists(key):
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
        pipe.hincrby(self.key(job_id, "funnel"), funnel_key(record), 1)
        pipe.hset(self.key(job_id), "updated", time.time())
        pipe.execute()
        self.event(
            job_id,
            {"type": "pair", "pair_id": record.pair_id, "status": record.status.value, "reason": funnel_key(record)},
        )
        state = self.redis.hget(self.key(job_id), "state")
        if state == JobState.QUEUED.value:
            self.redis.hset(self.key(job_id), "state", JobState.RUNNING.value)
        done, total = (int(v or 0) for v in self.redis.hmget(self.key(job_id), ["done", "total"]))
        if done >= total and state != JobState.CANCELLED.value:
            self.redis.hset(self.key(job_id), "state", JobState.DONE.value)
            self.event(job_id, {"type": "done"})
        return True

    def event(self, job_id: str, fields: dict[str, Any]) -> None:
        values = {key: str(value) for key, value in fields.items()}
        self.redis.xadd(self.key(job_id, "events"), values, maxlen=EVENTS_MAXLEN, approximate=True)

    def events(self, job_id: str, after: str = "0", block_ms: int = 1000) -> list[tuple[str, dict[str, str]]]:
        answer = self.redis.xread({self.key(job_id, "events"): after}, block=block_ms, count=100)
        return [(event_id, fields) for _, entries in answer for event_id, fields in entries]

    def cancel(self, job_id: str) -> None:
        self.redis.hset(self.key(job_id), mapping={"state": JobState.CANCELLED.value, "updated": time.time()})
        self.event(job_id, {"type": "cancelled"})

    def is_cancelled(self, job_id: str) -> bool:
        return bool(self.redis.hget(self.key(job_id), "state") == JobState.CANCELLED.value)

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
            created=float(values["created"]),
            updated=float(values["updated"]),
        )

    def _status_from_store(self, job_id: str) -> JobStatus | None:
        manifest = self.manifest(job_id)
        if manifest is None:
            return None
        records = self.records(job_id)
        funnel = Counter(funnel_key(record) for record in records)
        total = len(manifest.request.pairs)
        return JobStatus(
            id=job_id,
            state=JobState.DONE if len(records) >= total else JobState.RUNNING,
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
        """Rebuild progress from the records after Redis lost it; return the pairs that still have to run."""
        manifest = self.manifest(job_id)
        if manifest is None:
            return []
        cancelled = self.is_cancelled(job_id)
        records = self.records(job_id)
        funnel = Counter(funnel_key(record) for record in records)
        accepted = funnel.get("accepted", 0)
        pipe = self.redis.pipeline()
        pipe.delete(self.key(job_id, "counted"), self.key(job_id, "funnel"), self.key(job_id, "stages"))
        if records:
            pipe.sadd(self.key(job_id, "counted"), *(record.pair_id for record in records))
            pipe.hset(self.key(job_id, "funnel"), mapping=dict(funnel))
        pipe.execute()
        total = len(manifest.request.pairs)
        state = JobState.CANCELLED if cancelled else JobState.DONE if len(records) >= total else JobState.RUNNING
        self._reset(manifest, done=len(records), accepted=accepted, state=state)
        finished = {record.pair_id for record in records}
        return [] if cancelled else [pair for pair in manifest.request.pairs if pair.id not in finished]

    def job_ids(self) -> list[str]:
        """Every job the artifact store knows, for the reconciler."""
        root = ArtifactStore(f"{self.storage_url}/jobs")
        try:
            names = root.fs.ls(root.root, detail=False)
        except FileNotFoundError:
            return []
        return [str(name).rstrip("/").rsplit("/", 1)[-1] for name in names]
