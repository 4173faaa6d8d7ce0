"""Generation routes: ``POST /v1/pairs``, answered as JSON or streamed as server-sent events."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from services.generation.serving import GenerationServing
from services.kit import RuntimeDep, ServiceSpec
from spotdiff.protocol.generation import PairRequest, PairResponse

SERVICE = ServiceSpec("generation", [GenerationServing])


@SERVICE.router.post(
    "/v1/pairs",
    response_model=PairResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="an image pair from a caption pair: one shared initial latent, Prompt-to-Prompt edited",
)
async def create_pair(request: PairRequest, http: Request, runtime: RuntimeDep) -> Response:
    return await runtime.respond(GenerationServing, request, http, stream=request.stream)
