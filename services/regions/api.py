"""Regions routes: automatic-mask proposals (``POST /v1/proposals``) and prompted masks (``POST /v1/prompted``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from services.kit import ERROR_RESPONSES, ServiceError
from services.kit.app import BatchedOp, RuntimeDep, ServiceSpec, create_service_app
from services.kit.codec import decode_image
from services.regions.jobs import PromptedJob, ProposeJob
from spotdiff.protocol.regions import (
    AmgOptions,
    PromptedRequest,
    PromptedResponse,
    ProposeRequest,
    ProposeResponse,
)
from spotdiff.settings import RegionsSettings, Settings

if TYPE_CHECKING:
    from services.regions.model import RegionsModel


def _load(settings: RegionsSettings) -> RegionsModel:
    from services.regions.model import RegionsModel

    return RegionsModel(settings)


def _propose(model: RegionsModel, jobs: list[ProposeJob]) -> list[Any]:
    return model.propose(jobs)


def _prompted(model: RegionsModel, jobs: list[PromptedJob]) -> list[Any]:
    return model.prompted(jobs)


def _image_settings(runtime: RuntimeDep) -> RegionsSettings:
    settings = runtime.settings
    assert isinstance(settings, RegionsSettings)
    runtime.require_ready()
    return settings


router = APIRouter(tags=["regions"])


@router.post(
    "/v1/proposals",
    response_model=ProposeResponse,
    responses=ERROR_RESPONSES,
    summary="region proposals (automatic masks) as xyxy boxes",
)
async def proposals(request: ProposeRequest, runtime: RuntimeDep) -> ProposeResponse:
    settings = _image_settings(runtime)
    image = await run_in_threadpool(decode_image, request.image, max_pixels=settings.max_image_pixels)
    job = ProposeJob(image, request.options or AmgOptions(), request.return_masks)
    found = await runtime.submit("proposals", job)
    return ProposeResponse(proposals=found, width=image.width, height=image.height, model_id=settings.model)


@router.post(
    "/v1/prompted",
    response_model=PromptedResponse,
    responses=ERROR_RESPONSES,
    summary="one mask per box or point prompt, from one image embedding",
)
async def prompted(request: PromptedRequest, runtime: RuntimeDep) -> PromptedResponse:
    settings = _image_settings(runtime)
    image = await run_in_threadpool(decode_image, request.image, max_pixels=settings.max_image_pixels)
    for index, prompt in enumerate(request.prompts):
        points = [*(prompt.points or []), *([] if prompt.box is None else [(prompt.box.x1, prompt.box.y1)])]
        if any(x >= image.width or y >= image.height for x, y in points):
            raise ServiceError(
                422, "prompt_outside_image", f"prompts[{index}] lies outside the {image.width}x{image.height} image"
            )
    job = PromptedJob(image, request.prompts, request.multimask, request.return_masks)
    regions = await runtime.submit("prompted", job)
    return PromptedResponse(regions=regions, width=image.width, height=image.height, model_id=settings.model)


SPEC = ServiceSpec(
    name="regions",
    load_runner=_load,
    router=router,
    ops={
        "proposals": BatchedOp(_propose, key=lambda job: job.options),
        "prompted": BatchedOp(_prompted),
    },
)


def create_app(settings: RegionsSettings | None = None) -> FastAPI:
    return create_service_app(SPEC, settings or Settings().regions)
