"""Typed async clients for the model services.

The same client talks to a service over the network (``base_url``) or to its app in this process
(``httpx.ASGITransport``): the embedded run and the distributed system share one code path.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from spotdiff.protocol.captioning import CaptionRequest, CaptionResponse
from spotdiff.protocol.common import ModelInfo
from spotdiff.protocol.errors import ErrorResponse
from spotdiff.protocol.generation import PairRequest, PairResponse, TokenizeRequest, TokenizeResponse
from spotdiff.protocol.regions import PromptedRequest, PromptedResponse, ProposeRequest, ProposeResponse
from spotdiff.protocol.rewriting import RewriteRequest, RewriteResponse
from spotdiff.protocol.similarity import CosineRequest, CosineResponse

ResponseT = TypeVar("ResponseT", bound=BaseModel)
RETRYABLE = frozenset({429, 502, 503, 504})


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return default


class ServiceCallError(Exception):
    """A service answered with an error envelope (or not at all)."""

    def __init__(self, service: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{service}: {status} {code}: {message}")
        self.service = service
        self.status = status
        self.code = code
        self.message = message

    @property
    def transient(self) -> bool:
        """Worth retrying later: overload, not ready, or no answer."""
        return self.status in RETRYABLE or self.status == 0


class ServiceClient:
    """One service: JSON in, a pydantic model out, the error envelope turned into `ServiceCallError`."""

    service = "service"

    def __init__(
        self,
        base_url: str = "http://service",
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        token: str | None = None,
        timeout: float = 600.0,
        retries: int = 4,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=base_url, transport=transport, headers=headers, timeout=timeout)
        self.retries = retries
        self.budget_s = timeout  # one call, its retries included, never takes longer

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, body: BaseModel | None = None) -> httpx.Response:
        """Send, retrying transient refusals (honouring ``Retry-After``, with jitter) a bounded number of times,
        all within the client's time budget."""
        payload = None if body is None else body.model_dump(mode="json", exclude_none=True)
        deadline = time.monotonic() + self.budget_s
        for attempt in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            try:
                response = await self.http.request(method, path, json=payload, timeout=max(remaining, 0.001))
            except httpx.TransportError as exc:
                error = ServiceCallError(self.service, 0, "unreachable", str(exc) or type(exc).__name__)
                retry_after = 0.5 * 2**attempt
            else:
                if response.is_success:
                    return response
                error = self._error(response)
                retry_after = _retry_after(response, default=0.5 * 2**attempt)
            pause = min(retry_after, 30.0) * (1 + 0.25 * random.random())
            if not error.transient or attempt == self.retries or time.monotonic() + pause >= deadline:
                raise error
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    def _error(self, response: httpx.Response) -> ServiceCallError:
        try:
            error = ErrorResponse.model_validate_json(response.content).error
        except ValidationError:  # not ours: a proxy's page, say
            return ServiceCallError(self.service, response.status_code, "http_error", response.text[:200])
        return ServiceCallError(self.service, response.status_code, error.code, error.message)

    async def _post(self, path: str, body: BaseModel, response_model: type[ResponseT]) -> ResponseT:
        response = await self._request("POST", path, body)
        return response_model.model_validate_json(response.content)

    async def ready(self) -> bool:
        try:
            response = await self.http.get("/readyz")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    async def wait_ready(self, timeout: float = 600.0, interval: float = 0.1) -> None:
        """Wait until `/readyz` says 200; a load failure or the timeout raises with the service's reason."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = await self.http.get("/readyz")
            except httpx.TransportError:
                body: dict[str, Any] = {}
            else:
                if response.status_code == 200:
                    return
                body = response.json()
                if body.get("status") == "failed":
                    raise ServiceCallError(self.service, 503, "load_failed", str(body.get("error")))
            if time.monotonic() > deadline:
                raise ServiceCallError(self.service, 503, "not_ready", f"not ready after {timeout:.0f}s: {body}")
            await asyncio.sleep(interval)

    async def info(self) -> ModelInfo:
        response = await self._request("GET", "/v1/info")
        return ModelInfo.model_validate_json(response.content)


class GenerationClient(ServiceClient):
    service = "generation"

    async def pair(self, request: PairRequest) -> PairResponse:
        return await self._post("/v1/pairs", request, PairResponse)

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResponse:
        return await self._post("/v1/tokenize", request, TokenizeResponse)


class SimilarityClient(ServiceClient):
    service = "similarity"

    async def cosine(self, request: CosineRequest) -> CosineResponse:
        return await self._post("/v1/cosine", request, CosineResponse)


class RegionsClient(ServiceClient):
    service = "regions"

    async def proposals(self, image_b64: str) -> ProposeResponse:
        """Automatic proposals with the service's settings."""
        return await self.propose(ProposeRequest(image=image_b64))

    async def propose(self, request: ProposeRequest) -> ProposeResponse:
        return await self._post("/v1/proposals", request, ProposeResponse)

    async def prompted(self, request: PromptedRequest) -> PromptedResponse:
        return await self._post("/v1/prompted", request, PromptedResponse)


