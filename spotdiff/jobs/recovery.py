"""Progress rebuilt from the run folder after Redis lost it (it restarted empty, or was flushed): the store is
the truth, Redis only a faster copy of it."""

from __future__ import annotations

import time
from collections import Counter

from spotdiff.jobs.store import JobStore, service_seconds
from spotdiff.protocol import CaptionPair, SampleStatus
from spotdiff.protocol.jobs import JobState

# the Redis parts of a job that are rebuilt from scratch
_REBUILT = ("counted", "funnel", "slots", "planned", "sending", "sent")


def rebuild(store: JobStore, job_id: str) -> list[CaptionPair]:
    """Rebuild a job's progress from its folder; return the pairs that still have to run, each already entered
    at the step it resumes from (`RunFolder.resume_step`). The caller sends them, then marks every round sent."""
    manifest = store.manifest(job_id)
    if manifest is None:
        return []
    folder = store.folder(job_id)
    planned = folder.planned_pairs(manifest)
    records = store.records(job_id)
    funnel = Counter(record.outcome for record in records)
    accepted = [record.pair_id for record in records if record.status is SampleStatus.ACCEPTED]
    store.progress.clear(store.key(job_id))
    pipe = store.redis.pipeline()
    pipe.delete(*(store.key(job_id, part) for part in _REBUILT))
    pipe.hdel(store.key(job_id), "ended", "stopped")
    if records:
        pipe.sadd(store.key(job_id, "counted"), *(record.pair_id for record in records))
        pipe.hset(store.key(job_id, "funnel"), mapping=dict(funnel))
    if accepted:
        pipe.hset(store.key(job_id, "slots"), mapping={pair: slot for slot, pair in enumerate(accepted, 1)})
    pipe.execute()
    target = manifest.request.target_accepted
    rounds = max(1, len(folder.rounds()))
    total = store.planned_total(manifest, len(planned))
    finished = store.finished(manifest, records, total)
    state = JobState.CANCELLED if folder.is_cancelled() else JobState.DONE if finished else JobState.RUNNING
    store.reset(manifest, total=total, rounds=rounds, done=len(records), accepted=len(accepted), state=state)
    spent = sum(service_seconds(record) for record in records)
    store.redis.hset(
        store.key(job_id),
        mapping={"spent_seconds": spent, **({"stopped": "target_reached"} if target is not None and finished else {})},
    )
    store.redis.hset(store.key(job_id, "planned"), mapping={number: 0 for number in range(rounds)})
    if state is not JobState.RUNNING:
        store.redis.hset(store.key(job_id), "ended", time.time())
        store.admissions.release(manifest.owner, job_id)
        return []
    store.admissions.track(manifest.owner, job_id)
    store.keep_rewrite_drops(manifest)  # those whose creator died before keeping them
    done = {record.pair_id for record in records}
    missing = [pair for pair in planned if pair.id not in done]
    store.enter(job_id, {pair.id: folder.resume_step(pair.id) for pair in missing}, force=True)
    return missing
