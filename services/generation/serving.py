"""Generation serving: an image pair from a caption pair, one shared initial latent, Prompt-to-Prompt edited."""

from __future__ import annotations

import secrets
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from services.generation.jobs import PairImages, PairJob
from services.kit import Call, ServiceError, Serving
from services.kit.codec import encode_png
from services.kit.runtime import ServiceRuntime
from spotdiff.protocol.generation import (
    GenerationParams,
    PairProgress,
    PairRequest,
    PairResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from spotdiff.settings import GenerationSettings

if TYPE_CHECKING:
    from services.generation.model import GenerationModel


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


class GenerationServing(Serving[GenerationSettings, "GenerationModel", PairRequest, PairJob, PairImages, PairResponse]):
    """Pairs with equal batch-relevant params share a UNet batch; each reports its denoising steps."""

    op = "pairs"

    def setup(self, settings: GenerationSettings) -> GenerationModel:
        from services.generation.model import GenerationModel

        return GenerationModel(settings)

    def decode(self, request: PairRequest, call: Call[GenerationSettings]) -> PairJob:
        """The params resolved and checked, the seed drawn when the request leaves it open."""
        params = resolve_params(request, call.settings)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)

        def on_step(step: int, total: int) -> None:  # called on the model thread
            call.report(PairProgress(step=step, total=total))

        return PairJob(request.source, request.target, seed, params, on_step, call.cancelled)

    def batch_key(self, item: PairJob) -> Hashable:
        return item.params.batch_key()

    def predict(self, runner: GenerationModel, items: list[PairJob]) -> list[PairImages | BaseException]:
        return runner.generate(items)

    def encode(self, result: PairImages, item: PairJob, call: Call[GenerationSettings]) -> PairResponse:
        """Both images as PNG, with the seed, params and model that made them."""
        started = time.perf_counter()
        source_b64, target_b64 = encode_png(result.source), encode_png(result.target)
        model = call.model
        return PairResponse(
            source_image=source_b64,
            target_image=target_b64,
            seed=item.seed,
            params=item.params,
            model_id=model.model_id,
            revision=model.revision,
            timings={"generate_s": call.predict_s, "encode_s": time.perf_counter() - started},
            warnings=result.warnings,
        )


async def tokenize(
    runtime: ServiceRuntime[GenerationSettings, GenerationModel], request: TokenizeRequest
) -> TokenizeResponse:
    """Token counts by the pipeline's own tokenizers, off the model thread: counting never waits for a batch."""
    info = runtime.info()  # 503 until the model is ready
    assert runtime.runner is not None
    counts, limit = await run_in_threadpool(runtime.runner.count_tokens, list(request.texts))
    return TokenizeResponse(counts=counts, max_tokens=limit, model_id=info.model_id, revision=info.revision)
