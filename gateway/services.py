"""Single-service routes: other apps call one model service through the gateway, synchronously.

The routes are one table (`RELAYS`), each built the same way; their bodies are the services' own wire models, so the
gateway's OpenAPI documents them and rejects a bad body before it travels. Each service gets a bounded number of
calls in flight from this gateway; one more is refused at once with 429 and ``Retry-After`` rather than queued here,
so a burst cannot pile up memory in the gateway. The services' own refusals (4xx, 429, 503) pass through unchanged,
envelope and headers included. (No postponed annotations here: each route's body type is made at run time.)
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel

from gateway.deps import OwnerDep
from httpkit.errors import ERROR_RESPONSES, ServiceError
from spotdiff.clients import RewritingClient, ServiceCallError, ServiceClients
from spotdiff.protocol.captioning import CaptionRequest, CaptionResponse
from spotdiff.protocol.generation import PairRequest, PairResponse, TokenizeRequest, TokenizeResponse
from spotdiff.protocol.regions import PromptedRequest, PromptedResponse, ProposeRequest, ProposeResponse
from spotdiff.protocol.rewriting import RewriteRequest, RewriteResponse
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
            with_rewriting=True,
        )
        self.limit = settings.gateway.max_concurrent_service_calls
        self.gates = {client.service: asyncio.Semaphore(self.limit) for client in self.clients.all()}

    async def call(self, service: str, work: Callable[[ServiceClients], Awaitable[T]]) -> T:
        gate = self.gates.get(service)
        if gate is None:
            raise ServiceError(503, "service_unavailable", f"no {service} service is configured (worker.service_urls)")
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
                raise relayed(exc) from exc

    async def aclose(self) -> None:
        await self.clients.aclose()


def relayed(exc: ServiceCallError) -> ServiceError:
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
BOX = {"x1": 8, "y1": 8, "x2": 40, "y2": 40}


def _no_stream(body: Any) -> None:
    if body.stream:
        raise ServiceError(422, "invalid_request", "stream: progress events come from the generation service itself")


@dataclass(frozen=True)
class Relay:
    """One single-service route: its path and summary, the service's wire models, the client call it relays,
    and the examples its OpenAPI shows."""

    name: str
    path: str
    summary: str
    service: str
    request: type[BaseModel]
    response: type[BaseModel]
    call: Callable[[ServiceClients, Any], Awaitable[BaseModel]]
    examples: dict[str, Any]
    check: Callable[[Any], None] = field(default=lambda _: None)


RELAYS = (
    Relay(
        "generate_pair",
        "/generation/pairs",
        "generate one Prompt-to-Prompt image pair",
        "generation",
        PairRequest,
        PairResponse,
        lambda clients, body: clients.generation.pair(body),
        {
            "reference": {
                "summary": "the reference's settings, one seed",
                "value": {"source": "A dog on the grass", "target": "A cat on the grass", "seed": 7},
            }
        },
        check=_no_stream,
    ),
    Relay(
        "tokenize",
        "/generation/tokenize",
        "count prompts' tokens with the generation model's tokenizers",
        "generation",
        TokenizeRequest,
        TokenizeResponse,
        lambda clients, body: clients.generation.tokenize(body),
        {
            "pair": {
                "summary": "both captions of a pair",
                "value": {"texts": ["A dog on the grass", "A cat on the grass"]},
            }
        },
    ),
    Relay(
        "cosine",
        "/similarity/cosine",
        "cosine of image and text pairs",
        "similarity",
        CosineRequest,
        CosineResponse,
        lambda clients, body: clients.similarity.cosine(body),
        {
            "crop_vs_noun": {
                "summary": "a crop of an image against a noun, and two texts",
                "value": {
                    "images": {"1": EXAMPLE_IMAGE},
                    "pairs": [
                        {"a": {"image": "1", "box": BOX}, "b": {"text": "cat"}},
                        {"a": {"text": "a dog"}, "b": {"text": "a cat"}},
                    ],
                },
            }
        },
    ),
    Relay(
        "proposals",
        "/regions/proposals",
        "segment-anything automatic proposals",
        "regions",
        ProposeRequest,
        ProposeResponse,
        lambda clients, body: clients.regions.propose(body),
        {"default": {"summary": "the service's settings", "value": {"image": EXAMPLE_IMAGE}}},
    ),
    Relay(
        "prompted",
        "/regions/prompted",
        "segment-anything at box/point prompts",
        "regions",
        PromptedRequest,
        PromptedResponse,
        lambda clients, body: clients.regions.prompted(body),
        {"box": {"summary": "one box prompt", "value": {"image": EXAMPLE_IMAGE, "prompts": [{"box": BOX}]}}},
    ),
    Relay(
        "caption",
        "/captioning/captions",
        "a vision-language model's answer",
        "captioning",
        CaptionRequest,
        CaptionResponse,
        lambda clients, body: clients.captioning.caption(body),
        {
            "region_label": {
                "summary": "stage 1 of Img-Diff: label a region",
                "value": {
                    "image": EXAMPLE_IMAGE,
                    "prompt": "Please provide a clear description for this region: [0.12, 0.12, 0.62, 0.62].",
                    "max_new_tokens": 64,
                },
            }
        },
    ),
    Relay(
        "rewrite",
        "/rewriting/rewrites",
        "a caption with one object replaced, by a language model (seeded)",
        "rewriting",
        RewriteRequest,
        RewriteResponse,
        lambda clients, body: _rewriting(clients).rewrite(body),
        {"orig": {"summary": "stage (a) of Img-Diff", "value": {"caption": "A dog on the grass.", "seed": 7}}},
    ),
)


def _rewriting(clients: ServiceClients) -> RewritingClient:
    assert clients.rewriting is not None  # `ServiceGates.call` has a gate for it only when it is configured
    return clients.rewriting


def _add_route(relay: Relay) -> None:
    RequestBody = Annotated[relay.request, Body(openapi_examples=relay.examples)]  # type: ignore[name-defined]

    async def route(body: RequestBody, _: OwnerDep, gates: GatesDep) -> BaseModel:
        relay.check(body)
        return await gates.call(relay.service, lambda clients: relay.call(clients, body))

    router.add_api_route(
        relay.path, route, methods=["POST"], name=relay.name, response_model=relay.response, summary=relay.summary
    )


for _relay in RELAYS:
    _add_route(_relay)
