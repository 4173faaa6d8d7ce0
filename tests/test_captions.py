"""Single captions into caption pairs (the weight-free rewriter) and on through a run: `spotdiff pairs` as a
user runs it, drops with their reasons, the same seed giving the same pairs, and a run's samples."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from spotdiff import __version__
from spotdiff.captions import (
    NO_KNOWN_NOUN,
    Dropped,
    EstimatedCounter,
    LexiconRewriter,
    ModelCounter,
    ModelRewriter,
    Proposal,
    TokenCounts,
    caption_line,
    estimated_tokens,
    pairs_from_captions,
    read_captions,
    rewrite_pair_id,
    unpaired,
)
from spotdiff.clients import GenerationClient, RewritingClient, ServiceClients
from spotdiff.imgdiff.objects import changed_objects
from spotdiff.imgdiff.rewrite import lexicon_rewrite, rewrite_seed
from spotdiff.protocol import Provenance, Rejection, SampleRecord, SampleStatus, Stage
from spotdiff.protocol.generation import MAX_TOKENIZE_TEXTS
from spotdiff.protocol.records import MAX_CAPTION_CHARS, RewriteOrigin
from spotdiff.runner import read_pairs, run_embedded
from spotdiff.settings import Settings

CAPTIONS = Path(__file__).parent.parent / "examples" / "captions.txt"


async def test_each_caption_gives_its_rewrites_checked_and_seeded() -> None:
    captions = read_captions(["A dog on the grass", "", "The sky at night", "A cat on a sofa"])
    assert captions == [(1, "A dog on the grass"), (3, "The sky at night"), (4, "A cat on a sofa")]
    pairs, dropped = await pairs_from_captions(captions, rewrites=3)
    assert {pair.id for pair in pairs} <= {f"l{line}-r{k}" for line in (1, 4) for k in range(3)}
    assert [(drop.line, drop.reason) for drop in dropped if drop.reason == "no_known_noun"] == [(3, "no_known_noun")]
    assert len(pairs) + len(dropped) == 3 + 3 + 1  # the caption without a known noun is tried once
    for pair in pairs:
        assert changed_objects(pair.source, pair.target) == (pair.source_objects, pair.target_objects)
        assert pair.seed is not None
    again, _ = await pairs_from_captions(captions, rewrites=3)
    assert again == pairs
    other, _ = await pairs_from_captions(captions, rewrites=3, base_seed=1)
    assert [pair.target for pair in other] != [pair.target for pair in pairs]


async def test_a_pool_of_rewrites_answers_for_each_caption_that_gave_no_pair() -> None:
    captions = [(1, "A dog on the grass"), (2, "The sky at night"), (3, "A cat on a sofa")]
    pairs, dropped = await pairs_from_captions(captions, rewrites=2, interleave=True)
    assert [(drop.line, drop.reason) for drop in unpaired(dropped, pairs)] == [(2, "no_known_noun")]
    # a caption whose pairs the pool left out but that gave one is not a drop; one that gave none is, once
    failed = [Dropped(3, 0, "A cat on a sofa", "same_rewrite_again"), Dropped(3, 1, "A cat on a sofa", "too_long")]
    only_dog = [pair for pair in pairs if pair.id.startswith("l1-")]
    assert [(drop.line, drop.rewrite) for drop in unpaired([*dropped, *failed], only_dog)] == [(2, 0), (3, 0)]


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_a_rewrite_pair_id_names_its_caption_line(line: int, number: int) -> None:
    assert caption_line(rewrite_pair_id(line, number)) == line


@given(st.text())
@example("l01-r0")  # not an id a rewrite gets: no leading zeros, ASCII digits only
@example("l\u0661-r0")
@example("l1-r0\n")
def test_any_other_id_names_no_caption_line(pair_id: str) -> None:
    line = caption_line(pair_id)
    assert line is None or rewrite_pair_id(line, int(pair_id.rpartition("-r")[2])) == pair_id


async def test_token_counts_are_estimated_with_the_encoders_start_and_end() -> None:
    assert estimated_tokens("A dog, on the grass.") == 7 + 2
    long = " ".join(["dog"] * 80)
    _, dropped = await pairs_from_captions([(1, f"A {long}")], rewrites=1)
    assert [drop.reason for drop in dropped] == ["too_long"] and dropped[0].numbers["tokens_max"] == 77


def test_spotdiff_pairs_writes_what_run_reads(tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    command = [sys.executable, "-m", "spotdiff.cli", "pairs", str(CAPTIONS), "--out", str(out), "--rewrites", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    pairs, errors = read_pairs(out)
    assert errors == [] and len(pairs) == 2 * len(CAPTIONS.read_text().splitlines())
    assert all(json.loads(line)["source_objects"] for line in out.read_text().splitlines())
    empty = tmp_path / "nothing.txt"
    empty.write_text("The sky at night\n")
    failed = subprocess.run(
        [*command[:4], str(empty), "--out", str(tmp_path / "x.jsonl")], capture_output=True, text=True
    )
    assert failed.returncode == 2 and "no caption gave a pair" in failed.stderr and "no_known_noun" in failed.stderr


async def test_a_run_from_captions(clients: ServiceClients, settings: Settings, tmp_path: Path) -> None:
    lines = [*CAPTIONS.read_text().splitlines(), "The sky at night"]  # the last gives no pair
    pairs, dropped = await pairs_from_captions(read_captions(lines))
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(pair.model_dump_json(exclude_none=True) + "\n" for pair in pairs))
    drops = [drop.record(settings.profile) for drop in dropped]
    summary = await run_embedded(source, tmp_path / "run", settings, progress=False, clients=clients, dropped=drops)
    records = [
        SampleRecord.model_validate_json(line) for line in (tmp_path / "run/samples.jsonl").read_text().splitlines()
    ]
    assert summary.pairs == len(records) == len(pairs) + 1 and summary.accepted >= 1
    (drop,) = [record for record in records if record.rejection and record.rejection.stage == "rewrite"]
    assert (drop.pair_id, drop.outcome, drop.source) == (f"l{len(lines)}-r0", "rewrite:no_known_noun", lines[-1])
    assert drop.provenance.rewrite is not None and drop.provenance.rewrite.rewriter == "lexicon"
    records = [record for record in records if record is not drop]
    by_id = {pair.id: pair for pair in pairs}
    for record in records:
        assert (record.source, record.target) == (by_id[record.pair_id].source, by_id[record.pair_id].target)
        assert record.source_objects == by_id[record.pair_id].source_objects


def test_spotdiff_run_takes_a_file_of_captions(tiny_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """As a user runs it: captions in, the pairs beside the run for review, and the samples of those pairs."""
    from spotdiff.cli import main

    monkeypatch.setenv("SPOTDIFF_TINY_DIR", str(tiny_dir))
    monkeypatch.setenv("SPOTDIFF_PROFILE", "tiny")
    monkeypatch.delenv("SPOTDIFF_REWRITER", raising=False)
    captions = tmp_path / "captions.txt"
    captions.write_text("A dog on the grass\nThe sky at night\nA red car parked on a city street\n")
    assert main(["run", str(captions), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    pairs, errors = read_pairs(tmp_path / "run/pairs.jsonl")
    assert errors == [] and [pair.id for pair in pairs] == ["l1-r0", "l3-r0"]
    records = [
        SampleRecord.model_validate_json(line) for line in (tmp_path / "run/samples.jsonl").read_text().splitlines()
    ]
    assert sorted(record.pair_id for record in records) == ["l1-r0", "l2-r0", "l3-r0"]
    assert {record.pair_id: record.outcome for record in records}["l2-r0"] == "rewrite:no_known_noun"
    assert "3 pairs:" in capsys.readouterr().out


C1, C3, C4 = "A dog on the grass", "The sky at night", "A red car"
BASE = 5


def seed(caption: str, number: int) -> int:
    return rewrite_seed(caption, number, BASE)


class ScriptedRewriter:
    """Answers chosen per caption and rewrite number (found from the seed); every ask kept, in order."""

    def __init__(self, script: dict[tuple[str, int], Proposal], short: int = 0) -> None:
        self.by_seed = {(caption, seed(caption, number)): answer for (caption, number), answer in script.items()}
        self.asks: list[tuple[str, int]] = []
        self.short = short  # answer this many proposals too few: a broken rewriter

    async def propose(self, asks: Sequence[tuple[str, int]]) -> list[Proposal]:
        self.asks.extend(asks)
        answers = [self.by_seed.get(ask, Proposal(None, "unscripted", "fake")) for ask in asks]
        return answers[: len(answers) - self.short]


SCRIPT = {
    (C1, 0): Proposal(None, "mentions_replac", "qwen"),
    (C1, 1): Proposal("A cat on the grass", "rewritten", "qwen", "hound", "kitty"),
    (C1, 2): Proposal("A cat on the grass", "rewritten", "qwen", "hound", "kitty"),
    (C3, 0): Proposal(None, NO_KNOWN_NOUN, "lexicon"),
    (C4, 0): Proposal("A red bus", "rewritten", "lexicon", "automobile", "omnibus"),
    (C4, 1): Proposal("a red car", "rewritten", "qwen", "car", "car"),
    (C4, 2): Proposal("A red van", "rewritten", "qwen", None, None),
}


async def test_each_proposal_becomes_a_pair_or_a_drop_with_its_reason() -> None:
    """A language model's pair takes its objects from the captions, the lexicon's from what it replaced; a
    refused, repeated or unchanged rewrite is a drop with its numbers; a caption with no known noun is tried once;
    every rewrite is asked for first, with its own seed."""
    rewriter = ScriptedRewriter(SCRIPT)
    captions = [(1, C1), (3, C3), (4, C4)]
    pairs, dropped = await pairs_from_captions(captions, rewrites=3, base_seed=BASE, rewriter=rewriter)
    assert rewriter.asks == [(caption, seed(caption, number)) for caption in (C1, C3, C4) for number in range(3)]

    def origin(caption: str, number: int, rewriter: str, replaced: str | None, replacement: str | None) -> dict:
        return {"caption": caption, "rewriter": rewriter, "number": number, "seed": seed(caption, number)} | {
            "replaced": replaced,
            "replacement": replacement,
        }

    assert [pair.model_dump() for pair in pairs] == [
        {
            "id": "l1-r1",
            "source": C1,
            "target": "A cat on the grass",
            "source_objects": ["dog"],
            "target_objects": ["cat"],
            "seed": seed(C1, 1),
            "rewrite": origin(C1, 1, "qwen", "hound", "kitty"),
        },
        {
            "id": "l4-r0",
            "source": C4,
            "target": "A red bus",
            "source_objects": ["automobile"],
            "target_objects": ["omnibus"],
            "seed": seed(C4, 0),
            "rewrite": origin(C4, 0, "lexicon", "automobile", "omnibus"),
        },
        {
            "id": "l4-r2",
            "source": C4,
            "target": "A red van",
            "source_objects": ["car"],
            "target_objects": ["van"],
            "seed": seed(C4, 2),
            "rewrite": origin(C4, 2, "qwen", None, None),
        },
    ]
    unchanged = {"source_objects": [], "target_objects": [], "source_tokens": 5, "target_tokens": 5, "tokens_max": 77}
    unchanged |= {"tokens_by": "estimate"}
    assert dropped == [
        Dropped(1, 0, C1, "mentions_replac", seed=seed(C1, 0), rewriter="qwen"),
        Dropped(
            1, 2, C1, "same_rewrite_again", {"target": "A cat on the grass"}, "A cat on the grass", seed(C1, 2), "qwen"
        ),
        Dropped(3, 0, C3, NO_KNOWN_NOUN, seed=seed(C3, 0), rewriter="lexicon"),
        Dropped(4, 1, C4, "same_sentence", unchanged, "a red car", seed(C4, 1), "qwen"),
    ]
    interleaved, again = await pairs_from_captions(captions, 3, BASE, ScriptedRewriter(SCRIPT), interleave=True)
    assert [pair.id for pair in interleaved] == ["l4-r0", "l1-r1", "l4-r2"] and again == dropped


async def test_by_default_a_caption_is_rewritten_once_by_the_lexicon_with_seed_zero() -> None:
    rewriter = ScriptedRewriter(SCRIPT)
    await pairs_from_captions([(1, C1), (4, C4)], rewriter=rewriter)
    assert rewriter.asks == [(C1, rewrite_seed(C1, 0, 0)), (C4, rewrite_seed(C4, 0, 0))]
    (pair,), _ = await pairs_from_captions([(1, C1), (4, C4)][:1])
    assert pair.rewrite is not None and pair.rewrite.rewriter == "lexicon" and pair.id == "l1-r0"


async def test_a_rewriter_that_answers_too_few_proposals_is_an_error() -> None:
    with pytest.raises(ValueError, match="zip"):
        await pairs_from_captions([(1, C1)], rewrites=2, rewriter=ScriptedRewriter(SCRIPT, short=1))


async def test_the_lexicon_proposes_its_rewrite_or_says_it_knows_no_noun() -> None:
    rewrite = lexicon_rewrite(C1, 3)
    assert rewrite is not None
    assert await LexiconRewriter().propose([(C1, 3), (C3, 3)]) == [
        Proposal(rewrite.text, "rewritten", "lexicon", rewrite.replaced, rewrite.replacement),
        Proposal(None, NO_KNOWN_NOUN, "lexicon"),
    ]


def test_a_drop_is_kept_as_a_rewrite_stage_rejection() -> None:
    numbers = {"source_objects": ["car"], "target_objects": ["bus", "van"], "tokens_max": 77}
    record = Dropped(4, 1, C4, "too_many_changed_nouns", numbers, "A red bus and van", 77, "qwen").record("tiny")
    assert record == SampleRecord(
        pair_id="l4-r1",
        status=SampleStatus.REJECTED,
        source=C4,
        target="A red bus and van",
        source_objects=["car"],
        target_objects=["bus", "van"],
        rejection=Rejection(
            stage=Stage.REWRITE,
            reason="too_many_changed_nouns",
            message="rewrite 1 of caption 4 gave no pair: too_many_changed_nouns",
            numbers=numbers,
        ),
        provenance=Provenance(
            seed=None,
            profile="tiny",
            spotdiff_version=__version__,
            rewrite=RewriteOrigin(caption=C4, rewriter="qwen", number=1, seed=77),
        ),
    )
    bare = Dropped(3, 0, C3, NO_KNOWN_NOUN).record("reference")
    assert (bare.target, bare.source_objects, bare.target_objects, bare.provenance.profile) == ("", [], [], "reference")
    assert bare.provenance.rewrite == RewriteOrigin(caption=C3, rewriter="lexicon", number=0, seed=0)


ANSWERS = {  # what the stand-in service says of each caption
    C1: "A cat on the grass",
    C3: None,
    C4: "A blue car",
    "A bus": "A bus on a street by a tree",  # none removed, two added: the first is named
    "A dog and a cat": "A dog",  # one removed, none added
}


class StandIn:
    """A rewriting service that answers after a delay that falls with the seed (later asks finish first),
    keeping each request and counting those in flight."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.requests: list[tuple[str, int]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append((body["caption"], body["seed"]))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.02 / (1 + body["seed"]))
        self.in_flight -= 1
        text = ANSWERS[body["caption"]]
        reason = "empty_answer" if text is None else "rewritten"
        return httpx.Response(200, json={"text": text, "reason": reason, "answer": "", "tokens": 3, "model_id": "m"})


