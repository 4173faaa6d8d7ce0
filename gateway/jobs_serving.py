"""What the job routes do (the routes themselves are in `gateway.jobs`): create a job once, admit it per API key,
read its progress, page its records, cancel it, stream its events and its exports.

Every call here blocks on Redis or the store; the routes run them in the thread pool.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from pydantic import BaseModel, Field, create_model
from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from gateway.services import ServiceGates, relayed
from httpkit.errors import ServiceError
from spotdiff.captions import LexiconRewriter, ModelCounter, ModelRewriter, Rewriter, pairs_from_captions, unpaired
from spotdiff.clients import ServiceCallError, ServiceClients
from spotdiff.exports import EXPORTS, ExportFormat, ExportOptions, ExportUnavailable
from spotdiff.gallery import search_text
from spotdiff.jobs.events import FINAL_EVENTS
from spotdiff.jobs.queues import send_round
from spotdiff.jobs.store import CancelOutcome, Claim, JobStore
from spotdiff.protocol import SampleRecord
from spotdiff.protocol.jobs import (
    JobCreated,
    JobList,
    JobManifest,
    JobRequest,
    JobSettings,
    JobState,
    JobStatus,
    SubmittedPair,
)
from spotdiff.protocol.records import Caption
from spotdiff.settings import Settings

EXPORT_CHUNK_BYTES = 1 << 20


class SamplePage(BaseModel):
    items: list[SampleRecord]
    total: int
    next_offset: int | None


def _bounded(model: type[BaseModel], name: str, **fields: tuple[Any, Any]) -> Any:
    """``model`` with some fields' bounds tightened (same descriptions), under its own name."""
    tightened = {
        field_name: (annotation, Field(default, description=model.model_fields[field_name].description, **bounds))
        for field_name, (annotation, (default, bounds)) in fields.items()
    }
    return create_model(name, __base__=model, **tightened)  # type: ignore[call-overload]


def job_request_model(settings: Settings) -> type[JobRequest]:
    """`JobRequest` bounded by this gateway's limits, so that its OpenAPI schema says exactly what it accepts:
    no more pairs than ``max_pairs_per_job``, no more new tokens than the captioning service allows."""
    tokens = settings.captioning.max_new_tokens_limit
    pairs = settings.gateway.max_pairs_per_job
    job_settings = _bounded(
        JobSettings,
        "JobSettings",
        label_max_new_tokens=(int | None, (None, {"ge": 1, "le": tokens})),
        caption_max_new_tokens=(int | None, (None, {"ge": 1, "le": tokens})),
    )
    request: type[JobRequest] = create_model(
        "JobRequest",
        __base__=JobRequest,
        pairs=(
            list[SubmittedPair],
            Field(default_factory=list, max_length=pairs, description=JobRequest.model_fields["pairs"].description),
        ),
        captions=(
            list[Caption] | None,
            Field(None, max_length=pairs, description=JobRequest.model_fields["captions"].description),
        ),
        settings=(job_settings, Field(default_factory=job_settings, description="pipeline settings for this job")),
        target_accepted=(
            int | None,
            Field(None, ge=1, le=pairs, description=JobRequest.model_fields["target_accepted"].description),
        ),
        budget_pairs=(
            int | None,
            Field(None, ge=1, le=pairs, description=JobRequest.model_fields["budget_pairs"].description),
        ),
    )
    return request


def owned(store: JobStore, job_id: str, owner: str) -> None:
    """The job exists and belongs to ``owner`` (one small Redis read, the manifest only when Redis lost it)."""
    found = store.owner(job_id)
    if found is None:
        raise ServiceError(404, "not_found", f"no job {job_id!r}")
    if found != owner:
        raise ServiceError(403, "forbidden", f"job {job_id!r} belongs to another API key")


def _existing(store: JobStore, job_id: str, claim: Claim, held: Claim) -> tuple[JobCreated, int]:
    """The answer to a submission of an id that is taken: the same body by the same key is the same job."""
    if held.owner != claim.owner:
        raise ServiceError(403, "forbidden", f"job {job_id!r} belongs to another API key")
    if held.fingerprint != claim.fingerprint:
        raise ServiceError(409, "conflict", f"job {job_id!r} exists with a different body")
    if store.wait_manifest(job_id) is None:
        raise ServiceError(
            503, "being_created", f"job {job_id!r} is being created; ask again", headers={"Retry-After": "1"}
        )
    status = store.status(job_id)
    assert status is not None
    return JobCreated(id=job_id, state=status.state, total=status.total), 200


