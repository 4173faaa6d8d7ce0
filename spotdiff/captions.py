"""Caption pairs from single captions (stage (a) of Img-Diff): each caption rewritten ``rewrites`` times, each
rewrite seeded by the caption and its number, each pair checked before any image is made; what is dropped is kept
with its reason, as every other stage's rejections are. The rewriter is the weight-free lexicon or the rewriting
service's language model; both answer the same question (`Rewriter`), so the rest is one code path."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from spotdiff import __version__
from spotdiff.clients import GenerationClient, RewritingClient
from spotdiff.imgdiff.objects import changed_objects
from spotdiff.imgdiff.rewrite import TEXT_ENCODER_TOKENS, lexicon_rewrite, pair_decision, rewrite_seed
from spotdiff.protocol import CaptionPair
from spotdiff.protocol.generation import MAX_TOKENIZE_TEXTS, TokenizeRequest, TokenizeResponse
from spotdiff.protocol.records import (
    MAX_CAPTION_CHARS,
    MAX_OBJECTS,
    Provenance,
    Rejection,
    RewriteOrigin,
    SampleRecord,
    SampleStatus,
    Stage,
)
from spotdiff.protocol.rewriting import RewriteRequest

_TOKENS = re.compile(r"\w+|[^\w\s]")
NO_KNOWN_NOUN = "no_known_noun"  # the lexicon knows no object of the caption: no other rewrite can do better


def estimated_tokens(text: str) -> int:
    """A text encoder's token count, estimated without its tokenizer: a word or mark each, and the start and end
    tokens (CLIP's BPE splits rare words further; the generation service truncates at its own count)."""
    return len(_TOKENS.findall(text)) + 2


@dataclass(frozen=True)
class TokenCounts:
    """Texts' token counts, the most the text encoders read, and who counted (``estimate`` or a model id)."""

    counts: dict[str, int]
    limit: int
    by: str


class TokenCounter(Protocol):
    async def count(self, texts: Sequence[str]) -> TokenCounts:
        """A count for every text."""
        ...


class EstimatedCounter:
    """Counts without a tokenizer (`estimated_tokens`), for rewrites made where no generation service runs."""

    async def count(self, texts: Sequence[str]) -> TokenCounts:
        return TokenCounts({text: estimated_tokens(text) for text in texts}, TEXT_ENCODER_TOKENS, "estimate")


class ModelCounter:
    """The generation service's own tokenizers (``POST /v1/tokenize``): a pair is kept only when both its prompts
    fit the text encoders, as the model counts, not as an estimate does. Texts over a caption's length are never
    a pair (`pair_decision`) and are estimated, not sent."""

    def __init__(self, client: GenerationClient) -> None:
        self.client = client

    async def count(self, texts: Sequence[str]) -> TokenCounts:
        unique = list(dict.fromkeys(text for text in texts if len(text) <= MAX_CAPTION_CHARS))
        counts = {text: estimated_tokens(text) for text in set(texts).difference(unique)}  # too long to send
        chunks = [unique[at : at + MAX_TOKENIZE_TEXTS] for at in range(0, len(unique), MAX_TOKENIZE_TEXTS)]
        if not chunks:
            return await EstimatedCounter().count(texts)

        async def counted(chunk: list[str]) -> TokenizeResponse:
            answer = await self.client.tokenize(TokenizeRequest(texts=chunk))
            counts.update(zip(chunk, answer.counts, strict=True))  # a count for each text, or an error
            return answer

        answers = await asyncio.gather(*(counted(chunk) for chunk in chunks))
        models = sorted({answer.model_id for answer in answers})  # replicas mid-upgrade may differ: both said
        return TokenCounts(counts, min(answer.max_tokens for answer in answers), ", ".join(models))


def rewrite_pair_id(line: int, number: int) -> str:
    """The id of a caption's ``number``-th rewrite, pair or drop: ``l<line>-r<number>``."""
    return f"l{line}-r{number}"


def caption_line(pair_id: str) -> int | None:
    """The caption line a ``rewrite_pair_id`` names; None for an id of another kind."""
    match = re.fullmatch(r"l(0|[1-9][0-9]*)-r(0|[1-9][0-9]*)", pair_id)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Proposal:
    """What a rewriter made of one caption and seed: the rewrite, or none and why; and what it replaced."""

    text: str | None
    reason: str
    rewriter: str  # "lexicon" or the language model's id
    replaced: str | None = None
    replacement: str | None = None


class Rewriter(Protocol):
    async def propose(self, asks: Sequence[tuple[str, int]]) -> list[Proposal]:
        """One proposal per (caption, seed), in order."""
        ...


class LexiconRewriter:
    """The weight-free rewriter: one noun replaced by another of its kind (`spotdiff.imgdiff.rewrite`)."""

    async def propose(self, asks: Sequence[tuple[str, int]]) -> list[Proposal]:
        proposals = []
        for caption, seed in asks:
            rewrite = lexicon_rewrite(caption, seed)
            if rewrite is None:
                proposals.append(Proposal(None, NO_KNOWN_NOUN, "lexicon"))
            else:
                proposals.append(Proposal(rewrite.text, "rewritten", "lexicon", rewrite.replaced, rewrite.replacement))
        return proposals


class ModelRewriter:
    """The rewriting service: each caption and seed one request, ``concurrency`` in flight (the service batches
    them); the replaced words are the nouns that changed, as the object stage finds them."""

    def __init__(self, client: RewritingClient, concurrency: int = 16) -> None:
        self.client = client
        self.concurrency = concurrency

    async def propose(self, asks: Sequence[tuple[str, int]]) -> list[Proposal]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(caption: str, seed: int) -> Proposal:
            async with gate:
                answer = await self.client.rewrite(RewriteRequest(caption=caption, seed=seed))
            if answer.text is None:
                return Proposal(None, answer.reason, answer.model_id)
            removed, added = changed_objects(caption, answer.text)
            return Proposal(
                answer.text,
                answer.reason,
                answer.model_id,
                removed[0] if removed else None,
                added[0] if added else None,
            )

        return list(await asyncio.gather(*(one(caption, seed) for caption, seed in asks)))


@dataclass(frozen=True)
class Dropped:
    """A caption, or one rewrite of it, that gave no pair: the line, the rewrite's number, the reason and numbers,
    and what the rewriter said (none when it said nothing usable)."""

    line: int
    rewrite: int
    caption: str
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    seed: int = 0
    rewriter: str = "lexicon"

    @property
    def pair_id(self) -> str:
        return rewrite_pair_id(self.line, self.rewrite)

    def record(self, profile: str) -> SampleRecord:
        """The rejection record of the pair this rewrite would have been (stage ``rewrite``), as every other
        stage's rejections are kept and counted."""
        return SampleRecord(
            pair_id=self.pair_id,
            status=SampleStatus.REJECTED,
            source=self.caption,
            target=self.target or "",
            source_objects=list(self.numbers.get("source_objects", [])),
            target_objects=list(self.numbers.get("target_objects", [])),
            rejection=Rejection(
                stage=Stage.REWRITE,
                reason=self.reason,
                message=f"rewrite {self.rewrite} of caption {self.line} gave no pair: {self.reason}",
                numbers=self.numbers,
            ),
            provenance=Provenance(  # no seed: no image was made
                profile=profile,
                spotdiff_version=__version__,
                rewrite=RewriteOrigin(
                    caption=self.caption, rewriter=self.rewriter, number=self.rewrite, seed=self.seed
                ),
            ),
        )


def read_captions(lines: Sequence[str]) -> list[tuple[int, str]]:
    """(line number, caption) of every non-blank line."""
    return [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]


async def pairs_from_captions(
    captions: Sequence[tuple[int, str]],
    rewrites: int = 1,
    base_seed: int = 0,
    rewriter: Rewriter | None = None,
    interleave: bool = False,
    counter: TokenCounter | None = None,
) -> tuple[list[CaptionPair], list[Dropped]]:
    """Pairs ``l<line>-r<k>`` (source: the caption; target: its k-th rewrite, objects filled in) and the drops;
    prompts are counted by ``counter`` (the generation service's tokenizers; estimated when none is given).

    Pairs come caption by caption, or with ``interleave`` every caption's first rewrite, then every second one, and
    so on (how a job with a target draws new rewrites round by round)."""
    rewriter = rewriter or LexiconRewriter()
    counter = counter or EstimatedCounter()
    asks = [
        (line, caption, number, rewrite_seed(caption, number, base_seed))
        for line, caption in captions
        for number in range(rewrites)
    ]
    proposals = await rewriter.propose([(caption, seed) for _, caption, _, seed in asks])
    answered = list(zip(asks, proposals, strict=True))  # one proposal for each ask, or an error
    texts = [text for (_, caption, _, _), proposal in answered for text in (caption, proposal.text) if text is not None]
    tokens = await counter.count(texts)
    pairs: list[tuple[int, CaptionPair]] = []
    dropped: list[Dropped] = []
    seen: dict[int, set[str]] = {}
    hopeless: set[int] = set()
    for (line, caption, number, seed), proposal in answered:
        if line in hopeless:
            continue
        if proposal.text is None:
            dropped.append(Dropped(line, number, caption, proposal.reason, seed=seed, rewriter=proposal.rewriter))
            if proposal.reason == NO_KNOWN_NOUN:
                hopeless.add(line)
            continue
        decision = pair_decision(
            caption,
            proposal.text,
            tokens.counts[caption],
            tokens.counts[proposal.text],
            max_objects=MAX_OBJECTS,
            max_chars=MAX_CAPTION_CHARS,
            max_tokens=tokens.limit,
        )
        if not decision:
            numbers = {**decision.numbers, "tokens_by": tokens.by}
            dropped.append(
                Dropped(line, number, caption, decision.reason, numbers, proposal.text, seed, proposal.rewriter)
            )
            continue
        if proposal.text in seen.setdefault(line, set()):
            again = {"target": proposal.text}
            dropped.append(
                Dropped(line, number, caption, "same_rewrite_again", again, proposal.text, seed, proposal.rewriter)
            )
            continue
        seen[line].add(proposal.text)
        source_objects, target_objects = decision.numbers["source_objects"], decision.numbers["target_objects"]
        if proposal.rewriter == "lexicon":
            source_objects, target_objects = [proposal.replaced], [proposal.replacement]
        origin = RewriteOrigin(
            caption=caption,
            rewriter=proposal.rewriter,
            number=number,
            seed=seed,
            replaced=proposal.replaced,
            replacement=proposal.replacement,
        )
        pair = CaptionPair(
            id=rewrite_pair_id(line, number),
            source=caption,
            target=proposal.text,
            source_objects=source_objects,
            target_objects=target_objects,
            seed=seed,
            rewrite=origin,
        )
        pairs.append((number, pair))
    if interleave:
        pairs.sort(key=lambda numbered: numbered[0])  # stable: caption order within each rewrite number
    return [pair for _, pair in pairs], dropped


def unpaired(dropped: Sequence[Dropped], pairs: Sequence[CaptionPair]) -> list[Dropped]:
    """The first drop of each caption none of whose rewrites is among ``pairs``: a caption that was sent and gave
    nothing, which a job answers for even where it keeps no other drop (a pool of rewrites to draw from)."""
    paired = {caption_line(pair.id) for pair in pairs}
    first: dict[int, Dropped] = {}
    for drop in dropped:
        first.setdefault(drop.line, drop)
    return [drop for line, drop in first.items() if line not in paired]
