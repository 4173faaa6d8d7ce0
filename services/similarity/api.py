"""Similarity routes: ``POST /v1/cosine`` scores any mix of image-image, image-text and text-text pairs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from services.kit import ERROR_RESPONSES, ServiceError
from services.kit.app import BatchedOp, RuntimeDep, ServiceSpec, create_service_app
from services.kit.codec import decode_image
from services.similarity.jobs import CosineJob
from spotdiff.protocol.similarity import CosineRequest, CosineResponse
from spotdiff.settings import Settings, SimilaritySettings

if TYPE_CHECKING:
    from services.similarity.model import SimilarityModel


def _load(settings: SimilaritySettings) -> SimilarityModel:
    from services.similarity.model import SimilarityModel

    return SimilarityModel(settings)


def _cosine(model: SimilarityModel, jobs: list[CosineJob]) -> list[list[float]]:
    return model.cosine(jobs)


def decode_request(request: CosineRequest, settings: SimilaritySettings) -> CosineJob:
    operands = 2 * len(request.pairs)
    if operands > settings.max_items_per_request:
        raise ServiceError(
            422, "too_many_items", f"{operands} operands is over the limit of {settings.max_items_per_request}"
        )
    images = {
        name: decode_image(data, max_pixels=settings.max_image_pixels, field=f"images.{name}")
        for name, data in request.images.items()
    }
    for index, pair in enumerate(request.pairs):
        for side, operand in (("a", pair.a), ("b", pair.b)):
            if operand.box is None or operand.image is None:
                continue
            width, height = images[operand.image].size
            if operand.box.x1 >= width or operand.box.y1 >= height:
                raise ServiceError(
                    422,
                    "box_outside_image",
                    f"pairs[{index}].{side}.box {operand.box.as_list()} lies outside the {width}x{height} image",
                )
    return CosineJob(images, list(request.pairs))


router = APIRouter(tags=["similarity"])


@router.post(
    "/v1/cosine",
    response_model=CosineResponse,
    responses=ERROR_RESPONSES,
    summary="cosine similarity of CLIP embeddings for each pair",
)
async def cosine(request: CosineRequest, runtime: RuntimeDep) -> CosineResponse:
    settings = runtime.settings
    assert isinstance(settings, SimilaritySettings)
    runtime.require_ready()
    job = await run_in_threadpool(decode_request, request, settings)
    scores = await runtime.submit("cosine", job)
    return CosineResponse(
        scores=scores, model_id=settings.model, image_text_scorer=runtime.info().extra["image_text_scorer"]
    )


SPEC = ServiceSpec(name="similarity", load_runner=_load, router=router, ops={"cosine": BatchedOp(_cosine)})


def create_app(settings: SimilaritySettings | None = None) -> FastAPI:
    return create_service_app(SPEC, settings or Settings().similarity)
