"""The rewriting service on the tiny Llama: seeded sampling that a batch cannot change, the reference's prompt in
the model's conversation, the recipes' post-filters on what the model says, and its answers turned into pairs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from services.rewriting.jobs import Answer, RewriteJob
from services.rewriting.serving import RewritingServing
from spotdiff.captions import ModelRewriter, pairs_from_captions
from spotdiff.clients import RewritingClient
from spotdiff.imgdiff.rewrite import DJ_SYSTEM, DJ_TASK, orig_prompt, user_message
from spotdiff.protocol.rewriting import RewriteRequest
from spotdiff.settings import RewritingSettings, Settings

CAPTIONS = ["A dog on the grass.", "Two cats sleeping on a long red sofa near the window.", "A bus on a street."]


@pytest_asyncio.fixture(scope="module")
async def rewriting(settings: Settings) -> AsyncIterator[RewritingClient]:
    from services.registry import service_in_process

    patient = settings.model_copy(update={"rewriting": settings.rewriting.model_copy(update={"max_wait_ms": 50.0})})
    async with service_in_process("rewriting", RewritingClient, patient) as client:
        yield client


async def test_the_same_seed_gives_the_same_rewrite_and_seeds_differ(rewriting: RewritingClient) -> None:
    first = await rewriting.rewrite(RewriteRequest(caption=CAPTIONS[1], seed=11))
    again = await rewriting.rewrite(RewriteRequest(caption=CAPTIONS[1], seed=11))
    assert first == again and 1 <= first.tokens <= 24
    others = {(await rewriting.rewrite(RewriteRequest(caption=CAPTIONS[1], seed=seed))).answer for seed in range(6)}
    assert len(others) > 1  # the seed is what varies the sampling


async def test_a_batch_does_not_change_a_captions_rewrite(rewriting: RewritingClient) -> None:
    """Each row samples from its own generator: alone or batched with others, the same answer."""
    requests = [RewriteRequest(caption=caption, seed=seed) for seed, caption in enumerate(CAPTIONS)]
    alone = [(await rewriting.rewrite(request)).answer for request in requests]
    batched = [answer.answer for answer in await asyncio.gather(*map(rewriting.rewrite, requests))]
    assert batched == alone


async def test_info_names_the_recipe_and_the_sampling_it_inherits(rewriting: RewritingClient) -> None:
    info = await rewriting.info()
    assert info.service == "rewriting" and info.extra["architecture"] == "LlamaForCausalLM"
    # the tiny model's generation_config is vicuna-7b-v1.5's: top_p 0.6, and transformers' top_k 50
    assert (info.extra["template"], info.extra["top_p"], info.extra["top_k"]) == ("vicuna", 0.6, 50)
    assert (info.extra["recipe"], info.extra["temperature"]) == ("orig", 0.8)


async def test_bad_bodies_are_422s(rewriting: RewritingClient) -> None:
    for body in ({"caption": ""}, {"caption": "a dog", "seed": -1}, {"caption": "a dog", "seed": 2**31}, {}):
        response = await rewriting.http.post("/v1/rewrites", json=body)
        assert response.status_code == 422, body


def test_the_prompt_is_the_references_in_each_template(tiny_dir: Path) -> None:
    from services.rewriting.model import RewritingModel

    model = RewritingModel(RewritingSettings(model=str(tiny_dir / "llama")))
    model.load()
    assert model.template == "vicuna"  # the tiny tokenizer, like Vicuna's, has no chat template
    assert model.render_prompt("A dog on the grass") == orig_prompt("A dog on the grass")
    dj = RewritingModel(RewritingSettings(model=str(tiny_dir / "llama"), recipe="dj", template="chat"))
    dj.load()
    dj.tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    expected = f"<|system|>{DJ_SYSTEM}\n<|user|>{user_message('A dog on the grass', DJ_TASK)}\n<|assistant|>"
    assert dj.render_prompt("A dog on the grass") == expected


@pytest.mark.parametrize(
    ("recipe", "answer", "text", "reason"),
    [
        ("orig", "A cat on the grass.</s>", "A cat on the grass.", "rewritten"),
        ("orig", "I replaced the dog: A cat on the grass.", None, "mentions_replac"),
        ("orig", "Sentence --- A cat on the grass.", "A cat on the grass.", "rewritten"),
        ("dj", ' "I replaced the dog: a cat." ', "I replaced the dog: a cat.", "rewritten"),  # DJ only trims
        ("dj", '  ""  ', None, "empty_answer"),
    ],
)
def test_the_recipes_post_filters_decide_what_is_a_caption(
    recipe: str, answer: str, text: str | None, reason: str
) -> None:
    class FakeCall:
        settings = RewritingSettings(model="m", recipe=recipe)  # type: ignore[arg-type]

    response = RewritingServing().encode(
        Answer(answer, "the prompt", 9), RewriteJob("A dog on the grass.", 0), FakeCall()
    )  # type: ignore[arg-type]
    assert (response.text, response.reason, response.answer, response.tokens) == (text, reason, answer, 9)


async def test_the_models_answers_become_pairs_or_drops_with_reasons(rewriting: RewritingClient) -> None:
    """Random weights rarely say a sentence: every ask ends as a pair or a drop, each drop with its reason."""
    captions = list(enumerate(CAPTIONS, 1))
    pairs, dropped = await pairs_from_captions(captions, rewrites=2, rewriter=ModelRewriter(rewriting))
    assert len(pairs) + len(dropped) == 2 * len(CAPTIONS)
    assert {drop.reason for drop in dropped} <= {
        "mentions_replac", "mentions_modified", "mentions_become", "empty_answer", "same_sentence",
        "no_changed_noun", "too_many_changed_nouns", "too_long", "same_rewrite_again",
    }  # fmt: skip


async def test_a_language_models_rewrite_names_the_model_and_its_changed_nouns() -> None:
    """Through the real client against a stand-in service that answers as a good model would."""

    def answer(request: httpx.Request) -> httpx.Response:
        caption = json.loads(request.content)["caption"]
        text = caption.replace("dog", "cat") if "dog" in caption else caption
        body = {"text": text, "reason": "rewritten", "answer": text, "tokens": 7, "model_id": "lmsys/vicuna-7b-v1.5"}
        return httpx.Response(200, json=body)

    client = RewritingClient(transport=httpx.MockTransport(answer))
    pairs, dropped = await pairs_from_captions(
        [(1, "A dog on the grass."), (2, "A bus on a street.")], rewriter=ModelRewriter(client)
    )
    assert [(drop.line, drop.reason) for drop in dropped] == [(2, "same_sentence")]
    (pair,) = pairs
    assert (pair.id, pair.target, pair.source_objects, pair.target_objects) == (
        "l1-r0", "A cat on the grass.", ["dog"], ["cat"],
    )  # fmt: skip
    assert pair.rewrite is not None and pair.rewrite.rewriter == "lmsys/vicuna-7b-v1.5"
    assert (pair.rewrite.replaced, pair.rewrite.replacement, pair.rewrite.seed) == ("dog", "cat", pair.seed)
