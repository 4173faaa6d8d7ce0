"""Generation routes: ``POST /v1/pairs``, answered as JSON or streamed as server-sent events."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.generation.serving import GenerationServing
from services.kit import RuntimeDep, ServiceSpec, create_service_app, service_router
from spotdiff.protocol.generation import PairRequest, PairResponse
from spotdiff.settings import GenerationSettings, Settings

PAIRS = GenerationServing()

router = service_router("generation")


@router.post(
    "/v1/pairs",
    response_model=PairResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="an image pair from a caption pair: one shared initial latent, Prompt-to-Prompt edited",
)
async def create_pair(request: PairRequest, http: Request, runtime: RuntimeDep) -> Response:
    return await runtime.respond(PAIRS, request, http, stream=request.stream)


def create_app(settings: GenerationSettings | None = None) -> FastAPI:
    return create_service_app(ServiceSpec("generation", router, [PAIRS]), settings or Settings().generation)
