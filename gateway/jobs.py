"""Job routes only: submit (POST, or PUT for an idempotent id), list yours, watch, page through samples, export, cancel.
What each does is in `gateway.jobs_serving`; the request model is bounded by this gateway's own limits, so the
OpenAPI schema says what is accepted. (No postponed annotations here: the routes name a model made at run time.)"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from gateway import jobs_serving as serving
from gateway.deps import CeleryDep, OwnerDep, SettingsDep, StoreDep
from gateway.services import GatesDep
from httpkit.errors import ERROR_RESPONSES, ErrorResponse
from spotdiff.exports import ExportFormat
from spotdiff.protocol.ids import JobId as JobIdType
from spotdiff.protocol.jobs import JobCreated, JobList, JobRequest, JobState, JobStatus
from spotdiff.settings import Settings

EVENT_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"  # a Redis stream id, as each event's id: field gives it
JobId = Annotated[JobIdType, PathParam(description="the job's id: yours with PUT, or the one POST gave you")]
STATUS_RESPONSES: dict[int | str, dict[str, object]] = {
    **ERROR_RESPONSES,
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
}


def build_router(settings: Settings) -> APIRouter:
    """The job routes of one gateway: its limits bound the request model (and so the schema)."""
    router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=STATUS_RESPONSES)
    Request = serving.job_request_model(settings)
    Submission = Annotated[Request, Body()]  # type: ignore[valid-type]

    @router.post("", status_code=202, response_model=JobCreated, summary="submit caption pairs")
    async def create_job(
        request: Submission,
        owner: OwnerDep,
        settings: SettingsDep,
        store: StoreDep,
        celery: CeleryDep,
        gates: GatesDep,
    ) -> JobCreated:
        job: JobRequest = request
        created, _ = await serving.create(uuid.uuid4().hex, job, owner, store, celery, settings, gates)
        return created

    @router.put(
        "/{job_id}",
        status_code=201,
        response_model=JobCreated,
        summary="submit under your own id (idempotent: the same body again is the same job)",
        responses={200: {"model": JobCreated, "description": "the job already exists with this body"}},
    )
    async def put_job(
        job_id: JobId,
        request: Submission,
        owner: OwnerDep,
        settings: SettingsDep,
        store: StoreDep,
        celery: CeleryDep,
        gates: GatesDep,
    ) -> JSONResponse:
        job: JobRequest = request
        created, code = await serving.create(job_id, job, owner, store, celery, settings, gates)
        return JSONResponse(created.model_dump(), code)

    @router.get("", response_model=JobList, summary="your jobs, newest first (paged; filter by state)")
    async def list_jobs(
        owner: OwnerDep,
        store: StoreDep,
        state: Annotated[list[JobState], Query(description="only jobs in these states (repeat the parameter)")] = [],  # noqa: B006
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> JobList:
        return await run_in_threadpool(serving.list_jobs, store, owner, state, offset, limit)

    @router.get("/{job_id}", response_model=JobStatus, summary="state, counts and the funnel of rejections")
    async def get_job(job_id: JobId, owner: OwnerDep, store: StoreDep) -> JobStatus:
        return await run_in_threadpool(serving.status, store, job_id, owner)

    @router.delete(
        "/{job_id}",
        status_code=202,
        response_model=JobStatus,
        summary="cancel the job's queued and running work (a finished job cannot be cancelled: 409)",
        responses={200: {"model": JobStatus, "description": "the job was already cancelled"}},
    )
    async def cancel_job(job_id: JobId, owner: OwnerDep, store: StoreDep) -> JSONResponse:
        status, code = await run_in_threadpool(serving.cancel, store, job_id, owner)
        return JSONResponse(status.model_dump(mode="json"), code)

    @router.get("/{job_id}/samples", response_model=serving.SamplePage, summary="the job's records, a page at a time")
    async def job_samples(
        job_id: JobId,
        owner: OwnerDep,
        store: StoreDep,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        outcome: Annotated[
            str | None,
            Query(max_length=200, description="accepted, surplus, or <stage>:<reason> as the funnel counts them"),
        ] = None,
        q: Annotated[str | None, Query(max_length=200, description="words every record shown contains")] = None,
    ) -> serving.SamplePage:
        only = serving.SampleFilter(outcome=outcome, words=q)
        return await run_in_threadpool(serving.samples, store, job_id, owner, offset, limit, only)

    @router.get(
        "/{job_id}/events",
        summary="progress as server-sent events, until the job ends",
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def job_events(
        job_id: JobId,
        owner: OwnerDep,
        store: StoreDep,
        settings: SettingsDep,
        last_event_id: Annotated[
            str | None,
            Header(
                alias="Last-Event-ID",
                pattern=EVENT_ID_PATTERN,
                description="resume after this event (the id of the last one you saw)",
            ),
        ] = None,
    ) -> EventSourceResponse:
        await run_in_threadpool(serving.owned, store, job_id, owner)
        return EventSourceResponse(
            serving.events(store, job_id, last_event_id or "0"), ping=settings.gateway.events_keepalive_s
        )

    @router.get(
        "/{job_id}/export",
        summary="the job's samples in a training format (zip when it has images), streamed",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "jsonl as it is; every other format a zip of its files and images (README: Exports)",
                "content": {
                    "application/zip": {"schema": {"type": "string", "format": "binary"}},
                    "application/jsonl": {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def job_export(job_id: JobId, owner: OwnerDep, store: StoreDep, format: ExportFormat) -> StreamingResponse:
        await run_in_threadpool(serving.owned, store, job_id, owner)
        chunks, media_type, name = await run_in_threadpool(serving.export, store, job_id, format)
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return StreamingResponse(chunks, media_type=media_type, headers=headers)

    return router