async def test_the_model_rewriter_asks_with_a_bounded_concurrency_and_keeps_the_order() -> None:
    service = StandIn()
    client = RewritingClient(transport=httpx.MockTransport(service))
    asks = [(C1, 0), (C3, 1), (C4, 2), (C1, 3), (C4, 4), ("A bus", 5), ("A dog and a cat", 6)]
    proposals = await ModelRewriter(client, concurrency=2).propose(asks)
    assert service.most == 2 and sorted(service.requests) == sorted(asks)
    assert proposals == [
        Proposal("A cat on the grass", "rewritten", "m", "dog", "cat"),
        Proposal(None, "empty_answer", "m"),
        Proposal("A blue car", "rewritten", "m", "red", "blue"),
        Proposal("A cat on the grass", "rewritten", "m", "dog", "cat"),
        Proposal("A blue car", "rewritten", "m", "red", "blue"),
        Proposal("A bus on a street by a tree", "rewritten", "m", None, "street"),
        Proposal("A dog", "rewritten", "m", "cat", None),
    ]
    await ModelRewriter(client).propose([(C1, n) for n in range(40)])
    assert service.most == 16  # the default: what one rewriting replica batches
    await client.aclose()


class ScriptedCounter:
    """Token counts chosen per text, a limit of its own, every text it was asked for kept."""

    def __init__(self, counts: dict[str, int], limit: int) -> None:
        self.counts, self.limit = counts, limit
        self.asked: list[str] = []

    async def count(self, texts: Sequence[str]) -> TokenCounts:
        self.asked.extend(texts)
        return TokenCounts({text: self.counts[text] for text in texts}, self.limit, "tokenizer-x")


