"""The kit's app factory with a fake model: readiness, errors, limits, auth, metrics."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest_asyncio
from fastapi import FastAPI
from pydantic import BaseModel

from services.kit import (
    Call,
    ModelInfo,
    ModelRunner,
    RuntimeDep,
    ServiceSpec,
    Serving,
    create_service_app,
)
from spotdiff.settings import ServiceSettings

from .waiting import until


class EchoRequest(BaseModel):
    value: int


class EchoResponse(BaseModel):
    value: int


class EchoModel(ModelRunner):
    """Doubles numbers; ``warm`` holds its warm-up and ``release`` its batches, ``entered`` says one is running."""

    def __init__(
        self, settings: ServiceSettings, warm: threading.Event, release: threading.Event, entered: threading.Event
    ) -> None:
        self.settings, self.warm, self.release, self.entered = settings, warm, release, entered
        self.batches: list[int] = []

    def load(self) -> None:
        pass

    def warmup(self) -> None:
        self.warm.wait(10)

    def double(self, items: list[int]) -> list[int]:
        self.entered.set()
        self.release.wait(10)
        self.batches.append(len(items))
        return [2 * item for item in items]

    def info(self) -> ModelInfo:
        return ModelInfo(
            service="echo",
            model_id="echo",
            revision="1",
            dtype="none",
            device="cpu",
            max_batch_size=self.settings.max_batch_size,
            max_wait_ms=self.settings.max_wait_ms,
            max_queue=self.settings.max_queue,
        )


@dataclass
class Echo:
    """The echo app and the events its fake model waits on or signals."""

    app: FastAPI
    warm: threading.Event
    release: threading.Event
    entered: threading.Event


def make_app(**settings_overrides) -> Echo:
    warm, release, entered = threading.Event(), threading.Event(), threading.Event()
    release.set()

    class EchoServing(Serving[ServiceSettings, EchoModel, EchoRequest, int, int, EchoResponse]):
        op = "double"

        def setup(self, settings: ServiceSettings) -> EchoModel:
            return EchoModel(settings, warm, release, entered)

        def decode(self, request: EchoRequest, call: Call[ServiceSettings]) -> int:
            return request.value

        def predict(self, runner: EchoModel, items: list[int]) -> list[int]:
            return runner.double(items)

        def encode(self, result: int, item: int, call: Call[ServiceSettings]) -> EchoResponse:
            return EchoResponse(value=result)

    spec = ServiceSpec("echo", [EchoServing])

    @spec.router.post("/v1/double")
    async def double(request: EchoRequest, runtime: RuntimeDep) -> EchoResponse:
        return await runtime.call(EchoServing, request)

    settings = ServiceSettings(model="echo", max_batch_size=2, max_wait_ms=1, max_queue=2, **settings_overrides)
    return Echo(create_service_app(spec, settings), warm, release, entered)


@pytest_asyncio.fixture
async def echo() -> AsyncIterator[tuple[httpx.AsyncClient, Echo]]:
    served = make_app(max_request_bytes=2048)
    async with served.app.router.lifespan_context(served.app):
        transport = httpx.ASGITransport(app=served.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://echo") as client:
            yield client, served


async def wait_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 10
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "never ready"
        await asyncio.sleep(0.01)


async def test_ready_only_after_warmup(echo) -> None:
    client, served = echo
    assert (await client.get("/healthz")).status_code == 200
    not_ready = await client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["status"] == "loading"
    refused = await client.post("/v1/double", json={"value": 1})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"
    served.warm.set()
    await wait_ready(client)
    assert (await client.post("/v1/double", json={"value": 21})).json() == {"value": 42}
    info = (await client.get("/v1/info")).json()
    assert info["model_id"] == "echo" and info["max_batch_size"] == 2


async def test_full_queue_is_429_and_accepted_requests_finish(echo) -> None:
    client, served = echo
    served.warm.set()
    await wait_ready(client)
    served.release.clear()
    first = asyncio.ensure_future(client.post("/v1/double", json={"value": 0}))
    await until(served.entered.is_set, what="the first request in the model")  # holding the thread
    queued = [asyncio.ensure_future(client.post("/v1/double", json={"value": n})) for n in (1, 2)]
    batcher = served.app.state.runtime.batchers["double"]
    await until(lambda: batcher.depth == 2, what="two requests queued")
    refused = await client.post("/v1/double", json={"value": 3})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    served.release.set()
    answers = await asyncio.gather(first, *queued)
    assert [answer.json()["value"] for answer in answers] == [0, 2, 4]


async def test_errors_share_one_envelope(echo) -> None:
    client, served = echo
    served.warm.set()
    await wait_ready(client)
    invalid = await client.post("/v1/double", json={"value": "many"})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["code"] == "invalid_request" and "value" in invalid.json()["error"]["message"]
    missing = await client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_oversized_body_is_413(echo) -> None:
    client, served = echo
    served.warm.set()
    await wait_ready(client)
    big = await client.post(
        "/v1/double",
        content=b'{"value": 1, "pad": "' + b"x" * 4096 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"

    async def chunks():  # no Content-Length: the limit still holds
        for _ in range(10):
            yield b"x" * 512

    streamed = await client.post("/v1/double", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


async def test_bearer_token_guards_routes_but_not_probes() -> None:
    served = make_app(token="s3cret")
    served.warm.set()
    async with served.app.router.lifespan_context(served.app):
        transport = httpx.ASGITransport(app=served.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://echo") as client:
            await wait_ready(client)
            assert (await client.post("/v1/double", json={"value": 1})).status_code == 401
            wrong = await client.post("/v1/double", json={"value": 1}, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
            right = await client.post("/v1/double", json={"value": 1}, headers={"Authorization": "Bearer s3cret"})
            assert right.json() == {"value": 2}
            assert (await client.get("/metrics")).status_code == 200


async def test_metrics_are_prometheus_text(echo) -> None:
    client, served = echo
    served.warm.set()
    await wait_ready(client)
    await asyncio.gather(*(client.post("/v1/double", json={"value": n}) for n in range(2)))  # queue holds 2
    metrics = await client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'spotdiff_requests_total{method="POST",route="/v1/double",service="echo",status="200"} 2.0' in text
    assert 'spotdiff_batch_size_count{op="double",service="echo"}' in text
    assert 'spotdiff_batch_queue_depth{op="double",service="echo"} 0.0' in text
    assert 'spotdiff_ready{service="echo"} 1.0' in text
