"""Job routes: submit (POST, or PUT for an idempotent id), watch, page through samples, export, cancel."""

from __future__ import annotations

import io
import json
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Literal

from celery import Celery
from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gateway.deps import CeleryDep, OwnerDep, SettingsDep, StoreDep
from services.kit.errors import ERROR_RESPONSES, ServiceError
from spotdiff.exports import EXPORTERS
from spotdiff.pipeline import STEPS
from spotdiff.protocol import CaptionPair, SampleRecord
from spotdiff.protocol.jobs import JobCreated, JobManifest, JobRequest, JobState, JobStatus
from spotdiff.settings import PipelineSettings, Settings
from workers.celery_app import send_step
from workers.jobstore import JobStore

JobId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._-]{1,128}$")]
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses={**ERROR_RESPONSES, 403: {}, 404: {}, 409: {}})
_FINAL = {JobState.DONE.value, JobState.CANCELLED.value}


class SamplePage(BaseModel):
    items: list[SampleRecord]
    total: int
    next_offset: int | None


def _check(request: JobRequest, settings: Settings) -> None:
    if len(request.pairs) > settings.gateway.max_pairs_per_job:
        raise ServiceError(
            422,
            "too_many_pairs",
            f"{len(request.pairs)} pairs is over the limit of {settings.gateway.max_pairs_per_job}",
        )
    budget = request.budget_pairs
    if budget is not None and budget > settings.gateway.max_pairs_per_job:
        raise ServiceError(
            422,
            "budget_too_large",
            f"budget_pairs {budget} is over the limit of {settings.gateway.max_pairs_per_job} pairs per job",
        )
    try:
        PipelineSettings.model_validate({**settings.pipeline.model_dump(), **request.settings})
    except ValueError as exc:
        raise ServiceError(422, "invalid_settings", f"settings: {exc}") from exc
    unknown = set(request.settings) - set(PipelineSettings.model_fields)
    if unknown:
        raise ServiceError(422, "invalid_settings", f"unknown pipeline settings: {', '.join(sorted(unknown))}")


def enqueue(celery: Celery, store: JobStore, job_id: str, pairs: Sequence[CaptionPair]) -> None:
    """Each pair's first step on its queue; each step enqueues the next. Tasks are idempotent, so enqueuing
    twice is harmless."""
    store.entered(job_id, {pair.id: STEPS[0] for pair in pairs})
    for pair in pairs:
        send_step(celery, job_id, pair.model_dump_json(), STEPS[0])


def _submit(
    job_id: str, request: JobRequest, owner: str, store: JobStore, celery: Celery, settings: Settings
) -> JobCreated:
    budget = None
    if request.target_accepted is not None:
        budget = request.budget_pairs or settings.gateway.max_pairs_per_job
    manifest = JobManifest(
        id=job_id,
        owner=owner,
        request=request,
        fingerprint=request.fingerprint(),
        created=time.time(),
        budget_pairs=budget,
    )
    pairs = store.create(manifest)
    enqueue(celery, store, job_id, pairs)
    return JobCreated(id=job_id, state=JobState.QUEUED, total=len(pairs))


def _owned(store: JobStore, job_id: str, owner: str) -> JobManifest:
    manifest = store.manifest(job_id)
    if manifest is None:
        raise ServiceError(404, "not_found", f"no job {job_id!r}")
    if manifest.owner != owner:
        raise ServiceError(403, "forbidden", f"job {job_id!r} belongs to another API key")
    return manifest


@router.post("", status_code=202, response_model=JobCreated, summary="submit caption pairs")
async def create_job(
    request: JobRequest, owner: OwnerDep, settings: SettingsDep, store: StoreDep, celery: CeleryDep
) -> JobCreated:
    _check(request, settings)
    return await run_in_threadpool(_submit, uuid.uuid4().hex, request, owner, store, celery, settings)


