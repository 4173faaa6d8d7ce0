"""Generation routes: ``POST /v1/pairs`` (decode / predict / encode on the kit)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from httpkit.errors import ErrorBody, ErrorResponse
from services.generation.jobs import PairImages, PairJob
from services.kit import ERROR_RESPONSES, ServiceError
from services.kit.app import BatchedOp, RuntimeDep, ServiceSpec, create_service_app
from services.kit.cancellation import cancel_on_disconnect
from services.kit.codec import encode_png
from spotdiff.protocol.generation import GenerationParams, PairProgress, PairRequest, PairResponse
from spotdiff.settings import GenerationSettings, Settings

if TYPE_CHECKING:
    from services.generation.model import GenerationModel


def _load(settings: GenerationSettings) -> GenerationModel:
    from services.generation.model import GenerationModel

    return GenerationModel(settings)


def _generate(model: GenerationModel, jobs: list[PairJob]) -> Sequence[PairImages | BaseException]:
    return model.generate(jobs)


def resolve_params(request: PairRequest, settings: GenerationSettings) -> GenerationParams:
    """Fill absent settings with the service defaults and check them against its limits."""
    params = GenerationParams(
        height=request.height or settings.height,
        width=request.width or settings.width,
        num_inference_steps=request.num_inference_steps or settings.num_inference_steps,
        guidance_scale=settings.guidance_scale if request.guidance_scale is None else request.guidance_scale,
        edit=request.edit or settings.edit,
        cross_replace=settings.cross_replace if request.cross_replace is None else request.cross_replace,
        cross_replace_words=request.cross_replace_words or {},
        self_replace=settings.self_replace if request.self_replace is None else request.self_replace,
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


def _sse(event: str, body: BaseModel) -> str:
    return f"event: {event}\ndata: {body.model_dump_json()}\n\n"


@router.post(
    "/v1/pairs",
    response_model=PairResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
    summary="an image pair from a caption pair: one shared initial latent, Prompt-to-Prompt edited",
)
async def create_pair(request: PairRequest, http: Request, runtime: RuntimeDep) -> Response:
    settings = runtime.settings
    assert isinstance(settings, GenerationSettings)
    params = resolve_params(request, settings)
    runtime.require_ready()
    seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    loop = asyncio.get_running_loop()
    progress: asyncio.Queue[PairProgress] = asyncio.Queue()
    done = loop.create_future()  # set when the caller no longer needs the work

    def on_step(step: int, total: int) -> None:  # called on the model thread
        loop.call_soon_threadsafe(progress.put_nowait, PairProgress(step=step, total=total))

    job = PairJob(request.source, request.target, seed, params, on_step if request.stream else None, done.done)

    async def answer() -> PairResponse:
        started = time.perf_counter()
        try:
            images: PairImages = await runtime.submit("pairs", job)
        finally:
            if not done.done():
                done.set_result(None)
        generated = time.perf_counter()
        source_b64, target_b64 = await run_in_threadpool(lambda: (encode_png(images.source), encode_png(images.target)))
        info = runtime.info()
        return PairResponse(
            source_image=source_b64,
            target_image=target_b64,
            seed=seed,
            params=params,
            model_id=info.model_id,
            revision=info.revision,
            timings={"generate_s": generated - started, "encode_s": time.perf_counter() - generated},
            warnings=images.warnings,
        )

    if not request.stream:
        return JSONResponse((await cancel_on_disconnect(http, answer())).model_dump(mode="json"))

    async def events() -> AsyncIterator[str]:
        work = asyncio.ensure_future(answer())
        try:
            while not work.done():
                waiting = asyncio.ensure_future(progress.get())
                await asyncio.wait({work, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if waiting.done():
                    yield _sse("progress", waiting.result())
                else:
                    waiting.cancel()
            while not progress.empty():
                yield _sse("progress", progress.get_nowait())
            error = work.exception()
            if error is None:
                yield _sse("result", work.result())
            else:
                code = getattr(error, "code", "internal_error")
                body = ErrorBody(code=code, message=str(error), details=getattr(error, "details", None))
                yield _sse("error", ErrorResponse(error=body))
        finally:  # the client left (or the stream ended): stop the work
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)

    return StreamingResponse(events(), media_type="text/event-stream")


SPEC = ServiceSpec(
    name="generation",
    load_runner=_load,
    router=router,
    ops={"pairs": BatchedOp(_generate, key=lambda job: job.params.batch_key())},
)


def create_app(settings: GenerationSettings | None = None) -> FastAPI:
    return create_service_app(SPEC, settings or Settings().generation)
