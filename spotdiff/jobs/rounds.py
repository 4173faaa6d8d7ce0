"""A job's rounds. Every job has a round 0, its first pairs; a job with a target gets more, each sized from the
yield so far (the decision is `spotdiff.imgdiff.rounds`) and planned once, whoever asks. Redis notes which
rounds were planned, are being sent and were sent, so that a round whose sender died is sent again."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from spotdiff.imgdiff.rounds import next_round, round_pairs
from spotdiff.pipeline.graph import FIRST_STEP
from spotdiff.protocol import CaptionPair
from spotdiff.protocol.jobs import FINAL_STATES, JobManifest

if TYPE_CHECKING:
    from spotdiff.jobs.store import JobStore

SEND_GRACE_S = 60.0  # a round planned this long ago and still not sent is sent by the reconciler


class Rounds:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def plan_first(self, manifest: JobManifest) -> list[CaptionPair]:
        """Round 0 of a job being created: its pairs, or for a job with a target, a first round sized for it
        (written to the job's folder)."""
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
            self.store.folder(manifest.id).write_round(0, pairs)
        self.store.redis.hset(self.store.key(manifest.id, "planned"), 0, time.time())
        return pairs

    def sent(self, job_id: str, number: int) -> None:
        """Every pair of round ``number`` is on its queue."""
        self.store.redis.hset(self.store.key(job_id, "sent"), number, time.time())

    def sending(self, job_id: str, number: int) -> None:
        """Round ``number`` is being sent: one more chunk of its pairs is on its queue."""
        self.store.redis.hset(self.store.key(job_id, "sending"), number, time.time())

    def unsent(self, job_id: str, grace_s: float = SEND_GRACE_S) -> list[int]:
        """Rounds planned (or last sent a chunk of) more than ``grace_s`` ago and never all sent: whoever was
        sending them died."""
        planned = self.store.redis.hgetall(self.store.key(job_id, "planned"))
        sending = self.store.redis.hgetall(self.store.key(job_id, "sending"))
        sent = set(self.store.redis.hkeys(self.store.key(job_id, "sent")))
        now = time.time()
        return sorted(
            int(number)
            for number, at in planned.items()
            if number not in sent and now - max(float(at), float(sending.get(number, 0))) > grace_s
        )

    def plan_next(self, job_id: str) -> list[CaptionPair]:
        """For a job with a target whose planned pairs have all finished short of it: the next round's pairs
        (written to the store, counted in the total; the caller has them sent), or none when a budget stops
        the job. Idempotent: a round is planned once, whoever asks."""
        values = self.store.redis.hgetall(self.store.key(job_id))
        if "target" not in values or values.get("state") in FINAL_STATES:
            return []
        done, total, number = int(values["done"]), int(values["total"]), int(values.get("rounds", 1))
        if done < total:
            return []
        manifest = self.store.manifest(job_id)
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
            self.store.stop(job_id, decision.reason)
            return []
        if not self.store.redis.hsetnx(self.store.key(job_id, "planned"), str(number), time.time()):
            return []  # another task planned this round
        pairs = round_pairs(job_id, manifest.request.pairs, total, decision.numbers["size"])
        self.store.folder(job_id).write_round(number, pairs)
        pipe = self.store.redis.pipeline()
        pipe.hincrby(self.store.key(job_id), "total", len(pairs))
        pipe.hset(self.store.key(job_id), mapping={"rounds": number + 1, "updated": time.time()})
        pipe.execute()
        self.store.progress.move(self.store.key(job_id), (pair.id for pair in pairs), FIRST_STEP)
        self.store.event(job_id, {"type": "round", "round": number + 1, "size": len(pairs), **decision.numbers})
        return pairs

    def latest(self, job_id: str) -> int:
        return int(self.store.redis.hget(self.store.key(job_id), "rounds") or 1) - 1
