"""The captioning service is family-agnostic: a Qwen2-VL checkpoint serves through the same code as LLaVA-NeXT."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio

from services.registry import create_app
from spotdiff.clients import CaptioningClient
from spotdiff.protocol.captioning import CaptionRequest
from spotdiff.settings import Settings

from .helpers import noise_image, png_b64


@pytest_asyncio.fixture(scope="module")
async def qwen(settings: Settings, tiny_dir: Path) -> AsyncIterator[CaptioningClient]:
    qwen_settings = settings.model_copy(
        update={"captioning": settings.captioning.model_copy(update={"model": str(tiny_dir / "qwen2_vl")})}
    )
    app = create_app("captioning", qwen_settings)
    async with app.router.lifespan_context(app):
        client = CaptioningClient(transport=httpx.ASGITransport(app=app))
        await client.wait_ready(120)
        yield client
        await client.aclose()


async def test_qwen2_vl_answers_batched_as_alone_and_decodes_cleanly(qwen: CaptioningClient) -> None:
    info = await qwen.info()
    assert info.extra["architecture"] == "Qwen2VLForConditionalGeneration"
    requests = [
        CaptionRequest(image=png_b64(noise_image(64, 64, 1)), prompt="Describe.", max_new_tokens=6),
        CaptionRequest(
            image=png_b64(noise_image(96, 48, 2)),
            prompt="Please provide a clear description for this region: [0.12, 0.30, 0.56, 0.78].",
            max_new_tokens=6,
        ),
    ]
    single = [(await qwen.caption(request)).text for request in requests]
    batched = [answer.text for answer in await asyncio.gather(*map(qwen.caption, requests))]
    assert batched == single
    for text in single:
        assert text and "<|" not in text and "assistant" not in text.split()[:1]