class CaptioningClient(ServiceClient):
    service = "captioning"

    async def caption(self, request: CaptionRequest) -> CaptionResponse:
        return await self._post("/v1/captions", request, CaptionResponse)


class RewritingClient(ServiceClient):
    service = "rewriting"

    async def rewrite(self, request: RewriteRequest) -> RewriteResponse:
        return await self._post("/v1/rewrites", request, RewriteResponse)


@dataclass
class ServiceClients:
    """The four clients a pipeline needs, and the rewriting service's where one is configured."""

    generation: GenerationClient
    similarity: SimilarityClient
    regions: RegionsClient
    captioning: CaptioningClient
    rewriting: RewritingClient | None = None

    def pipeline(self) -> list[ServiceClient]:
        """The services each pair's steps call (their models are in every record's provenance)."""
        return [self.generation, self.similarity, self.regions, self.captioning]

    def all(self) -> list[ServiceClient]:
        return self.pipeline() if self.rewriting is None else [*self.pipeline(), self.rewriting]

    async def wait_ready(self, timeout: float = 600.0) -> None:
        await asyncio.gather(*(client.wait_ready(timeout) for client in self.all()))

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self.all()))

    @classmethod
    def over_http(
        cls,
        urls: dict[str, str],
        token: str | None = None,
        retries: int = 4,
        budgets: dict[str, float] | None = None,
        with_rewriting: bool = False,
    ) -> ServiceClients:
        """Clients of the services at ``urls``; ``budgets`` (seconds per call, by service) bound each call. The
        rewriting service's only ``with_rewriting`` (the gateway's: each pair's steps never call it)."""
        budgets = budgets or {}

        def options(name: str) -> dict[str, Any]:
            return {"token": token, "retries": retries, "timeout": budgets.get(name, 600.0)}

        return cls(
            generation=GenerationClient(urls["generation"], **options("generation")),
            similarity=SimilarityClient(urls["similarity"], **options("similarity")),
            regions=RegionsClient(urls["regions"], **options("regions")),
            captioning=CaptioningClient(urls["captioning"], **options("captioning")),
            rewriting=(
                RewritingClient(urls["rewriting"], **options("rewriting"))
                if with_rewriting and "rewriting" in urls
                else None
            ),
        )

    @classmethod
    def over_transports(cls, transports: Mapping[str, httpx.AsyncBaseTransport]) -> ServiceClients:
        """Clients that reach each service through a transport of its own: the apps in this process (ASGI), or
        stand-ins (mock transports), with the very client code the network uses."""
        return cls(
            generation=GenerationClient(transport=transports["generation"]),
            similarity=SimilarityClient(transport=transports["similarity"]),
            regions=RegionsClient(transport=transports["regions"]),
            captioning=CaptioningClient(transport=transports["captioning"]),
            rewriting=RewritingClient(transport=transports["rewriting"]) if "rewriting" in transports else None,
        )
