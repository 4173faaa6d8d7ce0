import asyncio

from spotdiff.clients import ServiceClients
from spotdiff.protocol.captioning import CaptionRequest

from .helpers import noise_image, png_b64


async def test_caption_is_readable_words_within_the_token_budget(clients: ServiceClients) -> None:
    response = await clients.captioning.caption(
        CaptionRequest(image=png_b64(noise_image(64, 64, 1)), prompt="Describe the image.", max_new_tokens=6)
    )
    assert 1 <= response.tokens <= 6
    assert response.text and "<" not in response.text and "USER" not in response.text


async def test_batched_answers_equal_single_answers(clients: ServiceClients) -> None:
    """Left padding with an attention mask: a short prompt answers the same alone or beside a long one."""
    requests = [
        CaptionRequest(image=png_b64(noise_image(64, 48, 1)), prompt="Describe.", max_new_tokens=8),
        CaptionRequest(
            image=png_b64(noise_image(96, 64, 2)),
            prompt="Please provide a clear description for this region: [0.12, 0.30, 0.56, 0.78].",
            max_new_tokens=8,
        ),
        CaptionRequest(image=png_b64(noise_image(80, 80, 3)), prompt="What is in the red box?", max_new_tokens=8),
    ]
    single = [(await clients.captioning.caption(request)).text for request in requests]
    batched = [answer.text for answer in await asyncio.gather(*map(clients.captioning.caption, requests))]
    assert batched == single


async def test_token_limit_is_a_422(clients: ServiceClients) -> None:
    response = await clients.captioning.http.post(
        "/v1/captions", json={"image": png_b64(noise_image(8, 8, 0)), "prompt": "x", "max_new_tokens": 100_000}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "too_many_tokens"
