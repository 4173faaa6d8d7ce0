"""The gateway's single-service routes: their OpenAPI examples run, bad input is a clear 4xx whichever
service it is bound for, keys are checked, and the per-service bound answers 429 with Retry-After."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from PIL import Image

from gateway.app import create_app
from gateway.deps import hash_key
from spotdiff.settings import Settings
from tests.services.kit.test_codec import png_header_only

from .conftest import KEYS, REDIS_URL

HEADERS = {"Authorization": f"Bearer {KEYS['alice']}"}


def gateway_settings(stack: dict, **gateway: Any) -> Settings:
    return Settings(
        profile="tiny",
        redis_url=REDIS_URL,
        storage_url=str(stack["storage"]),
        gateway={"api_keys": [hash_key(KEYS["alice"])], **gateway},
        worker={"service_urls": stack["urls"]},
    )


@pytest_asyncio.fixture(scope="module")
async def gateway(stack: dict) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(gateway_settings(stack, max_request_bytes=4 * 2**20))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client


def png_b64(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 200)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def test_every_documented_example_runs(gateway: httpx.AsyncClient) -> None:
    schema = (await gateway.get("/openapi.json")).json()
    ran = []
    for path, methods in schema["paths"].items():
        operation = methods.get("post", {})
        if "services" not in operation.get("tags", []):
            continue
        examples = operation["requestBody"]["content"]["application/json"].get("examples", {})
        assert examples, f"{path} has no example"
        for name, example in examples.items():
            response = await gateway.post(path, json=example["value"], headers=HEADERS)
            assert response.status_code == 200, (path, name, response.text)
            ran.append(path)
    assert sorted(set(ran)) == [
        "/v1/captioning/captions",
        "/v1/generation/pairs",
        "/v1/generation/tokenize",
        "/v1/regions/prompted",
        "/v1/regions/proposals",
        "/v1/rewriting/rewrites",
        "/v1/similarity/cosine",
    ]


async def test_a_generated_pair_comes_back_with_its_seed(gateway: httpx.AsyncClient) -> None:
    body = {"source": "A dog on the grass", "target": "A cat on the grass", "seed": 11}
    first = (await gateway.post("/v1/generation/pairs", json=body, headers=HEADERS)).json()
    second = (await gateway.post("/v1/generation/pairs", json=body, headers=HEADERS)).json()
    assert first["seed"] == 11 and first["source_image"] == second["source_image"]
    assert first["source_image"] != first["target_image"]


IMAGE_ROUTES = {
    "/v1/regions/proposals": lambda image: {"image": image},
    "/v1/regions/prompted": lambda image: {"image": image, "prompts": [{"box": {"x1": 1, "y1": 1, "x2": 9, "y2": 9}}]},
    "/v1/captioning/captions": lambda image: {"image": image, "prompt": "What is in the picture?"},
    "/v1/similarity/cosine": lambda image: {
        "images": {"1": image},
        "pairs": [{"a": {"image": "1"}, "b": {"text": "a"}}],
    },
}
BAD_IMAGES = {
    "corrupt": (base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode(), 400),
    "not_base64": ("this is not base64 at all!", 400),
    "empty": ("", 422),
    "huge": (png_b64(4200, 4100), 413),  # 17.2 Mpx, over the 16.8 Mpx limit, though the file is small
    "bomb": (base64.b64encode(png_header_only(200_000, 200_000)).decode(), 413),
    "gif": (base64.b64encode(b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00;").decode(), 400),
}


async def test_prompts_are_counted_by_the_generation_models_tokenizers(gateway: httpx.AsyncClient) -> None:
    body = {"texts": ["A dog on the grass", "in 1984", "wow!!"]}
    answer = await gateway.post("/v1/generation/tokenize", json=body, headers=HEADERS)
    assert answer.status_code == 200, answer.text
    assert answer.json()["counts"] == [7, 7, 5] and answer.json()["max_tokens"] == 77


@pytest.mark.parametrize("route", sorted(IMAGE_ROUTES))
@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
async def test_bad_images_are_a_clear_4xx_on_every_route(gateway: httpx.AsyncClient, route: str, kind: str) -> None:
    image, status = BAD_IMAGES[kind]
    response = await gateway.post(route, json=IMAGE_ROUTES[route](image), headers=HEADERS)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/generation/pairs", {"source": "", "target": "A cat"}),
        ("/v1/generation/pairs", {"source": "x" * 1001, "target": "A cat"}),
        ("/v1/generation/pairs", {"source": "A dog", "target": "A cat", "colour": "red"}),
        ("/v1/generation/pairs", {"source": "A dog", "target": "A cat", "num_inference_steps": 10_000}),
        ("/v1/generation/pairs", {"source": "A dog", "target": "A cat", "width": 4096, "height": 4096}),
        ("/v1/generation/pairs", {"source": "A dog", "target": "A cat", "stream": True}),
        ("/v1/generation/tokenize", {"texts": []}),
        ("/v1/generation/tokenize", {"texts": ["x" * 1001]}),
        ("/v1/similarity/cosine", {"pairs": [{"a": {"image": "missing"}, "b": {"text": "a"}}]}),
        ("/v1/captioning/captions", {"image": png_b64(8, 8), "prompt": "hi", "max_new_tokens": 100_000}),
    ],
)
async def test_bad_bodies_are_422(gateway: httpx.AsyncClient, route: str, body: dict) -> None:
    response = await gateway.post(route, json=body, headers=HEADERS)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]


async def test_keys_and_sizes_are_checked_before_any_service_is_called(gateway: httpx.AsyncClient) -> None:
    body = {"source": "A dog", "target": "A cat"}
    assert (await gateway.post("/v1/generation/pairs", json=body)).status_code == 401
    wrong = {"Authorization": "Bearer wrong-key"}
    assert (await gateway.post("/v1/generation/pairs", json=body, headers=wrong)).status_code == 401
    oversized = {"image": "A" * (5 * 2**20), "prompt": "hi"}
    response = await gateway.post("/v1/captioning/captions", json=oversized, headers=HEADERS)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


async def test_calls_over_the_bound_get_429_with_retry_after(stack: dict) -> None:
    app = create_app(gateway_settings(stack, max_concurrent_service_calls=2))
    body = {"image": png_b64(64, 64), "prompt": "Describe the picture.", "max_new_tokens": 8}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        answers = await asyncio.gather(
            *(client.post("/v1/captioning/captions", json=body, headers=HEADERS) for _ in range(12))
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses.count(200) >= 2 and set(statuses) <= {200, 429} and 429 in statuses
        for answer in answers:
            if answer.status_code == 429:
                assert float(answer.headers["Retry-After"]) > 0 and answer.json()["error"]["code"] == "busy"
        # the bound holds calls in flight, not a quota: once they end, the next call goes through
        assert (await client.post("/v1/captioning/captions", json=body, headers=HEADERS)).status_code == 200
