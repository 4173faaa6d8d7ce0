"""The run folder: one layout for a job's folder in the artifact store and a ``spotdiff run`` output folder,
so that ``export``, ``report`` and the gateway read either the same way.

- ``manifest.json``: what was asked (the pairs, the settings, who asked), written once;
- ``records/<pair>.json``: one record per finished pair, written once (a duplicate keeps the first);
- ``images/<sha256>.png``: the images the records name, by content;
- ``rounds/<n>.json``: for a job with a target, the pairs of each round planned so far;
- ``steps/<pair>/<step>.json``: while a pair is under way in a distributed run, its state after each step;
- ``cancelled.json``: the job was cancelled.

Nothing here knows Redis: this is the durable truth that progress is rebuilt from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from pydantic import TypeAdapter

from spotdiff.pipeline.graph import last_stored, resume_step
from spotdiff.pipeline.state import PairRun
from spotdiff.protocol import CaptionPair, SampleRecord, Stage
from spotdiff.protocol.jobs import JobManifest
from spotdiff.storage import ArtifactStore

MANIFEST = "manifest.json"
CANCELLED = "cancelled.json"
RECORDS = "records"
_PAIR_LIST = TypeAdapter(list[CaptionPair])


class RunFolder:
    """One run's folder (a job's, or an embedded run's), over any artifact store."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    # what was asked
    def has_manifest(self) -> bool:
        return self.store.exists(MANIFEST)

    def read_manifest(self) -> JobManifest | None:
        if not self.store.exists(MANIFEST):
            return None
        return JobManifest.model_validate_json(self.store.get_bytes(MANIFEST))

    def create_manifest(self, manifest: JobManifest) -> bool:
        """Write the manifest unless one exists (exclusively): False when the run already existed."""
        return self.store.create_bytes(MANIFEST, manifest.model_dump_json(exclude_none=True).encode())

    def write_manifest(self, manifest: JobManifest) -> None:
        """Write (or replace) the manifest: an embedded run that starts again in the same folder."""
        self.store.put_text(MANIFEST, manifest.model_dump_json(exclude_none=True))

    # rounds
    def round_key(self, number: int) -> str:
        return f"rounds/{number}.json"

    def write_round(self, number: int, pairs: list[CaptionPair]) -> None:
        self.store.put_text(self.round_key(number), _PAIR_LIST.dump_json(pairs).decode())

    def rounds(self) -> list[list[CaptionPair]]:
        """The pairs of each round planned so far (jobs with a target; the others have none)."""
        found: list[list[CaptionPair]] = []
        while self.store.exists(self.round_key(len(found))):
            found.append(_PAIR_LIST.validate_json(self.store.get_bytes(self.round_key(len(found)))))
        return found

    def round_of(self, number: int) -> list[CaptionPair]:
        """The pairs of round ``number`` (a run without a target has one round, its submitted pairs). Only the
        pairs are read, not the whole manifest: a worker that cannot read some other part of it (a setting from
        a newer gateway, say) still sends each pair on, and each pair then ends with a record that says why."""
        request = json.loads(self.store.get_bytes(MANIFEST))["request"]
        if request.get("target_accepted") is None:
            return _PAIR_LIST.validate_python(request["pairs"]) if number == 0 else []
        if not self.store.exists(self.round_key(number)):
            return []
        return _PAIR_LIST.validate_json(self.store.get_bytes(self.round_key(number)))

    def planned_pairs(self, manifest: JobManifest) -> list[CaptionPair]:
        """Every pair the run takes: the submitted ones, or for a job with a target, its rounds so far."""
        if manifest.request.target_accepted is None:
            return list(manifest.request.pairs)
        return [pair for round_ in self.rounds() for pair in round_]

    # records
    def record_key(self, pair_id: str) -> str:
        return f"{RECORDS}/{pair_id}.json"

    def has_record(self, pair_id: str) -> bool:
        return self.store.exists(self.record_key(pair_id))

    def record(self, pair_id: str) -> SampleRecord:
        return SampleRecord.model_validate_json(self.store.get_bytes(self.record_key(pair_id)))

    def create_record(self, record: SampleRecord) -> bool:
        """Keep the pair's record unless it has one: a racing duplicate keeps the first."""
        return self.store.create_bytes(self.record_key(record.pair_id), record.model_dump_json().encode())

    def finished_ids(self) -> set[str]:
        """The pairs with a record, from one listing of the records folder."""
        names = self.store.names(RECORDS)
        return {name.removesuffix(".json") for name in names if name.endswith(".json")}

    def ordered_ids(self, manifest: JobManifest | None) -> list[str]:
        """The finished pairs in the run's order (the manifest's: the rewrites that gave no pair first, then the
        pairs; else by id)."""
        finished = self.finished_ids()
        if manifest is None:
            return sorted(finished)
        ids = [drop.pair_id for drop in manifest.rewrite_drops] + [pair.id for pair in self.planned_pairs(manifest)]
        return [pair_id for pair_id in ids if pair_id in finished]

    def iter_records(self) -> Iterator[SampleRecord]:
        """The finished pairs' records in the run's order, read one at a time (an export of any size)."""
        for pair_id in self.ordered_ids(self.read_manifest()):
            yield self.record(pair_id)

    def records_page(
        self, manifest: JobManifest | None, offset: int, limit: int | None
    ) -> tuple[list[SampleRecord], int]:
        """The finished pairs' records in the run's order, ``limit`` from ``offset`` (only those are read), and
        how many there are in all."""
        ordered = self.ordered_ids(manifest)
        page = ordered[offset:] if limit is None else ordered[offset : offset + limit]
        return [self.record(pair_id) for pair_id in page], len(ordered)

    # a pair under way
    def step_key(self, pair_id: str, step: Stage) -> str:
        return f"steps/{pair_id}/{step.value}.json"

    def has_step(self, pair_id: str, step: Stage) -> bool:
        return self.store.exists(self.step_key(pair_id, step))

    def save_step(self, run: PairRun, step: Stage) -> None:
        """The pair's state after ``step``: what the next step's task starts from."""
        self.store.put_text(self.step_key(run.pair.id, step), run.model_dump_json())

    def load_step(self, pair_id: str, step: Stage) -> PairRun:
        return PairRun.model_validate_json(self.store.get_bytes(self.step_key(pair_id, step)))

    def last_state(self, pair: CaptionPair) -> PairRun:
        """What is known of an unfinished pair: its state after the last step in the store, or nothing yet."""
        last = last_stored(lambda step: self.has_step(pair.id, step))
        return PairRun(pair=pair) if last is None else self.load_step(pair.id, last)

    def resume_step(self, pair_id: str) -> Stage:
        """Where an unfinished pair goes on (`spotdiff.pipeline.graph.resume_step`)."""
        return resume_step(lambda step: self.has_step(pair_id, step))

    def clear_steps(self, pair_id: str) -> None:
        """The record holds all of it now."""
        self.store.remove_tree(f"steps/{pair_id}")

    # cancellation
    def is_cancelled(self) -> bool:
        return self.store.exists(CANCELLED)

    def mark_cancelled(self) -> None:
        self.store.put_text(CANCELLED, json.dumps({"cancelled": time.time()}))

    def unmark_cancelled(self) -> None:
        self.store.remove_tree(CANCELLED)