async def test_each_side_is_decided_by_its_own_count_and_the_counters_limit() -> None:
    """Counts chosen per text, so a swapped side, an estimate or the default limit in their place would fail."""
    script = {
        (C1, 0): Proposal("A cat on the grass", "rewritten", "qwen"),
        (C1, 1): Proposal("A cow on the grass", "rewritten", "qwen"),
        (C4, 0): Proposal("A red bus", "rewritten", "qwen"),
    }
    counts = {C1: 9, "A cat on the grass": 10, "A cow on the grass": 11, C4: 12, "A red bus": 9}
    counter = ScriptedCounter(counts, limit=10)
    pairs, dropped = await pairs_from_captions([(1, C1), (4, C4)], 2, BASE, ScriptedRewriter(script), counter=counter)
    assert counter.asked == [
        C1,
        "A cat on the grass",
        C1,
        "A cow on the grass",
        C4,
        "A red bus",
        C4,
    ]  # the unscripted rewrite: its caption only
    assert [pair.id for pair in pairs] == ["l1-r0"]  # 9 and 10 fit a limit of 10
    numbers = {"tokens_max": 10, "tokens_by": "tokenizer-x"}
    assert [(drop.pair_id, drop.reason, drop.numbers) for drop in dropped] == [
        (
            "l1-r1",
            "too_long",
            {"source_objects": ["dog"], "target_objects": ["cow"], "source_tokens": 9, "target_tokens": 11} | numbers,
        ),
        (
            "l4-r0",
            "too_long",
            {"source_objects": ["car"], "target_objects": ["bus"], "source_tokens": 12, "target_tokens": 9} | numbers,
        ),
        ("l4-r1", "unscripted", {}),
    ]


