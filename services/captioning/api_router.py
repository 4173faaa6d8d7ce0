"""Captioning routes: ``POST /v1/captions`` answers a prompt about an image."""

from __future__ import annotations

from services.captioning.serving import CaptioningServing
from services.kit import RuntimeDep, ServiceSpec
from spotdiff.protocol.captioning import CaptionRequest, CaptionResponse

SERVICE = ServiceSpec("captioning", [CaptioningServing])


@SERVICE.router.post("/v1/captions", response_model=CaptionResponse, summary="text for an image and a prompt (greedy)")
async def caption(request: CaptionRequest, runtime: RuntimeDep) -> CaptionResponse:
    return await runtime.call(CaptioningServing, request)
