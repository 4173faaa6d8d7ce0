"""Regions routes: ``POST /v1/proposals`` returns segment-anything automatic-mask boxes for an image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from services.kit import ERROR_RESPONSES
from services.kit.app import BatchedOp, RuntimeDep, ServiceSpec, create_service_app
from services.kit.codec import decode_image
from services.regions.protocol import ProposeRequest, ProposeResponse
from spotdiff.settings import RegionsSettings, Settings

if TYPE_CHECKING:
    from PIL import Image

    from services.regions.model import RegionsModel


def _load(settings: RegionsSettings) -> RegionsModel:
    from services.regions.model import RegionsModel

    return RegionsModel(settings)


def _propose(model: RegionsModel, images: list[Image.Image]) -> list[Any]:
    return model.propose(images)


router = APIRouter(tags=["regions"])


@router.post(
    "/v1/proposals",
    response_model=ProposeResponse,
    responses=ERROR_RESPONSES,
    summary="region proposals (automatic masks) as xyxy boxes",
)
async def proposals(request: ProposeRequest, runtime: RuntimeDep) -> ProposeResponse:
    settings = runtime.settings
    assert isinstance(settings, RegionsSettings)
    runtime.require_ready()
    image = await run_in_threadpool(decode_image, request.image, max_pixels=settings.max_image_pixels)
    found = await runtime.submit("proposals", image)
    return ProposeResponse(proposals=found, width=image.width, height=image.height, model_id=settings.model)


SPEC = ServiceSpec(name="regions", load_runner=_load, router=router, ops={"proposals": BatchedOp(_propose)})


def create_app(settings: RegionsSettings | None = None) -> FastAPI:
    return create_service_app(SPEC, settings or Settings().regions)
