"""Single-service routes: other apps call one model service through the gateway, synchronously.

The bodies are the services' own wire models, so the gateway's OpenAPI documents them and rejects a bad
body before it travels. Each service gets a bounded number of calls in flight from this gateway; one more
is refused at once with 429 and ``Retry-After`` rather than queued here, so a burst cannot pile up memory in
the gateway. The services' own refusals (4xx, 429, 503) pass through unchanged, envelope and headers included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Body, Depends, Request

from gateway.deps import OwnerDep
from httpkit.errors import ERROR_RESPONSES, ServiceError
from spotdiff.clients import ServiceCallError, ServiceClients
from spotdiff.protocol.captioning import CaptionRequest, CaptionResponse
from spotdiff.protocol.generation import PairRequest, PairResponse
from spotdiff.protocol.regions import PromptedRequest, PromptedResponse, ProposeRequest, ProposeResponse
from spotdiff.protocol.similarity import CosineRequest, CosineResponse
from spotdiff.settings import Settings

T = TypeVar("T")
RETRY_AFTER_S = "1"
# a 64x64 white PNG: small enough to read, big enough for every service to accept
EXAMPLE_IMAGE = (
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAATUlEQVR42u3PQQ0AAAgEILV/5zOFDzdoQCepz6aeExAQEBAQEBAQEBAQEBAQEBAQ"
    "EBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQELi3cqoDfaKuZM4AAAAASUVORK5CYII="
)


class ServiceGates:
    """The gateway's clients for the services, each behind a semaphore of ``limit`` calls."""

    def __init__(self, settings: Settings) -> None:
        token = settings.worker.service_token
        # no retries here: a refusal goes back to the caller, who knows whether waiting is worth it
        self.clients = ServiceClients.over_http(
            settings.worker.service_urls,
            token=token.get_secret_value() if token else None,
            retries=0,
            budgets=settings.service_budgets(),
        )
        self.limit = settings.gateway.max_concurrent_service_calls
        self.gates = {client.service: asyncio.Semaphore(self.limit) for client in self.clients.all()}

    async def call(self, service: str, work: Callable[[ServiceClients], Awaitable[T]]) -> T:
        gate = self.gates[service]
        if gate.locked():
            raise ServiceError(
                429,
                "busy",
                f"{self.limit} {service} calls are in flight from this gateway; try again shortly",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        async with gate:
            try:
                return await work(self.clients)
            except ServiceCallError as exc:
                raise _relayed(exc) from exc

    async def aclose(self) -> None:
        await self.clients.aclose()


def _relayed(exc: ServiceCallError) -> ServiceError:
    """The service's refusal as the gateway's answer: client errors as they are, the rest as 502/503."""
    if exc.status == 0:
        return ServiceError(
            503, "service_unavailable", f"{exc.service} is unreachable", headers={"Retry-After": RETRY_AFTER_S}
        )
    if exc.status in (429, 503):
        return ServiceError(exc.status, exc.code, exc.message, headers={"Retry-After": RETRY_AFTER_S})
    if 400 <= exc.status < 500:
        return ServiceError(exc.status, exc.code, exc.message)
    return ServiceError(502, "bad_gateway", f"{exc.service} failed: {exc.code}: {exc.message}")


def get_gates(request: Request) -> ServiceGates:
    gates: ServiceGates = request.app.state.service_gates
    return gates


GatesDep = Annotated[ServiceGates, Depends(get_gates)]
router = APIRouter(prefix="/v1", tags=["services"], responses={**ERROR_RESPONSES, 502: {}})


@router.post("/generation/pairs", response_model=PairResponse, summary="generate one Prompt-to-Prompt image pair")
async def generate_pair(
    body: Annotated[
        PairRequest,
        Body(
            openapi_examples={
                "reference": {
                    "summary": "the reference's settings, one seed",
                    "value": {"source": "A dog on the grass", "target": "A cat on the grass", "seed": 7},
                }
            }
        ),
    ],
    _: OwnerDep,
    gates: GatesDep,
) -> PairResponse:
    if body.stream:
        raise ServiceError(422, "invalid_request", "stream: progress events come from the generation service itself")
    return await gates.call("generation", lambda clients: clients.generation.pair(body))


@router.post("/similarity/cosine", response_model=CosineResponse, summary="cosine of image and text pairs")
async def cosine(
    body: Annotated[
        CosineRequest,
        Body(
            openapi_examples={
                "crop_vs_noun": {
                    "summary": "a crop of an image against a noun, and two texts",
                    "value": {
                        "images": {"1": EXAMPLE_IMAGE},
                        "pairs": [
                            {"a": {"image": "1", "box": {"x1": 8, "y1": 8, "x2": 40, "y2": 40}}, "b": {"text": "cat"}},
                            {"a": {"text": "a dog"}, "b": {"text": "a cat"}},
                        ],
                    },
                }
            }
        ),
    ],
    _: OwnerDep,
    gates: GatesDep,
) -> CosineResponse:
    return await gates.call("similarity", lambda clients: clients.similarity.cosine(body))


@router.post("/regions/proposals", response_model=ProposeResponse, summary="segment-anything automatic proposals")
async def proposals(
    body: Annotated[
        ProposeRequest,
        Body(openapi_examples={"default": {"summary": "the service's settings", "value": {"image": EXAMPLE_IMAGE}}}),
    ],
    _: OwnerDep,
    gates: GatesDep,
) -> ProposeResponse:
    return await gates.call("regions", lambda clients: clients.regions.propose(body))


@router.post("/regions/prompted", response_model=PromptedResponse, summary="segment-anything at box/point prompts")
async def prompted(
    body: Annotated[
        PromptedRequest,
        Body(
            openapi_examples={
                "box": {
                    "summary": "one box prompt",
                    "value": {"image": EXAMPLE_IMAGE, "prompts": [{"box": {"x1": 8, "y1": 8, "x2": 40, "y2": 40}}]},
                }
            }
        ),
    ],
    _: OwnerDep,
    gates: GatesDep,
) -> PromptedResponse:
    return await gates.call("regions", lambda clients: clients.regions.prompted(body))


@router.post("/captioning/captions", response_model=CaptionResponse, summary="a vision-language model's answer")
async def caption(
    body: Annotated[
        CaptionRequest,
        Body(
            openapi_examples={
                "region_label": {
                    "summary": "stage 1 of Img-Diff: label a region",
                    "value": {
                        "image": EXAMPLE_IMAGE,
                        "prompt": "Please provide a clear description for this region: [0.12, 0.12, 0.62, 0.62].",
                        "max_new_tokens": 64,
                    },
                }
            }
        ),
    ],
    _: OwnerDep,
    gates: GatesDep,
) -> CaptionResponse:
    return await gates.call("captioning", lambda clients: clients.captioning.caption(body))
