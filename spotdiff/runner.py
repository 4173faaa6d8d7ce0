"""The embedded run: caption pairs from a JSONL file, every service in this process, a dataset on disk.

The output folder is a run folder (`spotdiff.jobs.folder`), the same layout as a job's folder in the store, so
``spotdiff export`` and ``spotdiff report`` read either. Bad input lines are reported (line number and reason)
and skipped; every good pair gets exactly one record in ``records/``, written as soon as it is known, so an
interrupted run keeps what it finished. At the end the records are also written as one ``samples.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from spotdiff.clients import ServiceClients
from spotdiff.exports import write_jsonl
from spotdiff.gallery import render_gallery
from spotdiff.jobs.folder import RECORDS, RunFolder
from spotdiff.pipeline import PairFailed, PairPipeline
from spotdiff.protocol import CaptionPair, SampleRecord, SampleStatus
from spotdiff.protocol.jobs import LOCAL_OWNER, JobManifest, JobRequest, SubmittedPair
from spotdiff.report import render_report, store_image_bytes
from spotdiff.settings import Settings
from spotdiff.storage import ArtifactStore

SAMPLES = "samples.jsonl"
INPUT_ERRORS = "input_errors.jsonl"
GALLERY = "gallery.html"
REPORT = "report.html"


@dataclass(frozen=True)
class InputError:
    line: int
    message: str


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def parse_pairs(lines: Sequence[str]) -> tuple[list[CaptionPair], list[InputError]]:
    """Caption pairs from JSONL lines; a line without ``id`` gets ``line-N``. Blank lines are skipped."""
    pairs: list[CaptionPair] = []
    errors: list[InputError] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(InputError(number, f"not valid JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(data, dict):
            errors.append(InputError(number, "each line must be a JSON object with source and target"))
            continue
        data.setdefault("id", f"line-{number}")
        try:
            pair: CaptionPair = SubmittedPair.model_validate(data)  # the rules of a job's pairs
        except ValidationError as exc:
            errors.append(InputError(number, _validation_message(exc)))
            continue
        if pair.id in seen:
            errors.append(InputError(number, f"id {pair.id!r} appears on an earlier line"))
            continue
        seen.add(pair.id)
        pairs.append(pair)
    return pairs, errors


def read_pairs(path: Path) -> tuple[list[CaptionPair], list[InputError]]:
    return parse_pairs(path.read_text(encoding="utf-8").splitlines())


async def run_pairs(
    pairs: Sequence[CaptionPair],
    pipeline: PairPipeline,
    *,
    concurrency: int,
    on_record: Callable[[SampleRecord], object],
    progress: bool = True,
) -> list[SampleRecord]:
    """Run pairs ``concurrency`` at a time (so the services can batch across pairs); records in finishing order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(pair: CaptionPair) -> SampleRecord:
        async with gate:
            try:
                return await pipeline.run(pair)
            except PairFailed as failed:
                return failed.record

    records: list[SampleRecord] = []
    with tqdm(total=len(pairs), desc="pairs", unit="pair", disable=not progress, file=sys.stderr) as bar:
        for finished in asyncio.as_completed([one(pair) for pair in pairs]):
            record = await finished
            on_record(record)
            records.append(record)
            accepted = sum(r.status is SampleStatus.ACCEPTED for r in records)
            bar.set_postfix(accepted=accepted, rejected=len(records) - accepted)
            bar.update()
    return records


@dataclass(frozen=True)
class RunSummary:
    out_dir: Path
    pairs: int
    accepted: int
    rejected: int
    input_errors: list[InputError]
    seconds: float


def start_folder(store: ArtifactStore, pairs: Sequence[CaptionPair], dropped: Sequence[SampleRecord] = ()) -> RunFolder:
    """A fresh run folder: what an earlier run left in it is replaced, its images kept (content-addressed)."""
    for key in (SAMPLES, INPUT_ERRORS):
        if store.exists(key):
            store.fs.rm(store.path(key))
    store.remove_tree(RECORDS)
    folder = RunFolder(store)
    request = JobRequest.model_construct(pairs=list(pairs))  # validated line by line already
    manifest = JobManifest(
        id=uuid.uuid4().hex,
        owner=LOCAL_OWNER,
        request=request,
        fingerprint="",
        created=time.time(),
        rewrite_drops=list(dropped),
    )
    folder.write_manifest(manifest)
    return folder


async def run_embedded(
    pairs_path: Path,
    out_dir: Path,
    settings: Settings,
    *,
    progress: bool = True,
    clients: Callable[[Settings], AbstractAsyncContextManager[ServiceClients]] | ServiceClients,
    dropped: Sequence[SampleRecord] = (),
) -> RunSummary:
    """Read, run every pair through the services, write the run folder, the gallery and the report.
    ``clients``: the services' clients, or how to start them for these settings (in this process, say);
    ``dropped``: rejections made before any pair existed (rewrites of captions that gave none), kept and counted
    with the run's records."""
    started = time.perf_counter()
    pairs, errors = read_pairs(pairs_path)
    store = ArtifactStore(str(out_dir))
    folder = start_folder(store, pairs, dropped)
    for error in errors:
        store.append_line(INPUT_ERRORS, json.dumps({"line": error.line, "message": error.message}))

    records: list[SampleRecord] = list(dropped)
    for record in dropped:
        folder.create_record(record)
    if pairs:
        services: AbstractAsyncContextManager[ServiceClients] = (
            nullcontext(clients) if isinstance(clients, ServiceClients) else clients(settings)
        )
        async with services as active:
            pipeline = await PairPipeline.connect(active, store, settings)
            records += await run_pairs(
                pairs,
                pipeline,
                concurrency=settings.pipeline.concurrency,
                on_record=folder.create_record,
                progress=progress,
            )
    write_jsonl(folder.iter_records(), out_dir / SAMPLES)
    store.put_text(GALLERY, render_gallery(records, title=f"spotdiff · {pairs_path.name}"))
    store.put_text(
        REPORT, render_report(records, store_image_bytes(store), title=f"spotdiff report · {pairs_path.name}")
    )
    accepted = sum(record.status is SampleStatus.ACCEPTED for record in records)
    return RunSummary(out_dir, len(records), accepted, len(records) - accepted, errors, time.perf_counter() - started)
