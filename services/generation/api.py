"""Generation routes: ``POST /v1/pairs`` (decode / predict / encode on the kit)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from services.generation.protocol import GenerationParams, PairRequest, PairResponse
from services.kit import ERROR_RESPONSES, ServiceError
from services.kit.app import BatchedOp, RuntimeDep, ServiceSpec, create_service_app
from services.kit.codec import encode_png
from spotdiff.settings import GenerationSettings, Settings

if TYPE_CHECKING:
    from services.generation.model import GenerationModel


@dataclass(frozen=True)
class PairJob:
    """One pair for the batcher; pairs with equal ``params`` share a UNet batch."""

    source: str
    target: str
    seed: int
    params: GenerationParams


def _load(settings: GenerationSettings) -> GenerationModel:
    from services.generation.model import GenerationModel

    return GenerationModel(settings)


def _generate(model: GenerationModel, jobs: list[PairJob]) -> list[Any]:
    return model.generate(jobs)


def resolve_params(request: PairRequest, settings: GenerationSettings) -> GenerationParams:
    """Fill absent settings with the service defaults and check them against its limits."""
    params = GenerationParams(
        height=request.height or settings.height,
        width=request.width or settings.width,
        num_inference_steps=request.num_inference_steps or settings.num_inference_steps,
        guidance_scale=settings.guidance_scale if request.guidance_scale is None else request.guidance_scale,
    )
    if params.height * params.width > settings.max_pixels:
        raise ServiceError(
            422,
            "too_many_pixels",
            f"{params.width}x{params.height} is over this service's limit of {settings.max_pixels} pixels",
        )
    if params.num_inference_steps > settings.max_steps:
        raise ServiceError(
            422, "too_many_steps", f"num_inference_steps {params.num_inference_steps} is over {settings.max_steps}"
        )
    return params


router = APIRouter(tags=["generation"])


@router.post(
    "/v1/pairs",
    response_model=PairResponse,
    responses=ERROR_RESPONSES,
    summary="an image pair from a caption pair, from one shared initial latent",
)
async def create_pair(request: PairRequest, runtime: RuntimeDep) -> PairResponse:
    settings = runtime.settings
    assert isinstance(settings, GenerationSettings)
    params = resolve_params(request, settings)
    seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    started = time.perf_counter()
    images = await runtime.submit("pairs", PairJob(request.source, request.target, seed, params))
    generated = time.perf_counter()
    source_b64, target_b64 = await run_in_threadpool(lambda: (encode_png(images[0]), encode_png(images[1])))
    info = runtime.info()
    return PairResponse(
        source_image=source_b64,
        target_image=target_b64,
        seed=seed,
        params=params,
        model_id=info.model_id,
        revision=info.revision,
        timings={"generate_s": generated - started, "encode_s": time.perf_counter() - generated},
    )


SPEC = ServiceSpec(
    name="generation",
    load_runner=_load,
    router=router,
    ops={"pairs": BatchedOp(_generate, key=lambda job: job.params)},
)


def create_app(settings: GenerationSettings | None = None) -> FastAPI:
    return create_service_app(SPEC, settings or Settings().generation)