@router.put(
    "/{job_id}",
    status_code=201,
    response_model=JobCreated,
    summary="submit under your own id (idempotent)",
    responses={200: {"model": JobCreated, "description": "the job already exists with this body"}},
)
async def put_job(
    job_id: JobId, request: JobRequest, owner: OwnerDep, settings: SettingsDep, store: StoreDep, celery: CeleryDep
) -> JSONResponse:
    _check(request, settings)
    existing = await run_in_threadpool(store.manifest, job_id)
    if existing is not None:
        if existing.owner != owner:
            raise ServiceError(403, "forbidden", f"job {job_id!r} belongs to another API key")
        if existing.fingerprint != request.fingerprint():
            raise ServiceError(409, "conflict", f"job {job_id!r} exists with a different body")
        status = await run_in_threadpool(store.status, job_id)
        assert status is not None
        return JSONResponse(JobCreated(id=job_id, state=status.state, total=status.total).model_dump(), 200)
    created = await run_in_threadpool(_submit, job_id, request, owner, store, celery, settings)
    return JSONResponse(created.model_dump(), 201)


@router.get("/{job_id}", response_model=JobStatus, summary="state, counts and the funnel of rejections")
async def get_job(job_id: JobId, owner: OwnerDep, store: StoreDep) -> JobStatus:
    await run_in_threadpool(_owned, store, job_id, owner)
    status = await run_in_threadpool(store.status, job_id)
    assert status is not None
    return status


@router.delete("/{job_id}", status_code=202, response_model=JobStatus, summary="cancel queued and running work")
async def cancel_job(job_id: JobId, owner: OwnerDep, store: StoreDep) -> JobStatus:
    await run_in_threadpool(_owned, store, job_id, owner)
    await run_in_threadpool(store.cancel, job_id)
    status = await run_in_threadpool(store.status, job_id)
    assert status is not None
    return status


@router.get("/{job_id}/samples", response_model=SamplePage, summary="the job's records, a page at a time")
async def job_samples(
    job_id: JobId,
    owner: OwnerDep,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> SamplePage:
    await run_in_threadpool(_owned, store, job_id, owner)
    records = await run_in_threadpool(store.records, job_id)
    page = records[offset : offset + limit]
    after = offset + len(page)
    return SamplePage(items=page, total=len(records), next_offset=after if after < len(records) else None)


@router.get(
    "/{job_id}/events",
    summary="progress as server-sent events, until the job ends",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(job_id: JobId, owner: OwnerDep, store: StoreDep) -> StreamingResponse:
    await run_in_threadpool(_owned, store, job_id, owner)

    async def stream() -> AsyncIterator[str]:
        after = "0"
        while True:
            events = await run_in_threadpool(store.events, job_id, after, 1000)
            for event_id, fields in events:
                after = event_id
                yield f"id: {event_id}\nevent: {fields.get('type', 'event')}\ndata: {json.dumps(fields)}\n\n"
                if fields.get("type") in ("done", "cancelled"):
                    return
            status = await run_in_threadpool(store.status, job_id)
            if status is not None and status.state.value in _FINAL and not events:
                return

    return StreamingResponse(stream(), media_type="text/event-stream")


@router.get(
    "/{job_id}/export",
    summary="the job's samples in a training format (zip when it has images)",
    response_class=Response,
    responses={
        200: {
            "description": "llava and dj: a zip of records and boxed images; jsonl; parquet",
            "content": {
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                "application/jsonl": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def job_export(
    job_id: JobId, owner: OwnerDep, store: StoreDep, format: Literal["llava", "dj", "jsonl", "parquet"]
) -> Response:
    await run_in_threadpool(_owned, store, job_id, owner)
    content, media_type, name = await run_in_threadpool(_export, store, job_id, format)
    return Response(content, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _export(store: JobStore, job_id: str, export_format: str) -> tuple[bytes, str, str]:
    records = store.records(job_id)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        written = EXPORTERS[export_format](records, store.artifacts(job_id), out)
        if export_format in ("jsonl", "parquet"):
            media = "application/jsonl" if export_format == "jsonl" else "application/vnd.apache.parquet"
            return written.read_bytes(), media, f"{job_id}-{written.name}"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(out.rglob("*")):
                if file.is_file():
                    archive.write(file, file.relative_to(out).as_posix())
        return buffer.getvalue(), "application/zip", f"{job_id}-{export_format}.zip"