async def with_pairs(
    request: JobRequest, settings: Settings, clients: ServiceClients
) -> tuple[JobRequest, list[SampleRecord]]:
    """A request of captions with its pairs made by this deployment's rewriter (each pair names its caption, each
    prompt counted by the generation service's tokenizers), and the rejection records of the rewrites that gave
    none; a request of pairs as it is.

    With ``variation: rewrite`` the pairs are the job's whole budget of rewrites, every caption's first before
    any second, which its rounds then draw in turn; of its drops only a caption that gave no pair at all is kept
    (one record, its first reason), since the pool is what a budget may draw from, not pairs the job owes. Pairs
    and captions together, or captions that give no pair, are a 422; a rewriting or generation service out of
    reach is a 503."""
    if not request.captions:
        return request, []
    max_pairs = settings.gateway.max_pairs_per_job
    if request.pairs:
        raise ServiceError(422, "invalid_request", "a job has pairs or captions, not both")
    captions = list(enumerate(request.captions, 1))
    rewrites, pool = request.rewrites_per_caption, None
    if request.variation == "rewrite":
        pool = min(request.budget_pairs or max_pairs, max_pairs)
        rewrites = -(-pool // len(captions))
    elif len(captions) * rewrites > max_pairs:
        raise ServiceError(
            422, "invalid_request", f"captions × rewrites_per_caption is over this gateway's {max_pairs} pairs a job"
        )
    rewriter: Rewriter = LexiconRewriter()
    if settings.rewriter == "model":
        if clients.rewriting is None:
            raise ServiceError(503, "service_unavailable", "no rewriting service is configured (worker.service_urls)")
        rewriter = ModelRewriter(clients.rewriting, concurrency=settings.rewriting.max_batch_size)
    counter = ModelCounter(clients.generation)
    try:
        made, dropped = await pairs_from_captions(
            captions, rewrites, rewriter=rewriter, interleave=pool is not None, counter=counter
        )
    except ServiceCallError as exc:
        raise relayed(exc) from exc
    if not made:
        reasons = sorted({f"caption {drop.line}: {drop.reason}" for drop in dropped})
        raise ServiceError(422, "no_pairs", "no caption gave a caption pair", details=reasons)
    pairs = [SubmittedPair.model_validate(pair.model_dump()) for pair in made[:pool]]
    kept = dropped if pool is None else unpaired(dropped, made[:pool])
    drops = [drop.record(settings.profile) for drop in kept]
    return request.model_copy(update={"pairs": pairs}), drops


async def create(
    job_id: str,
    sent: JobRequest,
    owner: str,
    store: JobStore,
    celery: Celery,
    settings: Settings,
    gates: ServiceGates,
) -> tuple[JobCreated, int]:
    """A submission, POST or PUT: its pairs made (a model's rewrites here, on the event loop), then the job
    created in the thread pool (`submit`). A PUT of captions to an id already taken is answered first, so the
    same body again costs no rewrites and is the same job even while the rewriting service is away."""
    if sent.captions:
        held = await run_in_threadpool(store.holder, job_id)
        if held is not None:
            return await run_in_threadpool(_existing, store, job_id, Claim(owner, sent.fingerprint()), held)
    made = await with_pairs(sent, settings, gates.clients)
    return await run_in_threadpool(submit, job_id, sent, made, owner, store, celery, settings)


def submit(
    job_id: str,
    sent: JobRequest,
    made: tuple[JobRequest, list[SampleRecord]],
    owner: str,
    store: JobStore,
    celery: Celery,
    settings: Settings,
) -> tuple[JobCreated, int]:
    """Create the job of ``made`` (``sent`` with its pairs made, and the rewrites that gave none) once and send
    its first round; (what was created, 201), or (the job as it is, 200) for the same body again. Whoever loses a
    race for the id is told what won it (200, 403 or 409)."""
    claim = Claim(owner, sent.fingerprint())  # of the body as sent: the same captions again, the same job
    request, drops = made
    held = store.claim(job_id, claim)
    if held is not None:
        return _existing(store, job_id, claim, held)
    gateway = settings.gateway
    budget = (request.budget_pairs or gateway.max_pairs_per_job) if request.target_accepted is not None else None
    admission = store.admissions.admit(
        owner,
        job_id,
        cost=budget or len(request.pairs),
        max_jobs=gateway.max_jobs_in_flight_per_key,
        pairs_per_minute=gateway.max_pairs_per_minute_per_key,
        capacity=gateway.max_pairs_per_job,
    )
    if not admission.admitted:
        store.unclaim(job_id)
        what = (
            f"{gateway.max_jobs_in_flight_per_key} jobs in flight"
            if admission.reason == "jobs_in_flight"
            else f"{gateway.max_pairs_per_minute_per_key} pairs per minute"
        )
        raise ServiceError(
            429,
            admission.reason,
            f"this API key is at its limit of {what}; try again in {admission.retry_after_s:.0f}s",
            headers={"Retry-After": f"{admission.retry_after_s:.0f}"},
        )
    manifest = JobManifest(
        id=job_id,
        owner=owner,
        request=request,
        fingerprint=claim.fingerprint,
        created=time.time(),
        budget_pairs=budget,
        rewrite_drops=drops,
    )
    try:
        pairs = store.create(manifest)
    except BaseException:  # the id and the key's slot are free again (a manifest already written is the
        # reconciler's to finish, and a retried PUT finds it)
        store.admissions.release(owner, job_id)
        store.unclaim(job_id)
        raise
    if pairs is None:  # Redis forgot an older claim, but the store has the job
        store.admissions.release(owner, job_id)
        creator = store.creator(job_id)
        assert creator is not None
        return _existing(store, job_id, claim, creator)
    send_round(celery, job_id, 0)  # if this fails, the reconciler sends the round once its grace is over
    return JobCreated(id=job_id, state=JobState.QUEUED, total=len(pairs) + len(drops)), 201


def status(store: JobStore, job_id: str, owner: str) -> JobStatus:
    owned(store, job_id, owner)
    found = store.status(job_id)
    if found is None:
        raise ServiceError(404, "not_found", f"no job {job_id!r}")
    return found


def list_jobs(store: JobStore, owner: str, states: list[JobState], offset: int, limit: int) -> JobList:
    page, total = store.owner_jobs(owner, states, offset, limit)
    after = offset + len(page)
    return JobList(items=page, total=total, next_offset=after if after < total else None)


def cancel(store: JobStore, job_id: str, owner: str) -> tuple[JobStatus, int]:
    """Cancel a job in flight (202); a cancelled job again is 200; a finished job cannot be cancelled (409)."""
    owned(store, job_id, owner)
    outcome = store.cancel(job_id)
    if outcome is CancelOutcome.FINISHED:
        raise ServiceError(409, "job_finished", f"job {job_id!r} is done: there is nothing left to cancel")
    if outcome is CancelOutcome.MISSING:
        raise ServiceError(404, "not_found", f"no job {job_id!r}")
    return status(store, job_id, owner), 202 if outcome is CancelOutcome.CANCELLED else 200


@dataclass(frozen=True)
class SampleFilter:
    """Which records a page holds: an outcome (``accepted``, ``surplus``, ``<stage>:<reason>``) and words that
    the pair id, captions, objects, labels or rejection must all contain (any case)."""

    outcome: str | None = None
    words: str | None = None

    def __bool__(self) -> bool:
        return bool(self.outcome or self.words)

    def keeps(self, record: SampleRecord) -> bool:
        if self.outcome and record.outcome != self.outcome:
            return False
        return not self.words or all(word in search_text(record) for word in self.words.lower().split())


def samples(
    store: JobStore, job_id: str, owner: str, offset: int, limit: int, only: SampleFilter | None = None
) -> SamplePage:
    """A page of the job's records; with a filter, of those it keeps (read in order, one at a time)."""
    owned(store, job_id, owner)
    if not only:
        page, total = store.records_page(job_id, offset, limit)
    else:
        page, total = [], 0
        for record in store.iter_records(job_id):
            if only.keeps(record):
                if offset <= total < offset + limit:
                    page.append(record)
                total += 1
    after = offset + len(page)
    return SamplePage(items=page, total=total, next_offset=after if after < total else None)


async def events(store: JobStore, job_id: str, after: str = "0") -> AsyncIterator[ServerSentEvent]:
    """The job's events after id ``after`` (a client's Last-Event-ID: it resumes where it was), until it ends."""
    while True:
        found = await run_in_threadpool(store.events, job_id, after, 1000)
        for event_id, fields in found:
            after = event_id
            yield ServerSentEvent(data=json.dumps(fields), event=fields.get("type", "event"), id=event_id)
            if fields.get("type") in FINAL_EVENTS:
                return
        current = await run_in_threadpool(store.status, job_id)
        if current is not None and current.state.final and not found:
            return


def export(store: JobStore, job_id: str, export_format: ExportFormat) -> tuple[Iterator[bytes], str, str]:
    """The export written to a temporary folder on disk, one record at a time, then streamed from there: one
    file as it is, or a zip written as it is sent (never whole in memory or on disk). The gateway's memory does
    not grow with the job; the folder is removed when the stream ends."""
    folder = Path(tempfile.mkdtemp(prefix="spotdiff-export-"))
    try:
        kind = EXPORTS[export_format]
        # image paths relative to the archive's root: the folder it is unpacked to (dj would write absolute ones)
        options = ExportOptions(image_root=folder)
        written = kind.write(store.iter_records(job_id), store.artifacts(job_id), folder, options)
    except ExportUnavailable as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ServiceError(501, "export_unavailable", str(exc)) from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if not kind.zipped:
        return _file_chunks(written, folder), kind.media_type, f"{job_id}-{written.name}"
    return _zip_chunks(folder), kind.media_type, f"{job_id}-{export_format}.zip"


class _Pipe(io.RawIOBase):
    """Where the zip writer writes: what it wrote so far is taken and sent (the writer never seeks back)."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.pending.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        taken = b"".join(self.pending)
        self.pending.clear()
        return taken


def _zip_chunks(folder: Path) -> Iterator[bytes]:
    pipe = _Pipe()
    try:
        with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(folder.rglob("*")):
                if not file.is_file():
                    continue
                name = file.relative_to(folder).as_posix()
                with file.open("rb") as source, archive.open(name, "w", force_zip64=True) as target:
                    while chunk := source.read(EXPORT_CHUNK_BYTES):
                        target.write(chunk)
                        if sent := pipe.take():
                            yield sent
                if sent := pipe.take():  # the file's end: its data descriptor
                    yield sent
        yield pipe.take()  # the central directory
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _file_chunks(path: Path, folder: Path) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(EXPORT_CHUNK_BYTES):
                yield chunk
    finally:
        shutil.rmtree(folder, ignore_errors=True)
