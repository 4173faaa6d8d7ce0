"""Generation routes: ``POST /v1/pairs``, answered as JSON or streamed as server-sent events, and
``POST /v1/tokenize``, prompts counted by the pipeline's tokenizers."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from services.generation.serving import GenerationServing, tokenize
from services.kit import RuntimeDep, ServiceSpec
from spotdiff.protocol.generation import PairRequest, PairResponse, TokenizeRequest, TokenizeResponse

SERVICE = ServiceSpec("generation", [GenerationServing])


@SERVICE.router.post(
    "/v1/pairs",
    response_model=PairResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="an image pair from a caption pair: one shared initial latent, Prompt-to-Prompt edited",
)
async def create_pair(request: PairRequest, http: Request, runtime: RuntimeDep) -> Response:
    return await runtime.respond(GenerationServing, request, http, stream=request.stream)


@SERVICE.router.post(
    "/v1/tokenize",
    response_model=TokenizeResponse,
    summary="prompts' token counts by the text encoders' tokenizers: whether they fit before any image is made",
)
async def count_tokens(request: TokenizeRequest, runtime: RuntimeDep) -> TokenizeResponse:
    return await tokenize(runtime, request)
