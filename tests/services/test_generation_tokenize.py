"""``POST /v1/tokenize``: prompts counted as the SDXL pipeline's tokenizers see them, checked against an
independent CLIP tokenizer (open_clip's, over OpenAI's own BPE file); the count never waits for a batch; and
stage (a) keeps or drops a rewrite by the model's count, where the estimate errs either way."""

from __future__ import annotations

import asyncio
import string
import threading

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from open_clip.tokenizer import SimpleTokenizer

from spotdiff.captions import ModelCounter, estimated_tokens, pairs_from_captions
from spotdiff.clients import GenerationClient, ServiceClients
from spotdiff.protocol.generation import MAX_TOKENIZE_TEXTS, TokenizeRequest

OPENAI_CLIP = SimpleTokenizer()
# "!" is left out: SDXL's second tokenizer pads with "!" and so splits it out of any run of marks (see below)
PRINTABLE = "".join(mark for mark in string.ascii_letters + string.digits + string.punctuation + " " if mark != "!")


def clip_count(text: str) -> int:
    """OpenAI CLIP's count: its BPE tokens, with the start and end tokens."""
    return len(OPENAI_CLIP.encode(text)) + 2


@pytest.fixture(scope="module")
def generation(clients: ServiceClients) -> GenerationClient:
    return clients.generation


async def test_counts_are_openai_clips_in_the_order_sent(generation: GenerationClient) -> None:
    texts = ["A dog on the grass", "don't stop", "in 1984...", "Pneumonoultramicroscopic", "café crème", "a " * 100]
    answer = await generation.tokenize(TokenizeRequest(texts=texts))
    assert answer.counts == [clip_count(text) for text in texts] == [7, 5, 8, 9, 6, 102]
    assert answer.max_tokens == 77  # not truncated: 102 is counted in full
    info = await generation.info()
    assert (answer.model_id, answer.revision) == (info.model_id, info.revision)


@given(texts=st.lists(st.text(PRINTABLE, min_size=1, max_size=200).filter(str.strip), min_size=1, max_size=8))
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_any_printable_prompt_is_counted_as_openai_clip_counts_it(generation: GenerationClient, texts: list) -> None:
    answer = asyncio.run(_tokenize(generation, texts))
    assert answer == [clip_count(text) for text in texts]


async def _tokenize(generation: GenerationClient, texts: list[str]) -> list[int]:
    # the session's client lives on the session's loop: ask the app through a client of this loop
    transport = generation.http._transport
    assert isinstance(transport, httpx.ASGITransport)
    client = GenerationClient(transport=transport)
    try:
        return (await client.tokenize(TokenizeRequest(texts=texts))).counts
    finally:
        await client.aclose()


async def test_the_count_is_the_larger_of_the_two_tokenizers(generation: GenerationClient) -> None:
    """SDXL's second tokenizer pads with "!", a special token it splits out: "wow!!" is 4 tokens to the first text
    encoder and 5 to the second, and a prompt fits only if it fits both."""
    (count,) = (await generation.tokenize(TokenizeRequest(texts=["wow!!"]))).counts
    assert clip_count("wow!!") == 4 and count == 5


async def test_counting_answers_while_the_model_thread_is_busy(generation: GenerationClient) -> None:
    transport = generation.http._transport
    assert isinstance(transport, httpx.ASGITransport)
    runtime = transport.app.state.runtime  # type: ignore[attr-defined]
    held = threading.Event()
    busy = asyncio.get_running_loop().run_in_executor(runtime._executor, held.wait, 30.0)
    try:
        answer = await asyncio.wait_for(generation.tokenize(TokenizeRequest(texts=["A dog"])), timeout=20)
        assert not busy.done()  # the model thread was held all along
        assert answer.counts == [clip_count("A dog")]
    finally:
        held.set()
        await busy


@pytest.mark.parametrize(
    "body",
    [
        {"texts": []},
        {"texts": [""]},
        {"texts": ["x" * 1001]},
        {"texts": ["A dog"] * (MAX_TOKENIZE_TEXTS + 1)},
        {"texts": "A dog"},
        {"texts": ["A dog"], "truncate": True},
    ],
)
async def test_bad_requests_are_422(generation: GenerationClient, body: dict) -> None:
    answer = await generation.http.post("/v1/tokenize", json=body)
    assert answer.status_code == 422 and answer.json()["error"]["message"], answer.text


DIGITS = "A dog on the grass at " + " ".join(["12345"] * 15)  # CLIP reads each digit alone
MARKS = "A dog on the grass" + " ..." * 30  # CLIP reads a run of marks as one


async def test_stage_a_keeps_and_drops_rewrites_by_the_models_count(generation: GenerationClient) -> None:
    assert estimated_tokens(DIGITS) <= 77 < clip_count(DIGITS)
    assert clip_count(MARKS) <= 77 < estimated_tokens(MARKS)
    captions = [(1, DIGITS), (2, MARKS)]
    estimated_pairs, estimated_drops = await pairs_from_captions(captions)
    assert [pair.id for pair in estimated_pairs] == ["l1-r0"] and [drop.line for drop in estimated_drops] == [2]

    pairs, drops = await pairs_from_captions(captions, counter=ModelCounter(generation))
    assert [pair.id for pair in pairs] == ["l2-r0"]  # fits, as the model counts
    (drop,) = drops
    assert (drop.line, drop.reason) == (1, "too_long")
    assert drop.numbers["source_tokens"] == clip_count(DIGITS) and drop.numbers["tokens_max"] == 77
    assert drop.numbers["tokens_by"] == (await generation.info()).model_id
