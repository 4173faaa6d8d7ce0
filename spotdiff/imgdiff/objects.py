"""Which objects changed between the two captions (stage 0).

The reference diffs the lower-cased words with ``difflib``, lemmatises them with WordNet and keeps nouns by
NLTK's tagger; both need data downloads. This first version keeps the words present on one side only, drops
function words and folds simple plurals; objects given with the pair always win.
"""

from __future__ import annotations

import difflib
import re

FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "some",
        "any",
        "each",
        "every",
        "of",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "to",
        "into",
        "onto",
        "over",
        "under",
        "above",
        "below",
        "near",
        "next",
        "beside",
        "behind",
        "between",
        "and",
        "or",
        "but",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "has",
        "have",
        "had",
        "it",
        "its",
        "his",
        "her",
        "their",
        "our",
        "your",
        "my",
        "one",
        "two",
        "three",
        "very",
        "while",
        "as",
        "up",
        "down",
        "out",
        "off",
        "there",
        "here",
        "which",
        "who",
        "what",
        "where",
        "sitting",
        "standing",
        "lying",
        "flying",
        "running",
        "walking",
        "playing",
        "looking",
        "holding",
    ]
)
_WORD = re.compile(r"[^\w\s]")


def words(caption: str) -> list[str]:
    """Lower-cased words without punctuation, as the reference splits them."""
    return _WORD.sub("", caption.lower()).split()


def singular(word: str) -> str:
    """A crude lemma for plural nouns (dogs -> dog, boxes -> box, puppies -> puppy)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def changed_objects(source: str, target: str) -> tuple[list[str], list[str]]:
    """Content words only in the source caption, and only in the target caption, in caption order."""
    source_words, target_words = words(source), words(target)
    removed, added = [], []
    for line in difflib.Differ().compare(source_words, target_words):
        if line.startswith("- "):
            removed.append(singular(line[2:]))
        elif line.startswith("+ "):
            added.append(singular(line[2:]))

    def keep(candidates: list[str], other: list[str]) -> list[str]:
        kept: list[str] = []
        for word in candidates:
            if word not in other and word not in FUNCTION_WORDS and not word.isdigit() and word not in kept:
                kept.append(word)
        return kept

    return keep(removed, added), keep(added, removed)
