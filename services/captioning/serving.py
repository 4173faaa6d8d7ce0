"""Captioning serving: text for an image and a prompt, greedy, batched across requests."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from services.captioning.jobs import Caption, CaptionJob
from services.kit import Call, ServiceError, Serving
from services.kit.codec import decode_image
from spotdiff.protocol.captioning import CaptionRequest, CaptionResponse
from spotdiff.settings import CaptioningSettings

if TYPE_CHECKING:
    from services.captioning.model import CaptioningModel


class CaptioningServing(
    Serving[CaptioningSettings, "CaptioningModel", CaptionRequest, CaptionJob, Caption, CaptionResponse]
):
    """Prompts with equal ``max_new_tokens`` share one ``generate`` call; the result is a ``Caption``."""

    op = "captions"

    def setup(self, settings: CaptioningSettings) -> CaptioningModel:
        from services.captioning.model import CaptioningModel

        return CaptioningModel(settings)

    def decode(self, request: CaptionRequest, call: Call[CaptioningSettings]) -> CaptionJob:
        """The token budget checked first (it costs nothing), then the image decoded under the pixel limit."""
        limits = call.settings
        if request.max_new_tokens > limits.max_new_tokens_limit:
            raise ServiceError(
                422,
                "too_many_tokens",
                f"max_new_tokens {request.max_new_tokens} is over the limit of {limits.max_new_tokens_limit}",
            )
        image = decode_image(request.image, max_pixels=limits.max_image_pixels)
        return CaptionJob(image, request.prompt, request.max_new_tokens)

    def batch_key(self, item: CaptionJob) -> Hashable:
        return item.max_new_tokens

    def predict(self, runner: CaptioningModel, items: list[CaptionJob]) -> list[Caption]:
        return runner.caption(items)

    def encode(self, result: Caption, item: CaptionJob, call: Call[CaptioningSettings]) -> CaptionResponse:
        return CaptionResponse(
            text=result.text, tokens=result.tokens, image_tokens=result.image_tokens, model_id=call.settings.model
        )
