"""Stage (a) of Img-Diff: a caption pair from one caption, by replacing one object in it.

Two ways, one contract (a rewrite with the words it replaced, or a drop with its reason):
- a language model answers the reference's prompt (``orig_prompt``: the authors' ``pairs_generator/gen.py``,
  in Vicuna's conversation template; ``dj_prompt``: Data-Juicer's ``sentence_augmentation_mapper``) and
  ``clean_answer`` applies the reference's post-filters to what it says;
- ``lexicon_rewrite`` needs no weights: it replaces one noun by another of the same kind from a lexicon shipped
  as data, keeping the article and the number right.
``rewrite_seed`` makes each rewrite repeatable (the reference re-seeds from an unseeded RNG); ``pair_decision``
checks a pair before any image is made.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import lemminflect

from spotdiff.imgdiff.decision import Decision
from spotdiff.imgdiff.objects import changed_objects, lemma

ORIG_TASK = (
    "Please replace one entity in this sentence with another entity, such as an animal, a vehicle, or a piece of "
    "furniture. Please only answer with the replaced sentence."
)
DJ_TASK = (
    "Please replace one entity in this sentence with another entity, such as an animal, a vehicle, a piece of "
    "furniture or other physically consistent object. Ensure the replaced sentence adheres to physical "
    "plausibility. Please only answer with the replaced sentence."
)
# FastChat's vicuna_v1.1 template, which get_conversation_template gives a Vicuna path
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)
DROP_WORDS = ("replac", "modified", "become")  # ORIG drops an answer that talks about its own edit
STRIPPED = ("\nEND", "</s>", "<s>")
TEXT_ENCODER_TOKENS = 77  # CLIP's context, both SDXL text encoders


# Data-Juicer's DEFAULT_SYSTEM_PROMPT is the same line; its source breaks it with backslashes inside the string,
# which leaves runs of spaces in it. spotdiff sends it with single spaces (docs/semantics.md).
DJ_SYSTEM = VICUNA_SYSTEM


@dataclass(frozen=True)
class Recipe:
    """How one reference variant asks for a rewrite and cleans the answer."""

    task: str
    system: str | None  # the system turn in a chat template; none: the template's own
    post_filters: bool  # ORIG's drop words, `---` and token stripping; DJ only trims whitespace and quotes


RECIPES = {"orig": Recipe(ORIG_TASK, None, True), "dj": Recipe(DJ_TASK, DJ_SYSTEM, False)}


def user_message(caption: str, task: str = ORIG_TASK) -> str:
    return f'Here is a sentence: "{caption}". {task}'


def orig_prompt(caption: str, task: str = ORIG_TASK) -> str:
    """The reference's whole prompt for Vicuna: the system line, the user's turn, the assistant's cue."""
    return f"{VICUNA_SYSTEM} USER: {user_message(caption, task)} ASSISTANT:"


def chat_messages(caption: str, recipe: Recipe, task: str | None = None) -> list[dict[str, str]]:
    """The prompt as chat messages, for a model with a chat template (an instruct model such as Qwen2)."""
    messages = [{"role": "system", "content": recipe.system}] if recipe.system else []
    return [*messages, {"role": "user", "content": user_message(caption, task or recipe.task)}]


@dataclass(frozen=True)
class Cleaned:
    """A model's answer after the reference's post-filters: the sentence, or None and why it was dropped."""

    text: str | None
    reason: str


def clean_answer(answer: str, prompt: str | None = None, post_filters: bool = True) -> Cleaned:
    """ORIG's post-processing, in its order: strip the prompt, ``\\nEND``, ``</s>``, ``<s>``; drop an answer
    mentioning "replac", "modified" or "become"; keep what follows the last ``---``. Whitespace and the quotes a
    model wraps a sentence in are trimmed (as Data-Juicer does; without ``post_filters``, that is all)."""
    if not post_filters:
        trimmed = answer.strip().strip('"').strip()
        return Cleaned(trimmed or None, "rewritten" if trimmed else "empty_answer")
    text = answer.replace(prompt, "") if prompt else answer
    for token in STRIPPED:
        text = text.replace(token, "")
    lowered = text.lower()
    for word in DROP_WORDS:
        if word in lowered:
            return Cleaned(None, f"mentions_{word}")
    if "---" in text:
        text = text.rsplit("---", 1)[1]
    text = text.strip().strip('"').strip()
    if not text:
        return Cleaned(None, "empty_answer")
    return Cleaned(text, "rewritten")


def rewrite_seed(caption: str, rewrite: int, base_seed: int = 0) -> int:
    """The seed of rewrite number ``rewrite`` of ``caption``: the same caption and number, the same rewrite."""
    digest = hashlib.sha256(f"{base_seed}\0{rewrite}\0{caption}".encode()).digest()
    top = int.from_bytes(digest[:4], "big")  # pragma: no mutate (equivalent: "big" is the default byte order)
    return top & 0x7FFFFFFF


@cache
def lexicon() -> dict[str, tuple[str, ...]]:
    """Kind -> nouns (singular), from ``lexicon.json``."""
    raw = json.loads(resources.files("spotdiff.imgdiff").joinpath("lexicon.json").read_text(encoding="utf-8"))
    raw.pop("_about", None)
    return {kind: tuple(nouns) for kind, nouns in raw.items()}


