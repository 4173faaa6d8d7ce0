"""Captioning routes: ``POST /v1/captions`` answers a prompt about an image."""

from __future__ import annotations

from fastapi import FastAPI

from services.captioning.serving import CaptioningServing
from services.kit import RuntimeDep, ServiceSpec, create_service_app, service_router
from spotdiff.protocol.captioning import CaptionRequest, CaptionResponse
from spotdiff.settings import CaptioningSettings, Settings

CAPTIONS = CaptioningServing()

router = service_router("captioning")


@router.post("/v1/captions", response_model=CaptionResponse, summary="text for an image and a prompt (greedy)")
async def caption(request: CaptionRequest, runtime: RuntimeDep) -> CaptionResponse:
    return await runtime.call(CAPTIONS, request)


def create_app(settings: CaptioningSettings | None = None) -> FastAPI:
    return create_service_app(ServiceSpec("captioning", router, [CAPTIONS]), settings or Settings().captioning)
