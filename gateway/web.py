"""The web page (submit pairs, watch a job, browse and export its samples) and the image route it needs.

The page is plain HTML and JavaScript from ``gateway/static/``: no build step and nothing fetched from
another origin, so it works on an offline machine and a strict Content-Security-Policy holds. Images go
through an authorised route because a job's artifacts belong to the API key that created it.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.deps import OwnerDep, StoreDep
from gateway.jobs import JobId
from gateway.jobs_serving import owned
from httpkit.errors import ERROR_RESPONSES, ErrorResponse, ServiceError
from spotdiff.jobs.store import JobStore

# The page's own files and what they are; anything else under static/ is never served.
STATIC_MEDIA_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
# Only this origin: no CDN, no inline script; images are this origin's or blob: URLs the page made.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

# Content-addressed image names only: no slash, no dot-dot, nothing but the hash of a PNG.
ImageName = Annotated[str, PathParam(pattern=r"^[0-9a-f]{64}\.png$", description="<sha256>.png")]

page = APIRouter(include_in_schema=False)
images = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    responses={**ERROR_RESPONSES, 403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)


def _static_bytes(name: str) -> bytes:
    return resources.files("gateway").joinpath("static", name).read_bytes()


@page.get("/")
def index() -> HTMLResponse:
    return HTMLResponse(_static_bytes("index.html"), headers=PAGE_HEADERS)


@page.get("/static/{name}")
def static_file(name: str) -> Response:
    media_type = STATIC_MEDIA_TYPES.get(name)
    if media_type is None:
        raise ServiceError(404, "not_found", f"no static file {name!r}")
    return Response(_static_bytes(name), media_type=media_type, headers=PAGE_HEADERS)


def _image_bytes(store: JobStore, job_id: str, name: str) -> bytes:
    artifacts = store.artifacts(job_id)
    key = f"images/{name}"
    if not artifacts.exists(key):
        raise ServiceError(404, "not_found", f"job {job_id!r} has no image {name!r}")
    return artifacts.get_bytes(key)


@images.get(
    "/{job_id}/images/{name}",
    response_class=Response,
    summary="one of the job's images (the keys its records name, without 'images/')",
    responses={
        200: {
            "description": "the PNG",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def job_image(job_id: JobId, name: ImageName, owner: OwnerDep, store: StoreDep) -> Response:
    await run_in_threadpool(owned, store, job_id, owner)
    data = await run_in_threadpool(_image_bytes, store, job_id, name)
    # content-addressed: the bytes behind a name never change, but only its owner may keep them
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=31536000, immutable"})


router = APIRouter()
router.include_router(page)
router.include_router(images)
