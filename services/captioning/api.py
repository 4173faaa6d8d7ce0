"""Captioning routes: ``POST /v1/captions`` answers a prompt about an image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from services.captioning.jobs import CaptionJob
from services.kit import ERROR_RESPONSES, ServiceError
from services.kit.app import BatchedOp, RuntimeDep, ServiceSpec, create_service_app
from services.kit.codec import decode_image
from spotdiff.protocol.captioning import CaptionRequest, CaptionResponse
from spotdiff.settings import CaptioningSettings, Settings

if TYPE_CHECKING:
    from services.captioning.model import CaptioningModel


def _load(settings: CaptioningSettings) -> CaptioningModel:
    from services.captioning.model import CaptioningModel

    return CaptioningModel(settings)


def _caption(model: CaptioningModel, jobs: list[CaptionJob]) -> list[Any]:
    return model.caption(jobs)


router = APIRouter(tags=["captioning"])


@router.post(
    "/v1/captions",
    response_model=CaptionResponse,
    responses=ERROR_RESPONSES,
    summary="text for an image and a prompt (greedy)",
)
async def caption(request: CaptionRequest, runtime: RuntimeDep) -> CaptionResponse:
    settings = runtime.settings
    assert isinstance(settings, CaptioningSettings)
    if request.max_new_tokens > settings.max_new_tokens_limit:
        raise ServiceError(
            422,
            "too_many_tokens",
            f"max_new_tokens {request.max_new_tokens} is over the limit of {settings.max_new_tokens_limit}",
        )
    runtime.require_ready()
    image = await run_in_threadpool(decode_image, request.image, max_pixels=settings.max_image_pixels)
    text, tokens = await runtime.submit("captions", CaptionJob(image, request.prompt, request.max_new_tokens))
    return CaptionResponse(text=text, tokens=tokens, model_id=settings.model)


SPEC = ServiceSpec(
    name="captioning",
    load_runner=_load,
    router=router,
    ops={"captions": BatchedOp(_caption, key=lambda job: job.max_new_tokens)},
)


def create_app(settings: CaptioningSettings | None = None) -> FastAPI:
    return create_service_app(SPEC, settings or Settings().captioning)
