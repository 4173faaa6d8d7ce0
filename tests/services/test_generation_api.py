import asyncio
import json

import numpy as np
import pytest

from spotdiff.clients import ServiceCallError, ServiceClients
from spotdiff.protocol.generation import PairRequest, TokenizeRequest

from .helpers import batches_larger_than_one, pixels

DOG, CAT = "A dog on the grass", "A cat on the grass"


async def test_pair_has_both_images_the_seed_and_provenance(clients: ServiceClients) -> None:
    response = await clients.generation.pair(PairRequest(source=DOG, target=CAT, seed=11))
    assert response.seed == 11
    assert (response.params.height, response.params.width) == (128, 128)
    assert pixels(response.source_image).shape == (128, 128, 3)
    assert response.revision.startswith("sha256:")
    assert response.timings["generate_s"] > 0


async def test_seed_is_returned_when_not_given(clients: ServiceClients) -> None:
    response = await clients.generation.pair(PairRequest(source=DOG, target=CAT, num_inference_steps=2))
    again = await clients.generation.pair(
        PairRequest(source=DOG, target=CAT, num_inference_steps=2, seed=response.seed)
    )
    assert np.array_equal(pixels(response.source_image), pixels(again.source_image))


async def test_identical_prompts_give_identical_images_from_the_shared_latent(clients: ServiceClients) -> None:
    response = await clients.generation.pair(PairRequest(source=DOG, target=DOG, seed=5, num_inference_steps=3))
    assert np.array_equal(pixels(response.source_image), pixels(response.target_image))


async def test_seeds_are_deterministic_and_distinct(clients: ServiceClients) -> None:
    # one at a time: a pair alone in its batch is bit-exact; pairs sharing a batch of another size may differ by
    # float reordering (test_batched_pairs_equal_single_runs bounds that), and a loaded machine splits batches
    first, second, other = [
        await clients.generation.pair(PairRequest(source=DOG, target=CAT, seed=seed, num_inference_steps=3))
        for seed in (1, 1, 2)
    ]
    assert np.array_equal(pixels(first.target_image), pixels(second.target_image))
    assert not np.array_equal(pixels(first.source_image), pixels(other.source_image))


async def test_batched_pairs_equal_single_runs(clients: ServiceClients) -> None:
    requests = [PairRequest(source=DOG, target=CAT, seed=seed, num_inference_steps=3) for seed in (21, 22, 23)]
    single = [await clients.generation.pair(request) for request in requests]
    before = batches_larger_than_one((await clients.generation.http.get("/metrics")).text, "pairs")
    batched = await asyncio.gather(*(clients.generation.pair(request) for request in requests))
    for alone, together in zip(single, batched, strict=True):
        for field in ("source_image", "target_image"):
            difference = np.abs(pixels(getattr(alone, field)) - pixels(getattr(together, field)))
            assert difference.max() <= 2  # float reordering only: at most 2 of 255 levels
    after = batches_larger_than_one((await clients.generation.http.get("/metrics")).text, "pairs")
    assert after > before  # the three pairs shared a UNet batch


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"source": DOG, "target": CAT, "num_inference_steps": 0}, "invalid_request"),
        ({"source": DOG, "target": CAT, "height": 1_000_000}, "invalid_request"),
        ({"source": "", "target": CAT}, "invalid_request"),
        ({"source": DOG, "target": CAT, "height": 100}, "invalid_request"),  # not a multiple of 8
        ({"source": DOG, "target": CAT, "num_inference_steps": 10_000}, "too_many_steps"),
        ({"source": DOG, "target": CAT, "height": 4096, "width": 4096}, "too_many_pixels"),
    ],
)
async def test_bad_requests_are_422_with_a_reason(clients: ServiceClients, body: dict, code: str) -> None:
    response = await clients.generation.http.post("/v1/pairs", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


async def test_client_raises_a_typed_error(clients: ServiceClients) -> None:
    with pytest.raises(ServiceCallError) as caught:
        await clients.generation.pair(PairRequest(source=DOG, target=CAT, num_inference_steps=10_000))
    assert caught.value.status == 422 and not caught.value.transient


async def test_info_lists_components_and_scheduler(clients: ServiceClients) -> None:
    info = await clients.generation.info()
    assert info.service == "generation" and info.device == "cpu" and info.dtype == "float32"
    assert info.extra["scheduler"] == "EulerDiscreteScheduler"
    assert {"unet", "vae", "text_encoder", "text_encoder_2"} <= set(info.extra["components"])


async def test_response_records_the_p2p_settings(clients: ServiceClients) -> None:
    response = await clients.generation.pair(PairRequest(source=DOG, target=CAT, seed=1, num_inference_steps=2))
    assert (response.params.edit, response.params.cross_replace, response.params.self_replace) == ("refine", 1.0, 0.4)
    again = await clients.generation.pair(PairRequest(source=DOG, target=CAT, seed=1, num_inference_steps=2))
    assert (again.source_image, again.target_image) == (response.source_image, response.target_image)  # byte-identical


async def test_a_prompt_over_77_tokens_is_truncated_and_says_so(clients: ServiceClients) -> None:
    long = "A dog on the grass " + "with a very long tail " * 20
    response = await clients.generation.pair(PairRequest(source=long, target=CAT, num_inference_steps=2))
    assert response.warnings == ["source prompt is over 77 tokens and was truncated"]


async def test_a_prompt_cut_by_the_second_text_encoder_only_is_said_to_be_truncated(clients: ServiceClients) -> None:
    """SDXL's second tokenizer splits "!!" into two tokens where the first keeps one: 77 tokens to the first text
    encoder are 78 to the second, which cuts the last. The warning agrees with /v1/tokenize's count."""
    edge = "a " * 73 + "wow!!"
    (count,) = (await clients.generation.tokenize(TokenizeRequest(texts=[edge]))).counts
    assert count == 78
    response = await clients.generation.pair(PairRequest(source=CAT, target=edge, num_inference_steps=2))
    assert response.warnings == ["target prompt is over 77 tokens and was truncated"]
    fits = await clients.generation.pair(PairRequest(source=CAT, target="a " * 74 + "wow", num_inference_steps=2))
    assert fits.warnings == []


async def test_replace_with_unequal_tokens_is_a_422(clients: ServiceClients) -> None:
    body = {"source": "a cake", "target": "a confetti apple bread", "edit": "replace", "num_inference_steps": 2}
    response = await clients.generation.http.post("/v1/pairs", json=body)
    assert response.status_code == 422 and response.json()["error"]["code"] == "replace_needs_equal_tokens"


async def test_progress_streams_as_server_sent_events(clients: ServiceClients) -> None:
    body = {"source": DOG, "target": CAT, "seed": 3, "num_inference_steps": 4, "stream": True}
    events: list[tuple[str, dict]] = []
    async with clients.generation.http.stream("POST", "/v1/pairs", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((event or "", json.loads(line.removeprefix("data: "))))
    assert [data["step"] for name, data in events if name == "progress"] == [1, 2, 3, 4]
    name, result = events[-1]
    assert name == "result" and result["seed"] == 3
    plain = await clients.generation.pair(PairRequest(source=DOG, target=CAT, seed=3, num_inference_steps=4))
    assert result["target_image"] == plain.target_image