@cache
def kind_of() -> dict[str, str]:
    return {noun: kind for kind, nouns in lexicon().items() for noun in nouns}


# words starting with a vowel letter that sound like a consonant ("a unicorn"), and the reverse
A_BEFORE = frozenset({"unicorn", "ukulele", "unicycle", "uniform", "ewe", "eucalyptus", "university", "one"})
AN_BEFORE = frozenset({"hour", "honest", "heir"})
_TOKEN = re.compile(r"(\w+)|(\W+)")
# an object in a caption follows one of these, maybe with adjectives between ("a red car", "two dogs"); a
# lexicon word without one is more likely a verb ("people watch", "they fly")
DETERMINERS = frozenset(
    """a an the this that these those some several many few two three four five six seven eight nine ten
    his her its their my your our one another each every no of""".split()
)


def _follows_determiner(words: list[tuple[int, str]], at: int) -> bool:
    """Is the word at ``at`` an object: right after a determiner (or "of"), or after one with one or two adjectives
    between? The second noun of a compound ("a teddy bear") is left alone."""
    for _, before in reversed(words[max(0, at - 3) : at]):
        if before in DETERMINERS:
            return True
        if "ADJ" not in lemminflect.getAllLemmas(before):
            return False
    return False


def article_for(word: str) -> str:
    lowered = word.lower()
    if lowered in AN_BEFORE:
        return "an"
    if lowered in A_BEFORE:
        return "a"
    return "an" if word[:1] in "aeiouAEIOU" else "a"


def plural(noun: str) -> str:
    """The noun's plural: lemminflect's, from its dictionary or, for a word it does not know, its rules."""
    return str(lemminflect.getInflection(noun, tag="NNS")[0])


def _cased_like(word: str, model: str) -> str:
    """``word`` written like ``model``: in capitals, capitalised or as it is."""
    if model.isupper():
        return word.upper()
    return word[:1].upper() + word[1:] if model[:1].isupper() else word


@dataclass(frozen=True)
class Rewrite:
    """A rewritten caption and what changed in it."""

    text: str
    replaced: str  # the noun's lemma in the caption
    replacement: str  # the lemma that took its place
    kind: str


def lexicon_rewrite(caption: str, seed: int) -> Rewrite | None:
    """Replace one lexicon noun of ``caption`` (chosen by ``seed``) by another of its kind that the caption does not
    already name, in the same number and case, with its article made to agree; None when the caption has no noun
    the lexicon knows, or names every other noun of each one's kind."""
    tokens = [match.group(0) for match in _TOKEN.finditer(caption)]
    kinds = kind_of()
    words = [(i, token.lower()) for i, token in enumerate(tokens) if token.isalpha()]
    present = {lemma(lowered) for _, lowered in words}  # the replaced noun and every other, in any number

    def others(noun: str) -> list[str]:
        return [other for other in lexicon()[kinds[noun]] if other not in present]

    candidates = [
        i
        for at, (i, word) in enumerate(words)
        if lemma(word) in kinds and _follows_determiner(words, at) and others(lemma(word))
    ]
    if not candidates:
        return None
    rng = random.Random(seed)
    at = rng.choice(candidates)
    word = tokens[at]
    replaced = lemma(word.lower())
    kind = kinds[replaced]
    replacement = rng.choice(others(replaced))
    is_plural = word.lower() != replaced
    new_word = _cased_like(plural(replacement) if is_plural else replacement, word)
    tokens[at] = new_word
    article_at = at - 2  # "a", a space, the noun
    if article_at >= 0 and tokens[at - 1] == " " and tokens[article_at].lower() in ("a", "an"):
        # cased like the article with its noun: a lone "A" could begin "A dog" or "A DOG"
        tokens[article_at] = _cased_like(article_for(new_word), tokens[article_at] + word)
    return Rewrite("".join(tokens), replaced, replacement, kind)


def pair_decision(
    source: str,
    target: str,
    source_tokens: int,
    target_tokens: int,
    *,
    max_objects: int,
    max_chars: int,
    max_tokens: int = TEXT_ENCODER_TOKENS,
) -> Decision:
    """A rewritten pair goes on to image generation when the sentences differ, an object noun changed on each
    side but not more than ``max_objects`` (a sentence rewritten throughout is no one-object edit), and both fit
    the text encoders and a caption's ``max_chars`` (token counts are the caller's: the tokenizer is the
    model's)."""
    source_objects, target_objects = changed_objects(source, target)
    numbers = {
        "source_objects": source_objects,
        "target_objects": target_objects,
        "source_tokens": source_tokens,
        "target_tokens": target_tokens,
        "tokens_max": max_tokens,
    }
    if " ".join(source.lower().split()) == " ".join(target.lower().split()):
        return Decision(False, "same_sentence", numbers)
    if not source_objects or not target_objects:
        return Decision(False, "no_changed_noun", numbers)
    if max(len(source_objects), len(target_objects)) > max_objects:
        return Decision(False, "too_many_changed_nouns", {**numbers, "objects_max": max_objects})
    if max(source_tokens, target_tokens) > max_tokens:
        return Decision(False, "too_long", numbers)
    if max(len(source), len(target)) > max_chars:
        chars = {"source_chars": len(source), "target_chars": len(target), "chars_max": max_chars}
        return Decision(False, "too_long", {**numbers, **chars})
    return Decision(True, "rewrite_ok", numbers)
