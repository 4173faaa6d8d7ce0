"""Caption pairs from single captions (stage (a) of Img-Diff) with the weight-free lexicon rewriter: each caption
rewritten ``rewrites`` times, each rewrite seeded by the caption and its number, each pair checked before any
image is made; what is dropped is kept with its reason, as every other stage's rejections are."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spotdiff.imgdiff.rewrite import lexicon_rewrite, pair_decision, rewrite_seed
from spotdiff.protocol import CaptionPair
from spotdiff.protocol.records import RewriteOrigin

_TOKENS = re.compile(r"\w+|[^\w\s]")


def estimated_tokens(text: str) -> int:
    """A text encoder's token count, estimated without its tokenizer: a word or mark each, and the start and end
    tokens (CLIP's BPE splits rare words further; the model service counts exactly)."""
    return len(_TOKENS.findall(text)) + 2


@dataclass(frozen=True)
class Dropped:
    """A caption, or one rewrite of it, that gave no pair: the line, the rewrite's number, the reason and numbers."""

    line: int
    rewrite: int
    caption: str
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)


def read_captions(lines: Sequence[str]) -> list[tuple[int, str]]:
    """(line number, caption) of every non-blank line."""
    return [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]


def pairs_from_captions(
    captions: Sequence[tuple[int, str]], rewrites: int = 1, base_seed: int = 0
) -> tuple[list[CaptionPair], list[Dropped]]:
    """Pairs ``l<line>-r<k>`` (source: the caption; target: its k-th rewrite, objects filled in) and the drops."""
    pairs: list[CaptionPair] = []
    dropped: list[Dropped] = []
    for line, caption in captions:
        seen: set[str] = set()
        for number in range(rewrites):
            seed = rewrite_seed(caption, number, base_seed)
            rewrite = lexicon_rewrite(caption, seed)
            if rewrite is None:
                dropped.append(Dropped(line, number, caption, "no_known_noun"))
                break  # no other rewrite of it can do better
            decision = pair_decision(caption, rewrite.text, estimated_tokens(caption), estimated_tokens(rewrite.text))
            if not decision:
                dropped.append(Dropped(line, number, caption, decision.reason, decision.numbers))
                continue
            if rewrite.text in seen:
                dropped.append(Dropped(line, number, caption, "same_rewrite_again", {"target": rewrite.text}))
                continue
            seen.add(rewrite.text)
            pairs.append(
                CaptionPair(
                    id=f"l{line}-r{number}",
                    source=caption,
                    target=rewrite.text,
                    source_objects=[rewrite.replaced],
                    target_objects=[rewrite.replacement],
                    seed=seed,
                    rewrite=RewriteOrigin(
                        caption=caption,
                        rewriter="lexicon",
                        number=number,
                        seed=seed,
                        replaced=rewrite.replaced,
                        replacement=rewrite.replacement,
                    ),
                )
            )
    return pairs, dropped