async def test_a_rewrite_longer_than_a_caption_may_be_is_dropped_not_an_error() -> None:
    """A caption of the longest length whose rewrite is longer (a short noun for a long one) was a
    ValidationError out of the stage; it is a drop with its lengths."""
    caption = "A dog " + "x" * (MAX_CAPTION_CHARS - 6)
    pairs, dropped = await pairs_from_captions([(1, caption)], rewrites=6)
    longer = [drop for drop in dropped if drop.target is not None and len(drop.target) > MAX_CAPTION_CHARS]
    assert longer and all(drop.reason == "too_long" for drop in longer)
    assert longer[0].numbers["source_chars"] == MAX_CAPTION_CHARS
    assert longer[0].numbers["target_chars"] == len(longer[0].target or "")
    assert longer[0].numbers["chars_max"] == MAX_CAPTION_CHARS
    assert all(len(pair.target) <= MAX_CAPTION_CHARS for pair in pairs)


async def test_the_estimate_counts_words_and_marks_with_clips_start_and_end() -> None:
    counts = await EstimatedCounter().count(["A dog, on the grass.", "don't"])
    assert counts == TokenCounts({"A dog, on the grass.": 9, "don't": 5}, 77, "estimate")


class Tokenizer:
    """A generation service's tokenize route: a count per text (its length), each request kept; each answer with
    a limit and a replica of its own (the counter keeps the smallest limit and names every model)."""

    def __init__(self, short: int = 0) -> None:
        self.requests: list[list[str]] = []
        self.short = short  # this many counts too few: a broken service

    def __call__(self, request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["texts"]
        self.requests.append(texts)
        number = len(self.requests)
        counts = [len(text) for text in texts][: len(texts) - self.short]
        answer = {"counts": counts, "max_tokens": 70 + number, "model_id": f"sdxl-{3 - number}", "revision": "r"}
        return httpx.Response(200, json=answer)


async def test_the_model_counter_asks_each_text_once_in_requests_the_route_accepts() -> None:
    service = Tokenizer()
    counter = ModelCounter(GenerationClient(transport=httpx.MockTransport(service)))
    texts = [f"caption {n}" for n in range(MAX_TOKENIZE_TEXTS + 43)] + ["y" * MAX_CAPTION_CHARS]
    overlong = "x" * (MAX_CAPTION_CHARS + 1)
    counts = await counter.count([*texts, texts[0], overlong, texts[1]])
    assert [len(request) for request in service.requests] == [MAX_TOKENIZE_TEXTS, 44]
    assert [text for request in service.requests for text in request] == texts  # in order, once, none too long
    assert counts.counts == {text: len(text) for text in texts} | {overlong: estimated_tokens(overlong)}
    assert (counts.limit, counts.by) == (71, "sdxl-1, sdxl-2")
    await counter.client.aclose()


async def test_a_service_that_answers_too_few_counts_is_an_error() -> None:
    counter = ModelCounter(GenerationClient(transport=httpx.MockTransport(Tokenizer(short=1))))
    with pytest.raises(ValueError, match="zip"):
        await counter.count(["A dog", "A cat"])
    await counter.client.aclose()


async def test_the_model_counter_asks_nothing_of_texts_it_cannot_send() -> None:
    service = Tokenizer()
    counter = ModelCounter(GenerationClient(transport=httpx.MockTransport(service)))
    overlong = "a " * MAX_CAPTION_CHARS
    assert await counter.count([overlong]) == TokenCounts({overlong: estimated_tokens(overlong)}, 77, "estimate")
    assert await counter.count([]) == TokenCounts({}, 77, "estimate")
    assert service.requests == []
    await counter.client.aclose()
